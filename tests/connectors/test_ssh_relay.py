"""TCP through an sshd that refuses forwarding (``AllowTcpForwarding no``): the relay in connectors/ssh.py.

A real sshd on 127.0.0.1 with forwarding off, real servers behind it: a
TCP echo server, one that answers and closes, a port nobody listens on,
and a real redis-server speaking to the fleet lock.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claudegate.deploy.fleet_lock import KEY, FleetLock, FleetLockHeld, RedisEndpoint
from claudegate.errors import ConnectionFailed
from tests.connectors.conftest import Sshd, make_ssh
from tests.support.ports import free_port
from tests.support.state_services import RedisServer


@pytest.fixture
def strict_sshd(sshd: Sshd) -> Sshd:
    """The connector tests' sshd, restarted with TCP forwarding refused."""
    sshd.stop()
    sshd.options.append("AllowTcpForwarding=no")
    sshd.start()
    sshd.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    return sshd


class _Server:
    """A TCP server on 127.0.0.1 running ``serve(conn)`` for each connection, in a thread."""

    def __init__(self, serve: object) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _answer_and_close(conn: socket.socket) -> None:
    with conn:
        conn.recv(100)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def _relays_left(port: int) -> list[str]:
    """The relay processes on "the host" for this port (by their argv: other tests' relays are not ours)."""
    out = subprocess.run(["pgrep", "-af", f"claudegate-relay 127.0.0.1 {port}$"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def _until(check: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def echo() -> Iterator[_Server]:
    server = _Server(_echo)
    yield server
    server.close()


def test_refused_forwarding_falls_back_to_a_relay_that_carries_bytes_both_ways(strict_sshd: Sshd, echo: _Server) -> None:
    with make_ssh(strict_sshd) as ssh:
        channel = ssh.open_tcp("127.0.0.1", echo.port)
        payload = bytes(range(256)) * 1024  # every byte value, 256 KiB: nothing is a line or text to the relay
        threading.Thread(target=channel.sendall, args=(payload,), daemon=True).start()
        got = b""
        channel.settimeout(10)
        while len(got) < len(payload):
            data = channel.recv(65536)
            assert data, f"the relay ended after {len(got)} bytes"
            got += data
        assert got == payload
        assert _relays_left(echo.port), "the relay is not what carried the bytes"
        channel.close()
        # Closing the channel ends the relay on the host: nothing is left running there.
        assert _until(lambda: not _relays_left(echo.port)), _relays_left(echo.port)
    assert "refused local port forward" in strict_sshd.log(), \
        strict_sshd.log()[-2000:]  # fmt: skip


def test_a_server_that_closes_is_an_end_of_stream_for_the_caller(strict_sshd: Sshd) -> None:
    server = _Server(_answer_and_close)
    try:
        with make_ssh(strict_sshd) as ssh:
            channel = ssh.open_tcp("127.0.0.1", server.port)
            channel.settimeout(10)
            channel.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            started, got = time.monotonic(), b""
            while data := channel.recv(65536):
                got += data
            assert got.endswith(b"\r\n\r\nok") and time.monotonic() - started < 5
            channel.close()
            assert _until(lambda: not _relays_left(server.port)), _relays_left(server.port)
    finally:
        server.close()


def test_a_port_nobody_listens_on_is_an_error_naming_it(strict_sshd: Sshd) -> None:
    port = free_port()
    with make_ssh(strict_sshd) as ssh:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as failed:
            ssh.open_tcp("127.0.0.1", port)
        assert time.monotonic() - started < 5
        assert f"127.0.0.1:{port}" in str(failed.value) and "refused" in str(failed.value).lower()
        assert "AllowTcpForwarding yes" in (failed.value.hint or "")
        with pytest.raises(ConnectionFailed):
            ssh.open_tcp("127.0.0.1; touch /tmp/claudegate-relay-pwned", 6379)
    assert not Path("/tmp/claudegate-relay-pwned").exists()


def test_the_fleet_lock_works_through_a_host_that_refuses_forwarding(strict_sshd: Sshd, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        endpoint = RedisEndpoint.from_url(redis.url, redis.password, None)
        with make_ssh(strict_sshd) as ssh:
            def dial() -> object:
                return ssh.open_tcp("127.0.0.1", redis.port)

            first = FleetLock(endpoint, dial, playbook="deploy", on_lost=print)  # type: ignore[arg-type]
            second = FleetLock(endpoint, dial, playbook="rollback", on_lost=print)  # type: ignore[arg-type]
            first.acquire()
            try:
                with pytest.raises(FleetLockHeld):
                    second.acquire()
                held = subprocess.run(
                    ["redis-cli", "-p", str(redis.port), "--no-auth-warning", "-a", redis.password or "", "GET", KEY],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                assert json.loads(held)["playbook"] == "deploy"
            finally:
                first.release()
            second.acquire()
            second.release()
    finally:
        redis.stop()
