"""Fixtures for the connector tests: a real sshd on 127.0.0.1.

Host and client keys are generated into tmp_path; sshd runs with no config
file (``-f /dev/null``) and everything it needs on its command line, as
ansible's pylibssh tests do. The login user is whoever runs the tests (root
in CI; sshd's default ``PermitRootLogin prohibit-password`` allows keys).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from claudegate.connectors.ssh import SSHConnector
from tests.support.fresh_server import KeyPair, generate_ed25519
from tests.support.ports import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _free_port() -> int:
    return free_port("127.0.0.1")


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.settimeout(1)
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"sshd on port {port} did not answer:\n{log.read_text(errors='replace')}")


@dataclass
class Sshd:
    """A running sshd on 127.0.0.1 and the keys that go with it."""

    dir: Path
    port: int
    host_keys: list[KeyPair]
    client_key: KeyPair
    client_key_path: Path
    user: str = field(default_factory=getpass.getuser)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    options: list[str] = field(default_factory=list)  # more sshd -o settings, e.g. AllowTcpForwarding=no

    @property
    def host_key(self) -> KeyPair:
        return self.host_keys[0]

    @property
    def host_key_pub_path(self) -> Path:
        return self.dir / "host_key_0.pub"

    @property
    def known_hosts(self) -> Path:
        """Where tests keep the tool's known_hosts (not created until something writes it)."""
        return self.dir / "config" / "known_hosts"

    def start(self, host_keys: list[KeyPair] | None = None) -> None:
        if host_keys is not None:
            self.host_keys = host_keys
        argv = [SSHD, "-D", "-e", "-f", "/dev/null"]
        for index, key in enumerate(self.host_keys):
            path = self.dir / f"host_key_{index}"
            _write_private(path, key.private_openssh)
            (self.dir / f"host_key_{index}.pub").write_text(key.public_line + "\n")
            argv += ["-o", f"HostKey={path}"]
        argv += [
            "-o", f"Port={self.port}",
            "-o", "ListenAddress=127.0.0.1",
            "-o", f"AuthorizedKeysFile={self.dir / 'authorized_keys'}",
            "-o", f"PidFile={self.dir / 'sshd.pid'}",
            "-o", "StrictModes=no",
            "-o", "UsePAM=no",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "PermitRootLogin=prohibit-password",
            "-o", "LogLevel=VERBOSE",
            "-o", "MaxStartups=100",
        ]  # fmt: skip
        for option in self.options:
            argv += ["-o", option]
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = self.dir / "sshd.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        _wait_for_banner(self.port, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, host_keys: list[KeyPair]) -> None:
        self.stop()
        self.start(host_keys)

    def known_hosts_line(self, key: KeyPair | None = None) -> str:
        key = key or self.host_key
        key_type, blob = key.public_line.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {blob}\n"

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    directory = tmp_path / "sshd"
    directory.mkdir()
    client = generate_ed25519("claudegate-test-client")
    client_path = directory / "id_ed25519"
    _write_private(client_path, client.private_openssh)
    (directory / "authorized_keys").write_text(client.public_line + "\n")
    server = Sshd(
        dir=directory,
        port=_free_port(),
        host_keys=[generate_ed25519("sshd-host")],
        client_key=client,
        client_key_path=client_path,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the real ~/.config or ~/.ssh, or use a real agent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def make_ssh(server: Sshd, **overrides: object) -> SSHConnector:
    """An SSH connector for ``server`` with test-friendly defaults (strict host keys)."""
    options: dict[str, object] = {
        "port": server.port,
        "user": server.user,
        "key_filename": server.client_key_path,
        "known_hosts": server.known_hosts,
        "use_agent": False,
        "look_for_keys": False,
        "connect_timeout": 5.0,
    }
    options.update(overrides)
    return SSHConnector(server.host, **options)  # type: ignore[arg-type]


@pytest.fixture
def trusted(sshd: Sshd) -> Iterator[SSHConnector]:
    """A connected SSH connector to ``sshd`` whose host key is already recorded."""
    sshd.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    with make_ssh(sshd) as connector:
        yield connector
