"""Real Redis and PostgreSQL for the tests, from Debian's packages, no systemd.

Each server runs in its own temporary directory on a free loopback port and
is stopped when its fixture ends. Nothing is skipped: when a binary is
missing the fixture fails and names the apt packages to install.

Both are started with a password (Redis ``requirepass``, PostgreSQL
scram-sha-256), so the gateway's secret-file path is what the tests use.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_proc import free_port, write_secret

APT_HINT = "apt-get install -y --no-install-recommends redis-server postgresql"


def _need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pg = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"))
        if pg:
            return str(pg[-1])
        raise RuntimeError(f"{binary} not found: the state-tier tests need Debian's {package} ({APT_HINT})")
    return found


def _wait_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s; log: {log.read_text()[-2000:]}")


@dataclass
class RedisServer:
    """One redis-server on 127.0.0.1; stop() and start() again keep its port (an outage and its end)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen[bytes] | None = None
    # (certificate, key) PEM files: TLS only on `port`, as a managed rediss:// service is.
    tls: tuple[Path, Path] | None = None
    # Also listen here (a docker bridge's address: reached from containers on it, see state_on_bridge).
    also_bind: str | None = None

    def __post_init__(self) -> None:
        # The password file exists before the server does: a gateway may start first.
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_secret(self.password_file, self.password)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.also_bind or '127.0.0.1'}:{self.port}/0"

    @property
    def password_file(self) -> Path:
        return self.workdir / "redis_password"

    def start(self) -> RedisServer:
        binary = _need("redis-server", "redis-server")
        log = self.workdir / "redis.log"
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls[0]),
                      "--tls-key-file", str(self.tls[1]), "--tls-auth-clients", "no"]  # fmt: skip
        self.proc = subprocess.Popen(
            [binary, *listen, "--bind", "127.0.0.1", *([self.also_bind] if self.also_bind else []), "--dir", str(self.workdir),
             "--save", "", "--appendonly", "no", "--requirepass", self.password, "--logfile", str(log),
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, 10, "redis-server", log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # an outage, not a clean shutdown
            self.proc.wait(10)
        self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [_need("redis-cli", "redis-tools"), "-p", str(self.port), "--no-auth-warning", "-a", self.password, *args],
            capture_output=True, text=True, check=True, timeout=10,
        )
        return out.stdout.strip()


@dataclass
class PostgresServer:
    """A PostgreSQL cluster made with initdb in a temporary directory, run as the postgres user."""

    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user: str = "claudegate"
    database: str = "claudegate"
    tls: tuple[Path, Path] | None = None  # (certificate, key) PEM files: ssl=on
    # Also listen on this address and let clients from this network in (scram-sha-256): a
    # docker bridge's address and subnet, for containers on it (see state_on_bridge).
    also_bind: tuple[str, str] | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def password_file(self) -> Path:
        return self.workdir / "pg_password"

    @property
    def url(self) -> str:
        host = self.also_bind[0] if self.also_bind else "127.0.0.1"
        return f"postgresql://{self.user}@{host}:{self.port}/{self.database}"

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*runas, *argv], capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> PostgresServer:
        initdb = _need("initdb", "postgresql")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "superuser_pw"
        write_secret(pwfile, self.password)
        write_secret(self.password_file, self.password)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(pwfile, "postgres")
        self._as_postgres(
            initdb, "-D", str(self.datadir), "-U", self.user, "--pwfile", str(pwfile),
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        return self

    def start(self) -> PostgresServer:
        pg_ctl = _need("pg_ctl", "postgresql")
        if not self.datadir.exists():
            self.init()
        listen = "127.0.0.1" + (f",{self.also_bind[0]}" if self.also_bind else "")
        opts = f"-p {self.port} -c listen_addresses={listen} -k {self.workdir} -c fsync=off"
        if self.also_bind:
            hba = self.datadir / "pg_hba.conf"
            line = f"host all all {self.also_bind[1]} scram-sha-256\n"
            if line not in hba.read_text():
                with hba.open("a") as fh:
                    fh.write(line)
        if self.tls is not None:
            for src, name in zip(self.tls, ("server.crt", "server.key"), strict=True):
                dst = self.datadir / name  # postgres insists on owning its key, mode 0600
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o600)
                if os.geteuid() == 0:
                    shutil.chown(dst, "postgres")
            opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        self._as_postgres(pg_ctl, "-D", str(self.datadir), "-l", str(self.workdir / "pg.log"), "-o", opts,
                          "-w", "-t", "60", "start")  # fmt: skip
        _wait_port(self.port, 30, "postgres", self.workdir / "pg.log")
        # One database per server; owned by the test user (the initdb superuser).
        self._psql("postgres", f"CREATE DATABASE {self.database}", check=False)
        return self

    def _psql(self, db: str, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        psql = _need("psql", "postgresql-client")
        env = {**os.environ, "PGPASSWORD": self.password}
        return subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", db, "-v", "ON_ERROR_STOP=1",
             "-c", sql],
            capture_output=True, text=True, check=check, timeout=30, env=env,
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._as_postgres(_need("pg_ctl", "postgresql"), "-D", str(self.datadir), "-m", mode, "-w", "stop",
                              check=False)  # fmt: skip

    def fresh_database(self) -> str:
        """A new empty database on this server; its URL."""
        name = "t_" + secrets.token_hex(6)
        self._psql("postgres", f"CREATE DATABASE {name}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"


def _tempdir(prefix: str) -> Path:
    # Not under pytest's tmp_path: postgres must be able to reach it as its own user.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(_tempdir("cg-redis-")).start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def redis_db(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test."""
    redis_server.cli("FLUSHALL")
    return redis_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(_tempdir("cg-pg-")).start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def state_section(redis: RedisServer, pg: PostgresServer, url: str, **postgres: Any) -> dict[str, Any]:
    """gateway.yaml's ``state:`` for this Redis and a database of this PostgreSQL (``url``)."""
    return {"state": {
        "redis": {"url": redis.url, "password_file": str(redis.password_file)},
        "postgres": {"url": url, "password_file": str(pg.password_file), **postgres},
    }}  # fmt: skip
