"""The state host's pure parts: address choice, container argv, passwords, migrate-state's one-off container."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from claudegate.config import DeployConfig
from claudegate.deploy.state_host import (
    POSTGRES,
    REDIS,
    create_argv,
    deploy_state_host,
    engine_spec,
    operator_password,
    pg_dump_argv,
    pg_restore_argv,
    pick_private_address,
    state_config,
    state_endpoints,
)
from claudegate.errors import ConfigError
from claudegate.state_move import migrate_argv, postgres_target
from tests.deploy.conftest import ConfigFactory

# hostname -I, then Docker's networks' subnets (the format addresses_fact prints).
FACT = "10.214.3.2 11.214.9.2 172.17.0.1 172.18.0.1 \n---\n172.17.0.0/16 172.18.0.0/16 \n"


def test_the_one_private_address_that_is_not_dockers_is_chosen() -> None:
    assert pick_private_address(FACT, None, "a") == "10.214.3.2"


def test_several_private_addresses_or_none_need_the_operator_to_name_one() -> None:
    with pytest.raises(ConfigError, match=r"private addresses: 10\.214\.3\.2, 192\.168\.1\.5") as info:
        pick_private_address("10.214.3.2 192.168.1.5\n---\n", None, "a")
    assert "state.host.private_address" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="private addresses: none"):
        pick_private_address("11.214.9.2 172.17.0.1\n---\n172.17.0.0/16\n", None, "a")


def test_a_named_address_must_be_one_of_the_hosts_own() -> None:
    assert pick_private_address(FACT, ipaddress.IPv4Address("10.214.3.2"), "a") == "10.214.3.2"
    with pytest.raises(ConfigError, match=r"10\.9\.9\.9 is not an address of a"):
        pick_private_address(FACT, ipaddress.IPv4Address("10.9.9.9"), "a")


@pytest.mark.parametrize("engine", [REDIS, POSTGRES])
def test_engines_listen_on_the_private_address_via_the_host_network_and_publish_nothing(engine: object) -> None:
    assert engine in (REDIS, POSTGRES)
    spec = engine_spec(engine, "claudegate/state-x:abc", "10.214.3.2", 6379, "d1")  # type: ignore[arg-type]
    argv = create_argv(spec, "10.214.3.2", 6379)
    joined = " ".join(argv)
    assert argv[argv.index("--network") + 1] == "host" and "--publish" not in argv
    assert "--env BIND=10.214.3.2 --env PORT=6379 claudegate/state-x:abc" in joined  # before the image
    assert "--cap-drop ALL" in joined and "--read-only" in argv and "no-new-privileges" in joined
    assert f"--volume {engine.volume}:{engine.data}:rw" in joined  # type: ignore[attr-defined]
    assert f"--volume {engine.secret_on_host}:{engine.secret_in_container}:ro" in joined  # type: ignore[attr-defined]
    # A new password (its hash in a label) or another address re-creates the container.
    assert engine_spec(engine, "i", "10.0.0.1", 1, "d1").digest() != engine_spec(engine, "i", "10.0.0.1", 1, "d2").digest()  # type: ignore[arg-type]


def test_dump_and_restore_read_the_password_inside_the_container() -> None:
    for argv in (pg_dump_argv(), pg_restore_argv()):
        assert argv[:2] == ["docker", "exec"] and "claudegate-state-postgres" in argv
        assert "$(cat /run/secrets/postgres_password)" in argv[-1]
    assert "--single-transaction" in pg_restore_argv()[-1] and "--interactive" in pg_restore_argv()


def _with_host(make_cfg: ConfigFactory, tmp_path: Path) -> DeployConfig:
    return make_cfg(state={"host": {"host": "10.214.3.2", "user": "deploy", "known_hosts": str(tmp_path / "kh")}})


def test_passwords_are_made_once_0600_and_a_wider_file_is_refused(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    cfg = _with_host(make_cfg, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        operator_password(cfg, "redis")
    first = operator_password(cfg, "redis", create=True)
    path = Path(cfg.state_dir) / "state" / "redis_password"
    assert os.stat(path).st_mode & 0o777 == 0o600 and len(first.reveal()) >= 40
    assert operator_password(cfg, "redis", create=True).reveal() == first.reveal()  # kept, never re-made
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        operator_password(cfg, "redis")


def test_the_state_host_is_the_target_of_its_own_run(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    cfg = _with_host(make_cfg, tmp_path)
    seen = state_config(cfg)
    assert seen.target.host == "10.214.3.2" and cfg.target.host == "203.0.113.10"
    with pytest.raises(ConfigError, match=r"endpoints\.json is missing") as info:
        state_endpoints(cfg)  # nothing recorded yet: migrate-state says what to run first
    assert "claudegate state deploy" in (info.value.hint or "")
    plain = make_cfg()
    with pytest.raises(ConfigError, match=r"state\.host is not set"):
        deploy_state_host(plain, None)  # type: ignore[arg-type]


def test_migrate_state_sends_the_password_on_stdin_never_in_argv(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    pw = tmp_path / "pg_pw"
    pw.write_text("s3cret-pg-password\n")
    pw.chmod(0o600)
    cfg = make_cfg(state={
        "redis": {"url": "redis://10.0.0.5:6379/0"},
        "postgres": {"url": "postgresql://claudegate@10.0.0.5/claudegate", "password_file": str(pw), "tls": "require"},
    })  # fmt: skip
    url, password, tls, ca = postgres_target(cfg)
    assert (url, password.reveal(), tls, ca) == ("postgresql://claudegate@10.0.0.5/claudegate", "s3cret-pg-password", "require", b"")
    argv = migrate_argv("claudegate/gateway:abc", "claudegate-gateway-1", ["998"], url, tls, "redis://10.0.0.5:6379/0")
    assert argv[-1] == "redis://10.0.0.5:6379/0"
    assert "s3cret-pg-password" not in " ".join(argv)
    assert argv[:4] == ["docker", "run", "--rm", "--interactive"]
    assert "--volumes-from claudegate-gateway-1:ro" in " ".join(argv) and "--group-add 998" in " ".join(argv)
    assert argv[argv.index("--user") + 1] == "10001:10001" and argv[argv.index("--network") + 1] == "host"
    with pytest.raises(ConfigError, match="state: is not set"):
        postgres_target(make_cfg())


def test_the_state_commands_say_what_is_missing_before_connecting(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from claudegate.cli import app

    make_cfg()  # writes tmp_path/cfg/deploy.yaml without state:
    config = str(tmp_path / "cfg" / "deploy.yaml")
    runner = CliRunner()
    out = runner.invoke(app, ["state", "deploy", "--config", config])
    assert out.exit_code == 2 and "state.host is not set" in out.output, out.output
    out = runner.invoke(app, ["migrate-state", "--config", config])
    assert out.exit_code == 2 and "state: is not set: there is nowhere to migrate to" in out.output, out.output


def test_tls_mounts_the_engines_own_certificate_and_key_and_says_tls_in_the_environment() -> None:
    spec = engine_spec(POSTGRES, "i", "10.0.0.5", 5432, "d1", "t1")
    argv = create_argv(spec, "10.0.0.5", 5432)
    joined = " ".join(argv)
    assert "--volume /opt/claudegate-state/secrets/postgres_tls.key:/run/secrets/tls.key:ro" in joined
    assert "--volume /opt/claudegate-state/secrets/postgres_tls.crt:/run/secrets/tls.crt:ro" in joined
    assert "--env TLS=1" in joined
    plain = create_argv(engine_spec(POSTGRES, "i", "10.0.0.5", 5432, "d1"), "10.0.0.5", 5432)
    assert "TLS=1" not in " ".join(plain) and "tls.key" not in " ".join(plain)
    assert spec.digest() != engine_spec(POSTGRES, "i", "10.0.0.5", 5432, "d1", "t2").digest()  # a new cert re-creates


@pytest.mark.parametrize("tls", [False, True])
def test_the_state_host_becomes_the_url_form_the_fleet_deploy_rolls_out(
    make_cfg: ConfigFactory, tmp_path: Path, tls: bool
) -> None:
    import json

    from claudegate.deploy.state_host import as_url_state

    cfg = make_cfg(state={"host": {"host": "10.214.3.2", "user": "deploy", "tls": tls}})
    op = Path(cfg.state_dir) / "state"
    op.mkdir(parents=True)
    (op / "endpoints.json").write_text(json.dumps({"address": "10.214.3.2"}))
    state = as_url_state(cfg)
    assert state.host is None and state.redis is not None and state.postgres is not None
    assert state.redis.url == ("rediss" if tls else "redis") + "://10.214.3.2:6379/0"
    assert state.postgres.url == "postgresql://claudegate@10.214.3.2:5432/claudegate"
    assert state.redis.password_file == op / "redis_password" and state.postgres.password_file == op / "postgres_password"
    assert state.postgres.tls == ("verify-full" if tls else "disable")
    assert state.postgres.tls_ca_file == (op / "ca.pem" if tls else None)
    cfg.model_copy(update={"state": state})  # what the fleet deploy takes
