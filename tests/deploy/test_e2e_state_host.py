"""End to end: the state tier on a fresh server, and a one-host SQLite deployment moved onto it.

Two fresh servers: A is ``state.host`` (claudegate deploys Redis and
PostgreSQL there), B a one-host gateway on SQLite. A is also on a second
network whose range is *not* private (11.214.N.0/24), so it has an address
the engines must not answer on, and it has Docker's own bridge: the private
address is detected, not named. B joins A's network (the private one).

state deploy (twice: no changes) -> A's listeners are bound to the private
address only (/proc/net/tcp) and refuse on the public one -> from B, Redis
answers AUTH with the generated password and refuses a wrong one -> B
deployed on SQLite, keys used -> ``claudegate migrate-state`` (twice: the
second copies nothing) -> a gateway on A's Redis and PostgreSQL with B's
pepper accepts the same keys and holds today's usage -> a target that holds
another client is refused, nothing copied.

The multi-host deploy that points B's own gateway at ``state:`` is not
wired yet (deploy refuses state:); the last step stands in for it with a
real gateway process on this machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
import pytest
from typer.testing import CliRunner

from claudegate.backup import keystore_snapshot
from claudegate.cli import app
from claudegate.config import DeployConfig
from claudegate.deploy.api import connector_for, deploy
from claudegate.deploy.serving import serving_gateway_container
from claudegate.deploy.state_host import deploy_state_host, state_config
from claudegate.deploy.steps.clients import read_saved_key
from tests.deploy.support import (
    image_leftovers,
    sdk_client,
    server_target,
    timer,
    upstream_url,
    write_config,
    write_secret,
)
from tests.support.fake_anthropic import FakeProcess, spawn_fake
from tests.support.fleet import body, run_parallel
from tests.support.fresh_server import FreshServer, docker_client, start_fresh_server
from tests.support.gateway_proc import GatewayProc, make_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(1200)]

CANARY = "sk-ant-api03-CANARY-" + secrets.token_hex(20)
runner = CliRunner()


def _default_gateway(server: FreshServer) -> str:
    _code, out = server.exec(["cat", "/proc/net/route"])
    for line in out.decode().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    raise AssertionError(f"no default route:\n{out.decode()}")


@contextlib.contextmanager
def public_network(client: Any, name: str) -> Iterator[tuple[Any, str]]:
    """A bridge on a range that is not private (what a server's public interface looks like)."""
    for _ in range(20):
        third = secrets.randbelow(250) + 1
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=f"11.214.{third}.0/24",
                                                                           gateway=f"11.214.{third}.1")])
        try:
            network = client.networks.create(name, driver="bridge", ipam=ipam,
                                              labels={"org.claudegate.test": "public-net"})
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                continue
            raise
        try:
            yield network, f"11.214.{third}"
        finally:
            with contextlib.suppress(docker.errors.APIError):
                network.reload()
                for c in network.containers:
                    network.disconnect(c, force=True)
                network.remove()
        return
    raise RuntimeError("no free 11.214.X.0/24 for the public test network")


