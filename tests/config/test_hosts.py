"""deploy.yaml's `hosts:` (several gateway hosts): what they need, and what a one-host file keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from claudegate.config import DeployConfig
from claudegate.config.derive import edge_settings, gateway_config
from claudegate.config.files import check_secret_files
from claudegate.config.model import RULES_DEFERRED
from claudegate.config.problems import DeployConfigError
from claudegate.config.state_files import state_files
from claudegate.deploy.fleet import rollout_batches
from tests.config.common import BASE, load, problems

# BASE without its target: (and with a TLS mode several hosts may use).
FLEET_BASE = BASE.replace("target:\n  host: gw.example.com\n", "").replace(
    "tls:\n  mode: acme\n  email: ops@example.com\n", "tls:\n  mode: internal-ca\n"
)
TWO = "hosts:\n  - {host: 10.0.0.11}\n  - {host: 10.0.0.12, port: 2222}\n"
STATE = """\
state:
  redis: {url: "redis://10.0.0.5:6379/0", password_file: /etc/cg/redis_pw}
  postgres: {url: "postgresql://claudegate@10.0.0.5:5432/claudegate", password_file: /etc/cg/pg_pw, tls: disable}
"""


def test_several_hosts_without_state_are_refused_naming_the_field_and_the_fix() -> None:
    lines = problems(TWO, base=FLEET_BASE)
    assert len(lines) == 1, lines
    assert "state: is required with several hosts (hosts: names 2)" in lines[0]
    assert "add state: with the URLs of an existing Redis and PostgreSQL" in lines[0]


def test_several_hosts_with_state_load_and_target_is_the_first() -> None:
    cfg = load(TWO + STATE, base=FLEET_BASE)
    assert [h.host for h in cfg.fleet] == ["10.0.0.11", "10.0.0.12"]
    assert cfg.several_hosts and cfg.target.host == "10.0.0.11"
    second = cfg.for_host(cfg.fleet[1])
    assert (second.target.host, second.target.port) == ("10.0.0.12", 2222)
    assert second.state == cfg.state and second.domain == cfg.domain
    assert cfg.rollout.batch == 1


def test_a_one_host_file_is_unchanged_and_hosts_with_one_entry_is_the_same_deploy() -> None:
    one = load("", base=BASE)
    assert one.fleet == [one.target] and not one.several_hosts and one.hosts is None
    listed = load("hosts:\n  - {host: gw.example.com}\n", base=BASE.replace("target:\n  host: gw.example.com\n", ""))
    assert listed.target == one.target and not listed.several_hosts
    assert gateway_config(listed) == gateway_config(one)  # same gateway.yaml, so the same release


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("target: {host: 10.0.0.99}\n" + TWO + STATE, "target: and hosts: are both set"),
        ("hosts:\n  - {host: 10.0.0.11}\n  - {host: local}\n" + STATE, "hosts[1].host: is local"),
        ("hosts:\n  - {host: 10.0.0.11}\n  - {host: 10.0.0.11}\n" + STATE, "hosts[1].host: 10.0.0.11 (port 22) is already hosts[0]"),
        ("hosts: []\n" + STATE, "hosts"),
        (TWO + STATE + "rollout: {batch: 0}\n", "rollout.batch"),
    ],
)
def test_hosts_mistakes_name_the_key(text: str, needle: str) -> None:
    lines = problems(text, base=FLEET_BASE)
    assert any(needle in line for line in lines), lines


def test_acme_with_several_hosts_loads_and_every_host_relays_challenges_to_the_first() -> None:
    acme = FLEET_BASE.replace("tls:\n  mode: internal-ca\n", "tls:\n  mode: acme\n  email: ops@example.com\n")
    cfg = load(TWO + STATE, base=acme)  # no longer refused
    # One nginx configuration for the fleet (one release id): the issuer's HTTP port on every host.
    relays = {edge_settings(cfg.for_host(h)).acme_relay for h in cfg.fleet}
    assert relays == {"10.0.0.11:80"}
    six = load("hosts:\n  - {host: \"fd00::11\"}\n  - {host: 10.0.0.12}\n" + STATE, base=acme)
    assert edge_settings(six).acme_relay == "[fd00::11]:80"
    # One host, or no ACME: no relay.
    assert edge_settings(load("", base=BASE)).acme_relay is None
    assert edge_settings(load(TWO + STATE, base=FLEET_BASE)).acme_relay is None


def test_the_gateway_gets_state_with_its_secret_files_never_the_passwords(tmp_path: Path) -> None:
    raw = yaml.safe_load(FLEET_BASE + TWO + STATE)
    cfg = DeployConfig.model_validate(raw, context={RULES_DEFERRED: True})
    state = gateway_config(cfg)["state"]
    assert state["redis"] == {"url": "redis://10.0.0.5:6379/0", "lease_seconds": 15,
                              "password_file": "/run/secrets/redis_password"}  # fmt: skip
    assert state["postgres"]["password_file"] == "/run/secrets/postgres_password"
    assert state["postgres"]["tls"] == "disable"
    assert [f.name for f in state_files(cfg)] == ["redis_password", "postgres_password"]
    assert "state" not in gateway_config(load("", base=BASE))


def test_every_hosts_ssh_key_must_be_0600(tmp_path: Path) -> None:
    loose = tmp_path / "id_loose"
    loose.write_text("not really a key\n")
    os.chmod(loose, 0o644)
    raw = yaml.safe_load(FLEET_BASE + STATE)
    raw["hosts"] = [{"host": "10.0.0.11"}, {"host": "10.0.0.12", "ssh_key": str(loose)}]
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    os.chmod(secret, 0o600)
    raw["upstream"]["api_key_file"] = str(secret)
    raw["state"]["redis"]["password_file"] = raw["state"]["postgres"]["password_file"] = str(secret)
    cfg = DeployConfig.model_validate(raw, context={RULES_DEFERRED: True})
    with pytest.raises(DeployConfigError) as info:
        check_secret_files(cfg)
    assert "hosts[1].ssh_key" in str(info.value)


@pytest.mark.parametrize(
    ("count", "batch", "order"),
    [(1, 1, [[0]]), (3, 1, [[0], [1], [2]]), (5, 2, [[0], [1, 2], [3, 4]]), (4, 10, [[0], [1, 2, 3]])],
)
def test_the_first_host_goes_alone_then_batches(count: int, batch: int, order: list[list[int]]) -> None:
    assert rollout_batches(count, batch) == order


def test_the_rendered_gateway_yaml_is_one_the_gateway_accepts() -> None:
    from claudegate_gateway.config import parse_config

    raw = yaml.safe_load(FLEET_BASE + TWO + STATE)
    cfg = DeployConfig.model_validate(raw, context={RULES_DEFERRED: True})
    parsed = parse_config(gateway_config(cfg), "gateway.yaml")
    assert parsed.state.redis is not None and parsed.state.redis.url == "redis://10.0.0.5:6379/0"
    assert parsed.state.postgres is not None and str(parsed.state.postgres.password_file) == (
        "/run/secrets/postgres_password"
    )
