"""The lock across a fleet (``hosts:``): one deploy, rollback or uninstall at a time on all its hosts.

Each host has its own deploy lock (:mod:`claudegate.deploy.lock`), but two
operators rolling the same fleet would only meet host by host, each having
already changed some hosts. So a run that changes the fleet first takes one
lock in the state tier every host shares, and holds it until it ends.

Where: a Redis key (``claudegate:fleet-lock``) in ``state.redis``, set with
``SET NX PX`` to the holder's description (operator host, user, pid,
playbook, start time, a random token) with a lease of
:data:`LEASE_SECONDS`, renewed every :data:`RENEW_EVERY` seconds by a
thread of the run; released (only if still ours) when the run ends.

Why a lease in Redis and not a PostgreSQL advisory lock: the operator's
machine does not reach the state tier itself (it is on the hosts' private
network), only through a host's SSH, as a TCP connection the host's sshd
makes for it (a direct-tcpip channel, see
:meth:`~claudegate.connectors.ssh.SSHConnector.open_tcp`). A session-level
advisory lock is released when *PostgreSQL* sees its connection die, and
that connection's other end is the host's sshd, which notices an operator
machine that lost power only when TCP keepalives or ``ClientAliveInterval``
say so (by default: hours). A lease needs nobody to notice anything: the
key is gone :data:`LEASE_SECONDS` after the last renewal, whatever happened
to the operator, the network or the host the tunnel went through.
The price: a run that cannot renew for longer than the lease (a laptop
suspended mid-roll) has lost the lock; its renewer sees that and cancels
the run at its next safe point (the cancel token), so two runs never go on
believing they both hold it.

The channel goes through the first host, in rollout order, whose SSH
answers and lets it through (each host's failure is named if none does).
``rediss://`` is spoken over that channel with TLS (the CA from
``tls_ca_file``), and the password is ``state.redis.password_file``'s.
Redis speaks a tiny protocol (RESP), so no client library is needed here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from claudegate.errors import ClaudegateError, ConnectionFailed, DeployFailed

__all__ = [
    "KEY",
    "LEASE_SECONDS",
    "FleetLock",
    "FleetLockHeld",
    "RedisEndpoint",
    "Resp",
    "describe_holder",
    "holder_note",
]

KEY = "claudegate:fleet-lock"
#: The lock is gone this long after its holder's last renewal (an operator machine that died).
LEASE_SECONDS = 30.0
#: Renewed this often: two renewals may fail (a network hiccup) before the lease runs out.
RENEW_EVERY = 10.0

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Channel(Protocol):
    """What a socket and a paramiko channel both are, as far as this module uses them."""

    def sendall(self, data: bytes) -> Any: ...
    def recv(self, size: int) -> bytes: ...
    def settimeout(self, timeout: float | None) -> Any: ...
    def close(self) -> Any: ...


class FleetLockHeld(DeployFailed):
    """Another run holds the fleet's lock."""


@dataclass(frozen=True)
class RedisEndpoint:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls_ca_file: Path | None
    tls: bool

    @classmethod
    def from_url(cls, url: str, password: str | None, tls_ca_file: Path | None) -> RedisEndpoint:
        parts = urlsplit(url)
        path = parts.path.strip("/")
        return cls(
            host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(path) if path.isdigit() else 0,
            username=unquote(parts.username) if parts.username else None, password=password,
            tls_ca_file=tls_ca_file, tls=parts.scheme == "rediss",
        )  # fmt: skip

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _TlsChannel:
    """TLS over any :class:`Channel` (a paramiko channel has no file descriptor for ``wrap_socket``)."""

    def __init__(self, raw: Channel, context: ssl.SSLContext, server_hostname: str) -> None:
        self.raw = raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self._pump(self.tls.do_handshake)

    def _pump(self, fn: Callable[..., Any], *args: Any) -> Any:
        while True:
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.raw.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.raw.sendall(pending)

    def sendall(self, data: bytes) -> None:
        self._pump(self.tls.write, data)

    def recv(self, size: int) -> bytes:
        try:
            data: bytes = self._pump(self.tls.read, size)
        except ssl.SSLZeroReturnError:
            return b""
        return data

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def close(self) -> None:
        self.raw.close()


class Resp:
    """A Redis connection over a channel: ``call("SET", ...)``, RESP2 replies as Python values."""

    def __init__(self, channel: Channel, endpoint: RedisEndpoint, *, timeout: float = 10.0) -> None:
        channel.settimeout(timeout)
        if endpoint.tls:
            context = ssl.create_default_context(cafile=str(endpoint.tls_ca_file) if endpoint.tls_ca_file else None)
            channel = _TlsChannel(channel, context, endpoint.host)
        self.channel = channel
        self.buffer = b""
        self.lock = threading.Lock()
        if endpoint.password is not None:
            auth = [endpoint.username, endpoint.password] if endpoint.username else [endpoint.password]
            self.call("AUTH", *auth)
        if endpoint.db:
            self.call("SELECT", str(endpoint.db))

    def call(self, *args: str) -> Any:
        wire = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            wire.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with self.lock:
            self.channel.sendall(b"".join(wire))
            return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._more()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _more(self) -> None:
        data = self.channel.recv(65536)
        if not data:
            raise ConnectionError("the state tier's Redis closed the connection")
        self.buffer += data

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisReplyError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                self._more()
            data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            return data.decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"not a Redis reply: {line[:40]!r}")

    def close(self) -> None:
        self.channel.close()