def _ip_on(client: Any, server: FreshServer, network: str) -> str:
    container = client.containers.get(server.container_id)
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def _listeners(server: FreshServer, port: int) -> set[str]:
    """Local addresses listening on ``port`` in the server's network namespace (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        _code, out = server.exec(["cat", table])
        for line in out.decode().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr, _, hexport = local.partition(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            if len(addr) == 8:
                found.add(socket.inet_ntoa(struct.pack("<I", int(addr, 16))))
            else:
                found.add("ipv6:" + addr)
    return found


def _refused(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(3)
        return s.connect_ex((address, port)) != 0


# Speaks RESP from B with bash's /dev/tcp: AUTH with the password, then PING.
_RESP = """exec 3<>"/dev/tcp/$1/$2"
printf 'AUTH %s\\r\\nPING\\r\\n' "$REDIS_PW" >&3
timeout 3 cat <&3 || true"""  # cat writes as it reads (head's buffer dies with it on the timeout)


@dataclass
class Env:
    dir: Path
    client: Any
    state: FreshServer
    gw: FreshServer
    fake: FakeProcess
    private: str  # A's address on the private network
    public: str  # A's address on the network that is not private
    base: dict[str, Any]

    def config(self, name: str, **sections: Any) -> tuple[Path, DeployConfig]:
        return self.dir / name, write_config(self.dir, {**self.base, **sections}, name)

    def state_section(self) -> dict[str, Any]:
        return {"host": server_target(self.state, self.dir / "known_hosts")}

    def resp_from_gateway_host(self, password: str) -> str:
        """What Redis on A's private address answers B (a container on the bridge network), stdout only."""
        _code, out, err = self.gw.exec_split(["bash", "-c", _RESP, "resp", self.private, "6379"],
                                             environment={"REDIS_PW": password})  # fmt: skip
        return out.decode(errors="replace") + (f" [stderr: {err.decode(errors='replace')}]" if err else "")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("statehost")
    client = docker_client()
    # Docker already installed on both (not started): installing it is another module's subject.
    with start_fresh_server(directory / "a", docker_installed=True) as state, \
            start_fresh_server(directory / "b", docker_installed=True) as gw, \
            public_network(client, f"{state.name}-public") as (public_net, _prefix):  # fmt: skip
        public_net.connect(state.container_id)
        client.networks.get(state.network).connect(gw.container_id)
        fake = spawn_fake("0.0.0.0:0", api_keys=[CANARY], event_delay=0.01)
        try:
            key_file = write_secret(directory / "anthropic_api_key", CANARY)
            upstream = upstream_url(_default_gateway(gw), fake)
            base = {
                "target": server_target(gw, directory / "known_hosts"),
                "domain": "gw.test",
                "tls": {"mode": "internal-ca"},
                "upstream": {"base_url": upstream, "api_key_file": str(key_file)},
                # A daily budget: the keystore keeps a day's usage for the clients that have one.
                "clients": [{"name": "team-a", "models": ["claude-haiku-*"], "daily_tokens": 1_000_000},
                            {"name": "team-b"}],
                "state_dir": str(directory / "state"),
            }  # fmt: skip
            yield Env(directory, client, state, gw, fake, state.ip, _ip_on(client, state, public_net.name), base)
        finally:
            fake.stop()


def test_state_deploy_detects_the_private_address_and_a_second_run_changes_nothing(env: Env) -> None:
    _path, cfg = env.config("state.yaml", state=env.state_section())
    with timer() as took, connector_for(state_config(cfg)) as conn:
        first = deploy_state_host(cfg, conn)
    print(f"\nstate host, fresh deploy: {took['seconds']:.1f}s")
    assert first.endpoints.address == env.private  # detected: not the public one, not Docker's bridge
    assert any("build claudegate/state-postgres" in c for c in first.changes), first.changes
    with timer() as took, connector_for(state_config(cfg)) as conn:
        again = deploy_state_host(cfg, conn)
    print(f"state host, second run: {took['seconds']:.1f}s")
    assert again.changes == (), again.changes
    for name in ("redis_password", "postgres_password", "endpoints.json"):
        assert os.stat(env.dir / "state" / "state" / name).st_mode & 0o777 == 0o600
    _code, out = env.state.exec(["stat", "-c", "%a %u", "/opt/claudegate-state/secrets/redis_password",
                                 "/opt/claudegate-state/secrets/postgres_password"])  # fmt: skip
    assert out.decode().split("\n")[:2] == ["600 10003", "600 10002"]
    _code, out = env.state.exec(["docker", "volume", "ls", "--format", "{{.Name}}"])
    assert {"claudegate-state-redis", "claudegate-state-postgres"} <= set(out.decode().split())
    assert image_leftovers(env.state.exec, "claudegate-state-") == ""  # Redis's and PostgreSQL's