class RedisReplyError(ClaudegateError):
    """Redis answered with an error (a wrong password, a refused command)."""


def describe_holder(value: str | None, ttl_ms: int | None = None) -> str:
    """``alice@laptop (pid 4242, deploy started 2026-12-07T15:00:00Z)`` from the lock's value."""
    try:
        owner = json.loads(value or "")
    except ValueError:
        owner = None
    if not isinstance(owner, dict):
        return "an unknown run (the lock's value is not claudegate's)"
    text = (
        f"{owner.get('user', '?')}@{owner.get('operator_host', '?')} (pid {owner.get('pid', '?')}, "
        f"{owner.get('playbook', '?')} started {owner.get('started_at', '?')})"
    )
    if ttl_ms is not None and ttl_ms >= 0:
        text += f"; its lease runs out in {ttl_ms / 1000:.0f} s unless it is renewed"
    return text


def holder_note(endpoint: RedisEndpoint, dial: Callable[[], Channel]) -> str:
    """What ``status`` says of the fleet's lock: free, or who holds it and for how long; read-only."""
    try:
        redis = Resp(dial(), endpoint)
        try:
            value, ttl = redis.call("GET", KEY), redis.call("PTTL", KEY)
        finally:
            redis.close()
    except (OSError, ConnectionError, EOFError, ClaudegateError) as exc:
        return f"the fleet's lock could not be read in the state tier's Redis ({endpoint.address}): {exc}"
    if value is None:
        return "the fleet's lock is free: no deploy, rollback or uninstall is running"
    return (
        f"the fleet's lock is held by {describe_holder(value, ttl if isinstance(ttl, int) else None)}: "
        "a deploy, rollback or uninstall now is refused until it ends"
    )


class FleetLock:
    """The fleet's lock (see the module docstring): :meth:`acquire`, then :meth:`release`.

    ``dial()`` returns a connected :class:`Channel` to the Redis endpoint
    and a description of the way it went (``through host 1/2 (10.0.0.11)``);
    ``on_lost(reason)`` is called (from the renewer thread) when the lease
    could not be kept: the run must stop.
    """

    def __init__(
        self,
        endpoint: RedisEndpoint,
        dial: Callable[[], Channel],
        *,
        playbook: str,
        on_lost: Callable[[str], None],
        lease: float = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        self.endpoint = endpoint
        self.dial = dial
        self.playbook = playbook
        self.on_lost = on_lost
        self.lease = lease
        self.renew_every = renew_every
        self.value = json.dumps(
            {
                "token": secrets.token_hex(16),
                "user": getpass.getuser(),
                "operator_host": socket.gethostname(),
                "pid": os.getpid(),
                "playbook": playbook,
                "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            sort_keys=True,
        )
        self.held = False
        self.lost: str | None = None
        self._redis: Resp | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect(self) -> Resp:
        if self._redis is None:
            self._redis = Resp(self.dial(), self.endpoint)
        return self._redis

    def _drop(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(OSError):
                redis.close()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FleetLockHeld` naming the holder. Starts the renewer."""
        ms = str(int(self.lease * 1000))
        try:
            redis = self._connect()
            taken = redis.call("SET", KEY, self.value, "NX", "PX", ms) == "OK"
            holder = None if taken else redis.call("GET", KEY)
            ttl = None if taken else redis.call("PTTL", KEY)
        except (OSError, ConnectionError, EOFError) as exc:
            self._drop()
            raise ConnectionFailed(
                f"could not take the fleet's lock in the state tier's Redis: {exc}; nothing was changed",
                target=self.endpoint.address,
            ) from exc
        except ClaudegateError:
            self._drop()
            raise
        if not taken:
            self._drop()
            raise FleetLockHeld(
                f"another run holds the fleet's lock ({self.playbook} refused, nothing was changed): "
                f"{describe_holder(holder, ttl if isinstance(ttl, int) else None)}",
                hint=(
                    "wait for it to end and run this again (claudegate status shows each host's release); "
                    f"if that run died, its lock lapses by itself within {self.lease:.0f} s of its last renewal"
                ),
            )
        self.held = True
        self._thread = threading.Thread(target=self._renew_loop, name="claudegate-fleet-lock", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        ms = str(int(self.lease * 1000))
        last_ok = _now()
        while not self._stop.wait(self.renew_every):
            try:
                kept = self._connect().call("EVAL", _RENEW, "1", KEY, self.value, ms)
            except (OSError, ConnectionError, ClaudegateError, EOFError) as exc:
                self._drop()  # the next try dials again (maybe through another host)
                if _now() - last_ok < self.lease:
                    continue
                kept, why = 0, f"could not renew it for {self.lease:.0f} s ({exc})"
            else:
                why = "its lease ran out before it was renewed (this run was paused or cut off too long)"
            if kept == 1:
                last_ok = _now()
                continue
            self.held = False
            self.lost = f"the fleet's lock was lost: {why}; stopping at the next safe point"
            self.on_lost(self.lost)
            return

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours (else it lapses by itself)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        try:
            if self.held:
                self._connect().call("EVAL", _RELEASE, "1", KEY, self.value)
        except (OSError, ConnectionError, ClaudegateError, EOFError):
            pass  # it lapses within the lease
        finally:
            self.held = False
            self._drop()


def _now() -> float:
    return time.monotonic()