def test_the_engines_listen_on_the_private_address_only(env: Env) -> None:
    assert _listeners(env.state, 6379) == {env.private}
    assert _listeners(env.state, 5432) == {env.private}
    for port in (6379, 5432):
        assert _refused(env.public, port), f"port {port} answers on the public address {env.public}"
        assert not _refused(env.private, port)


def test_redis_answers_the_generated_password_from_another_host_and_refuses_others(env: Env) -> None:
    password = (env.dir / "state" / "state" / "redis_password").read_text().strip()
    assert env.resp_from_gateway_host(password).split() == ["+OK", "+PONG"]
    wrong = env.resp_from_gateway_host("not-" + password)
    assert wrong.startswith("-WRONGPASS"), wrong


def test_postgres_answers_the_generated_password_and_refuses_others(env: Env) -> None:
    password = (env.dir / "state" / "state" / "postgres_password").read_text().strip()

    def psql(pw: str, address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["psql", "-h", address, "-U", "claudegate", "-d", "claudegate", "-Atc", "SELECT current_user"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": pw, "PGCONNECT_TIMEOUT": "5"},
        )  # fmt: skip

    ok = psql(password, env.private)
    assert ok.returncode == 0 and ok.stdout.strip() == "claudegate", ok.stderr
    bad = psql("wrong" + password, env.private)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr


def _today_usage(cfg: DeployConfig) -> dict[str, int]:
    with connector_for(cfg) as conn:
        data = keystore_snapshot(cfg, conn, serving_gateway_container(cfg, conn))
    db = sqlite3.connect(":memory:")
    db.deserialize(data)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return {n: t for n, t in db.execute("SELECT name, tokens FROM daily_usage WHERE day = ?", (day,))}


def test_migrate_state_moves_the_sqlite_host_and_the_same_keys_work_on_the_state_tier(env: Env) -> None:
    _path, sqlite_cfg = env.config("deploy.yaml")
    with timer() as took, connector_for(sqlite_cfg) as conn:
        result = deploy(sqlite_cfg, conn)
    print(f"\ngateway host on SQLite: {took['seconds']:.1f}s")
    assert result.smoke is not None and result.smoke.ok
    keys = {n: read_saved_key(env.dir / "state" / "keys", n) for n in ("team-a", "team-b")}
    assert all(keys.values())
    # Spend with team-a on the one host (its own usage line for today).
    reply = sdk_client(env.gw.ip, 443, env.dir / "state" / "ca.pem", keys["team-a"].reveal()).messages.create(  # type: ignore[union-attr]
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "three words"}])
    assert reply.usage.output_tokens > 0
    usage = _today_usage(sqlite_cfg)
    assert usage["team-a"] > 0

    moved_path, _moved = env.config("moved.yaml", state=env.state_section())
    out = runner.invoke(app, ["migrate-state", "--config", str(moved_path)])
    assert out.exit_code == 0, out.output
    assert "copied 3 clients" in out.output  # team-a, team-b and the smoke client
    again = runner.invoke(app, ["migrate-state", "--config", str(moved_path)])
    assert again.exit_code == 0 and "copied 0 clients, 0 credentials" in again.output, again.output

    # A gateway on A's Redis and PostgreSQL with B's pepper: the same keys work.
    _code, pepper = env.gw.exec(["cat", "/opt/claudegate/shared/secrets/key_pepper"])
    op = env.dir / "state" / "state"
    upstream = f"http://127.0.0.1:{env.fake.url.rsplit(':', 1)[1]}"
    gw: GatewayProc = make_gateway(env.dir / "pg-gateway", upstream, CANARY, {"state": {
        "redis": {"url": f"redis://{env.private}:6379/0", "password_file": str(op / "redis_password")},
        "postgres": {"url": f"postgresql://claudegate@{env.private}:5432/claudegate",
                     "password_file": str(op / "postgres_password")},
    }})  # fmt: skip
    (gw.workdir / "pepper").write_bytes(pepper)
    gw.start()
    try:
        haiku = {**body(), "model": "claude-haiku-4-5"}  # team-a may use haiku only
        for name, key in keys.items():
            assert key is not None
            status, doc, _h = run_parallel([gw], key.reveal(), [haiku])[0]
            assert status == 200, (name, doc)
        status, _doc, _h = run_parallel([gw], "sk-cg-not-a-key-" + secrets.token_hex(16), [haiku])[0]
        assert status == 401
        row = subprocess.run(
            ["psql", "-h", env.private, "-U", "claudegate", "-d", "claudegate", "-Atc",
             "SELECT tokens FROM daily_usage WHERE name = 'team-a'"
             " AND day = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')"],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "PGPASSWORD": (op / "postgres_password").read_text().strip()},
        )  # fmt: skip
        assert int(row.stdout.split()[0]) >= usage["team-a"]  # today's usage came along (and grew by the calls above)

        # backup carries a pg_dump of the state host's database.
        saved = env.dir / "with-postgres.cgbackup"
        made = runner.invoke(app, ["backup", "--config", str(moved_path), "--out", str(saved)])
        assert made.exit_code == 0 and "postgres.dump" in made.output, made.output

        # A client made on the state tier since: the target now differs from B's keystore.
        gw.cli("keys", "create", "made-elsewhere")
        refused = runner.invoke(app, ["migrate-state", "--config", str(moved_path)])
        assert refused.exit_code != 0
        assert "already holds different data" in refused.output and "made-elsewhere" in refused.output
        assert "nothing was copied" in refused.output

        # restore loads the dump back: the database is what it was at the backup.
        gw.stop()  # its pooled connections would only slow the tables' replacement
        back = runner.invoke(app, ["restore", "--config", str(moved_path), "--from", str(saved), "--yes"])
        assert back.exit_code == 0 and "PostgreSQL (state host)" in back.output, back.output
        names = subprocess.run(
            ["psql", "-h", env.private, "-U", "claudegate", "-d", "claudegate", "-Atc", "SELECT name FROM clients"],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "PGPASSWORD": (op / "postgres_password").read_text().strip()},
        ).stdout.split()  # fmt: skip
        assert "made-elsewhere" not in names and {"team-a", "team-b"} <= set(names)
        after = runner.invoke(app, ["migrate-state", "--config", str(moved_path)])
        assert after.exit_code == 0 and "copied 0 clients" in after.output, after.output
    finally:
        gw.stop()


def test_tls_on_the_state_host_keeps_the_data_and_refuses_plain_text(env: Env) -> None:
    section = env.state_section()
    section["host"]["tls"] = True
    _path, cfg = env.config("state-tls.yaml", state=section)
    with connector_for(state_config(cfg)) as conn:
        result = deploy_state_host(cfg, conn)
    assert any("re-create claudegate-state-postgres" in c for c in result.changes), result.changes
    ca = env.dir / "state" / "state" / "ca.pem"
    assert result.endpoints.tls_ca_file == ca and result.endpoints.redis_url.startswith("rediss://")
    pg_pw = (env.dir / "state" / "state" / "postgres_password").read_text().strip()

    def psql(conninfo: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["psql", f"host={env.private} user=claudegate dbname=claudegate connect_timeout=5 {conninfo}", "-Atc",
             "SELECT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), count(*) FROM clients"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": pg_pw},
        )  # fmt: skip

    verified = psql(f"sslmode=verify-full sslrootcert={ca}")
    assert verified.returncode == 0, verified.stderr
    ssl_on, clients = verified.stdout.strip().split("|")
    assert ssl_on == "t" and int(clients) >= 3  # the data survived the re-create (named volume)
    plain = psql("sslmode=disable")
    assert plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr
    redis_pw = (env.dir / "state" / "state" / "redis_password").read_text().strip()
    answer = env.resp_from_gateway_host(redis_pw)
    assert "+OK" not in answer and "+PONG" not in answer, answer  # plain RESP is not served on the TLS port
    with connector_for(state_config(cfg)) as conn:
        assert deploy_state_host(cfg, conn).changes == ()  # and it converged
