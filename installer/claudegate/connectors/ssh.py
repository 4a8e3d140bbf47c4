"""The SSH target: commands run on a server over one verified paramiko connection.

Host keys are checked by this module, not by paramiko's policies, against the
tool's own known_hosts file (see :mod:`.known_hosts`), the way OpenSSH's
``StrictHostKeyChecking`` does:

``strict`` (default)
    an unknown host raises :class:`~claudegate.errors.HostKeyUnknown`, which
    carries the offered key's ``SHA256:`` fingerprint to show the operator;
``accept-new``
    an unknown host's key is recorded (one appended line) and used;
``expected_fingerprint="SHA256:..."`` (``--accept-host-key``)
    an unknown host is accepted only if it offers exactly that key, which is
    then recorded; any other key raises
    :class:`~claudegate.errors.HostKeyChanged`.

A key that differs from a recorded one always raises ``HostKeyChanged`` (with
the file and line of the record), whatever the policy, before anything is
sent to the server.

Commands are argv lists joined with :func:`shlex.join` for the remote login
shell (assumed POSIX). ``sudo=True`` prefixes ``sudo -n --`` unless the login
user is root.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import paramiko

from claudegate.connectors.base import Connector, Input, Result, stderr_tail
from claudegate.connectors.known_hosts import (
    KnownHostEntry,
    KnownHostsFile,
    fingerprint_sha256,
    host_id,
    normalize_fingerprint,
)
from claudegate.control.interaction import HostKeyQuestion
from claudegate.errors import (
    CommandTimedOut,
    ConfigError,
    ConnectionFailed,
    HostKeyChanged,
    HostKeyError,
    HostKeyUnknown,
)
from claudegate.redact import Secret

# paramiko's transport thread logs a failed handshake, with a traceback, at
# ERROR; with no logging configured Python prints that on stderr ahead of the
# clean error the same failure becomes here. A handler of our own keeps it
# out of the terminal (a program that configures logging still receives it).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

__all__ = ["HostKeyPolicy", "SSHConnector", "default_known_hosts"]

_CHUNK = 1 << 15


# When sshd refuses TCP forwarding, bash on the server makes the connection
# (its /dev/tcp redirection: no netcat or socat needed on a minimal Debian) and
# the SSH session's stdin and stdout carry the bytes. It says it is connected
# on stderr first, so a refused connection is an error, not an empty stream.
# Whichever side ends first ends both (kill 0: the session's process group,
# which sshd made for this command): a server that closes is an EOF for the
# caller, and a caller that closes the channel leaves nothing on the host.
_RELAY = """exec 3<>"/dev/tcp/$1/$2" || exit 97
echo claudegate-relay: connected >&2
exec 4<&0
{ cat <&3; kill 0; } 2>/dev/null &
cat <&4 >&3 2>/dev/null
kill 0
"""
_RELAY_READY = b"claudegate-relay: connected"
# A name or an address, as bash's /dev/tcp takes them (no slash, no shell syntax).
_RELAY_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}")

class HostKeyPolicy(StrEnum):
    """What to do with a host whose key is not recorded yet."""

    STRICT = "strict"
    ACCEPT_NEW = "accept-new"


def default_known_hosts() -> Path:
    """``$XDG_CONFIG_HOME/claudegate/known_hosts`` (default ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "claudegate" / "known_hosts"


# Host key algorithms for a key type as it appears in known_hosts.
_ALGORITHMS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
_DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")


class SSHConnector(Connector):
    """Runs commands on ``user@host:port`` over SSH (paramiko).

    Nothing happens until :meth:`connect` (or the first command, or
    ``with``). Authentication tries, in order: ``key_filename``, the keys of
    a running ssh-agent (``use_agent``), then ``~/.ssh/id_{ed25519,ecdsa,rsa}``
    (``look_for_keys``). Passwords are not supported.

    ``connect_timeout`` bounds the TCP connect, the SSH handshake and each
    authentication step; ``default_timeout`` is the per-command timeout when
    :meth:`run` gets none (None: wait forever). ``keepalive`` (seconds, 0 =
    off) sends SSH keepalives so idle NAT state does not drop the session
    during long steps.
    """

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int = 22,
        key_filename: str | os.PathLike[str] | None = None,
        passphrase: str | Secret | None = None,
        use_agent: bool = True,
        look_for_keys: bool = True,
        known_hosts: str | os.PathLike[str] | None = None,
        also_trust: Sequence[str | os.PathLike[str]] = (),
        host_key_policy: HostKeyPolicy | str = HostKeyPolicy.STRICT,
        expected_fingerprint: str | None = None,
        hash_known_hosts: bool = False,
        connect_timeout: float = 10.0,
        default_timeout: float | None = None,
        keepalive: float = 15.0,
        confirm_new_key: Callable[[HostKeyQuestion], bool] | None = None,
    ) -> None:
        super().__init__()
        if not host:
            raise ConfigError("SSH target has no host")
        if not 0 < port < 65536:
            raise ConfigError(f"SSH port {port} is out of range (1-65535)")
        try:
            self.host_key_policy = HostKeyPolicy(host_key_policy)
        except ValueError:
            raise ConfigError(
                f"unknown host key policy {host_key_policy!r}; use 'strict' or 'accept-new'"
            ) from None
        self.expected_fingerprint: str | None = None
        if expected_fingerprint is not None:
            normalized = normalize_fingerprint(expected_fingerprint)
            if normalized is None:
                raise ConfigError(
                    f"{expected_fingerprint!r} is not a host key fingerprint; expected "
                    "'SHA256:' followed by 43 base64 characters, as ssh-keygen -lf prints it"
                )
            self.expected_fingerprint = normalized
        self.host = host
        self.port = port
        self.user = user or getpass.getuser()
        self.key_filename = Path(key_filename).expanduser() if key_filename is not None else None
        self.passphrase = Secret(passphrase) if passphrase is not None else None
        if self.passphrase is not None:
            self.add_secret(self.passphrase)
        self.use_agent = use_agent
        self.look_for_keys = look_for_keys
        self.known_hosts = KnownHostsFile(known_hosts if known_hosts is not None else default_known_hosts())
        self.also_trust = [KnownHostsFile(p) for p in also_trust]
        self.hash_known_hosts = hash_known_hosts
        self.connect_timeout = connect_timeout
        self.default_timeout = default_timeout
        self.keepalive = keepalive
        #: Asked on first contact under the strict policy (the session's interaction); True records the key.
        self.confirm_new_key = confirm_new_key
        self._confirmed_now = False
        self.target = f"{self.user}@{self._where()}"
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        #: ``SHA256:...`` of the verified host key, once connected.
        self.host_key_fingerprint: str | None = None

    # -- connection ----------------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self.user == "root"

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def connect(self) -> SSHConnector:
        """Open, verify and authenticate the connection (no-op when connected)."""
        with self._lock:
            if self.connected:
                return self
            self._close_transport()
            try:
                self._transport = self._open()
            except ConnectionFailed:
                if not self._confirmed_now:
                    raise
                # The person took long enough to confirm the key that the server
                # gave up on the login (LoginGraceTime): the key is recorded now, so
                # one more attempt verifies it without asking again.
                self._confirmed_now = False
                self._transport = self._open()
        return self

    def __enter__(self) -> SSHConnector:
        return self.connect()

    def open_tcp(self, host: str, port: int, timeout: float = 10.0) -> paramiko.Channel:
        """A TCP connection made *from the server* to ``host:port``.

        A direct-tcpip channel where sshd allows it; where it refuses
        (``AllowTcpForwarding no``, a common hardening), a relay run on the
        server by the login shell, see :data:`_RELAY`. Either way the far end
        sees the server's address as the source: ``claudegate audit --from``
        uses it to send probes from a second vantage point, and the fleet's
        lock to reach the state tier's Redis.
        """
        self.connect()
        assert self._transport is not None
        try:
            return self._transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as exc:
            if exc.code != paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise self._no_tcp(host, port, exc) from None
        except (paramiko.SSHException, OSError) as exc:
            raise self._no_tcp(host, port, exc) from None
        return self._relay(host, port, timeout)

    def _no_tcp(self, host: str, port: int, exc: BaseException) -> ConnectionFailed:
        return ConnectionFailed(
            f"{self.target} could not open a connection to {host}:{port}: {exc}",
            target=self.target,
            hint=f"{self.host} must reach {host}:{port} (a firewall, or the service not listening there?)",
        )

    def _relay(self, host: str, port: int, timeout: float) -> paramiko.Channel:
        if not _RELAY_HOST.fullmatch(host) or not 0 < port < 65536:
            raise ConnectionFailed(f"{host}:{port} is not an address the relay can take", target=self.target)
        channel = self._session()
        try:
            channel.exec_command(shlex.join(["bash", "-c", _RELAY, "claudegate-relay", host, str(port)]))
            said = b""
            deadline = time.monotonic() + timeout
            while _RELAY_READY not in said:
                if channel.recv_stderr_ready():
                    said += channel.recv_stderr(4096)
                elif channel.exit_status_ready() or time.monotonic() > deadline:
                    said += channel.recv_stderr(4096) if channel.recv_stderr_ready() else b""
                    why = said.decode(errors="replace").strip() or "no answer in time"
                    raise ConnectionFailed(
                        f"{self.target} could not open a connection to {host}:{port} (sshd refuses TCP forwarding,"
                        f" so through bash on the host): {why[-300:]}",
                        target=self.target,
                        hint=f"{self.host} must reach {host}:{port} and have bash; or allow forwarding to it"
                        " (AllowTcpForwarding yes in its sshd)",
                    )
                else:
                    time.sleep(0.01)
        except BaseException:
            channel.close()
            raise
        return channel

    def close(self) -> None:
        with self._lock:
            self._close_transport()

    def _close_transport(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None

    def _where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _open(self) -> paramiko.Transport:
        where = self._where()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise ConnectionFailed(
                f"cannot resolve {self.host} ({exc.strerror})",
                target=where,
                hint="check the host name in the target settings",
            ) from None
        except TimeoutError:
            raise ConnectionFailed(
                f"cannot connect to {where}: no answer within {self.connect_timeout:g}s",
                target=where,
                hint="check the address, the port and any firewall between here and the server",
            ) from None
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot connect to {where}: {exc.strerror or exc}",
                target=where,
                hint="is sshd running there, and is this the right port?",
            ) from None

        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = self.connect_timeout
            transport.handshake_timeout = self.connect_timeout
            transport.auth_timeout = self.connect_timeout
            recorded = self._recorded_entries()
            self._prefer_recorded_key_types(transport, recorded)
            self._handshake(transport)
            self._verify_host_key(transport.get_remote_server_key(), recorded)
            self._authenticate(transport)
            if self.keepalive > 0:
                transport.set_keepalive(int(max(1, self.keepalive)))
        except BaseException:
            transport.close()
            raise
        return transport

    def _handshake(self, transport: paramiko.Transport) -> None:
        done = threading.Event()
        try:
            transport.start_client(event=done)
        except paramiko.SSHException as exc:
            raise ConnectionFailed(
                f"SSH handshake with {self._where()} failed: {exc}", target=self._where()
            ) from None
        deadline = time.monotonic() + self.connect_timeout
        while not done.wait(0.05):
            if not transport.is_active() or time.monotonic() > deadline:
                break
        if not done.is_set() or not transport.is_active():
            reason = transport.get_exception()
            if reason is None and not done.is_set():
                reason_text = f"no SSH handshake within {self.connect_timeout:g}s"
            else:
                reason_text = str(reason or "connection closed")
            raise ConnectionFailed(
                f"SSH handshake with {self._where()} failed: {reason_text}",
                target=self._where(),
                hint="is this port an SSH server?",
            )

    # -- host keys -------------------------------------------------------------
    def _recorded_entries(self) -> list[KnownHostEntry]:
        entries: list[KnownHostEntry] = []
        for source in [self.known_hosts, *self.also_trust]:
            entries.extend(source.lookup(self.host, self.port))
        return entries

    def _prefer_recorded_key_types(
        self, transport: paramiko.Transport, recorded: list[KnownHostEntry]
    ) -> None:
        """Ask for the key types we have on record first (as OpenSSH does).

        Otherwise a server with several host keys could offer a type we have
        not recorded, which would look like a changed key.
        """
        options = transport.get_security_options()
        available = list(options.key_types)
        wanted: list[str] = []
        for entry in recorded:
            if entry.marker is not None:
                continue
            for algorithm in _ALGORITHMS_FOR_TYPE.get(entry.key_type, (entry.key_type,)):
                if algorithm in available and algorithm not in wanted:
                    wanted.append(algorithm)
        if wanted:
            options.key_types = [*wanted, *(a for a in available if a not in wanted)]

    def _verify_host_key(self, key: paramiko.PKey, recorded: list[KnownHostEntry]) -> None:
        blob = key.asbytes()
        key_type = key.get_name()
        offered = fingerprint_sha256(blob)

        for entry in recorded:
            if entry.marker == "@revoked" and entry.key_blob == blob:
                raise HostKeyError(
                    f"{host_id(self.host, self.port)} offered the {key_type} key {offered}, which "
                    f"{entry.path} line {entry.line} marks as revoked. Nothing was sent to the host.",
                    host=self.host,
                    port=self.port,
                )
        plain = [entry for entry in recorded if entry.marker is None]
        if plain:
            if not any(entry.key_blob == blob for entry in plain):
                same_type = [entry for entry in plain if entry.key_type == key_type]
                entry = (same_type or plain)[0]
                raise HostKeyChanged(
                    host=self.host,
                    port=self.port,
                    key_type=key_type,
                    expected_fingerprint=entry.fingerprint,
                    offered_fingerprint=offered,
                    known_hosts=entry.path,
                    line=entry.line,
                )
            if self.expected_fingerprint is not None and self.expected_fingerprint != offered:
                raise HostKeyChanged(
                    host=self.host,
                    port=self.port,
                    key_type=key_type,
                    expected_fingerprint=self.expected_fingerprint,
                    offered_fingerprint=offered,
                )
            self.host_key_fingerprint = offered
            return

        # First contact.
        if self.expected_fingerprint is not None:
            if self.expected_fingerprint != offered:
                raise HostKeyChanged(
                    host=self.host,
                    port=self.port,
                    key_type=key_type,
                    expected_fingerprint=self.expected_fingerprint,
                    offered_fingerprint=offered,
                )
        elif self.host_key_policy is not HostKeyPolicy.ACCEPT_NEW:
            question = HostKeyQuestion(
                host=self.host,
                port=self.port,
                key_type=key_type,
                fingerprint=offered,
                known_hosts=str(self.known_hosts.path),
            )
            if self.confirm_new_key is not None and self.confirm_new_key(question):
                self._confirmed_now = True
                self._record(key)
                self.host_key_fingerprint = offered
                return
            raise HostKeyUnknown(
                host=self.host,
                port=self.port,
                key_type=key_type,
                fingerprint=offered,
                known_hosts=self.known_hosts.path,
            )
        self._record(key)
        self.host_key_fingerprint = offered

    def _record(self, key: paramiko.PKey) -> None:
        try:
            self.known_hosts.append(
                self.host, self.port, key.get_name(), key.get_base64(), hashed=self.hash_known_hosts
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot record the host key of {self._where()} in {self.known_hosts.path}: {exc.strerror}"
            ) from None

    # -- authentication --------------------------------------------------------
    def _candidate_keys(self) -> list[tuple[str, paramiko.PKey]]:
        keys: list[tuple[str, paramiko.PKey]] = []
        if self.key_filename is not None:
            keys.append((f"key file {self.key_filename}", self._load_key(self.key_filename, required=True)))
        if self.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                agent_keys = paramiko.Agent().get_keys()
            except paramiko.SSHException:
                agent_keys = ()
            for number, agent_key in enumerate(agent_keys, start=1):
                keys.append((f"agent key {number} ({agent_key.get_name()})", agent_key))
        if self.look_for_keys and self.key_filename is None:
            ssh_dir = Path("~/.ssh").expanduser()
            for name in _DEFAULT_KEY_FILES:
                path = ssh_dir / name
                if path.is_file():
                    with contextlib.suppress(ConfigError):
                        keys.append((f"key file {path}", self._load_key(path, required=False)))
        return keys

    def _load_key(self, path: Path, *, required: bool) -> paramiko.PKey:
        # bytes, not str: paramiko hands it to cryptography, which wants bytes.
        password = self.passphrase.reveal_bytes() if self.passphrase is not None else None
        try:
            return paramiko.PKey.from_path(path, password)
        except FileNotFoundError:
            raise ConfigError(f"SSH key file {path} does not exist") from None
        except (paramiko.PasswordRequiredException, TypeError) as exc:
            # cryptography raises TypeError for a missing or an unneeded password.
            if password is None:
                raise ConfigError(
                    f"SSH key file {path} is encrypted: give its passphrase, or load it into ssh-agent"
                ) from None
            raise ConfigError(f"cannot read SSH key file {path}: {exc}") from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise ConfigError(f"cannot read SSH key file {path}: {exc}") from None

    def _authenticate(self, transport: paramiko.Transport) -> None:
        tried: list[str] = []
        for label, key in self._candidate_keys():
            tried.append(label)
            try:
                remaining = transport.auth_publickey(self.user, key)
            except paramiko.AuthenticationException:
                continue
            except paramiko.SSHException as exc:
                raise ConnectionFailed(
                    f"SSH authentication as {self.user} on {self._where()} failed: {exc}",
                    target=self.target,
                ) from None
            if not remaining and transport.is_authenticated():
                return
        if not tried:
            raise ConnectionFailed(
                f"no SSH key to log in as {self.user} on {self._where()}",
                target=self.target,
                hint="set the target's ssh key file, or load a key into ssh-agent",
            )
        raise ConnectionFailed(
            f"SSH authentication as {self.user} on {self._where()} failed (tried {', '.join(tried)})",
            target=self.target,
            hint=f"add the public key to ~{self.user}/.ssh/authorized_keys on the server, "
            "or check the user name",
        )

    # -- commands ----------------------------------------------------------------
    def _session(self) -> paramiko.Channel:
        self.connect()
        transport = self._transport
        assert transport is not None
        try:
            return transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionFailed(
                f"lost the SSH session to {self._where()}: {exc or type(exc).__name__}",
                target=self.target,
            ) from None

    def run(
        self,
        argv: Sequence[str],
        *,
        input: Input | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = True,
        on_output: Callable[[bytes], None] | None = None,
    ) -> Result:
        final = self.prepare_argv(argv, sudo=sudo)
        timeout = timeout if timeout is not None else self.default_timeout
        channel = self._session()
        try:
            channel.exec_command(shlex.join(final))
            feeder = _Feeder(channel, input)
            feeder.start()
            stdout, stderr, status = self._collect(channel, argv, timeout, feeder, on_output)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionFailed(
                f"lost the SSH session to {self._where()} while running {self.redact(shlex.join(argv))}: "
                f"{exc or type(exc).__name__}",
                target=self.target,
            ) from None
        finally:
            channel.close()
        result = Result(status, stdout, stderr)
        if check and status != 0:
            self.raise_failed(argv, result)
        return result

    def _collect(
        self,
        channel: paramiko.Channel,
        argv: Sequence[str],
        timeout: float | None,
        feeder: _Feeder,
        on_output: Callable[[bytes], None] | None = None,
    ) -> tuple[bytes, bytes, int]:
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout if timeout is not None else None
        while True:
            progressed = False
            while channel.recv_ready():
                out.append(channel.recv(_CHUNK))
                progressed = True
                if on_output is not None:
                    on_output(out[-1])
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(_CHUNK))
                progressed = True
                if on_output is not None:
                    on_output(err[-1])
            # Output may still arrive after the exit status (OpenSSH sends
            # what is left in the pipe): done only at exit status + EOF.
            if (
                channel.exit_status_ready()
                and (channel.eof_received or channel.closed)
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
            ):
                break
            if feeder.error is not None:
                raise feeder.error
            transport = self._transport
            if transport is None or not transport.is_active():
                raise ConnectionFailed(
                    f"lost the SSH session to {self._where()} while running {self.redact(shlex.join(argv))}",
                    target=self.target,
                )
            if deadline is not None and time.monotonic() > deadline:
                channel.close()
                raise CommandTimedOut(
                    argv=[self.redact(a) for a in argv],
                    timeout=timeout or 0.0,
                    stderr_tail=self.redact(stderr_tail(b"".join(err))),
                    target=self.target,
                )
            if progressed:
                continue
            if channel.eof_received:
                # Buffers are closed (select would spin): wait for the status.
                channel.status_event.wait(0.05)
            else:
                select.select([channel], [], [], 0.1)
        feeder.join(timeout=self.connect_timeout)
        status = channel.recv_exit_status()
        if status == -1 and (self._transport is None or not self._transport.is_active()):
            # Closed without an exit status because the connection died.
            raise ConnectionFailed(
                f"lost the SSH session to {self._where()} while running {self.redact(shlex.join(argv))}",
                target=self.target,
                hint="the command may or may not have finished; re-run to resume",
            )
        return b"".join(out), b"".join(err), status


class _Feeder(threading.Thread):
    """Writes a command's stdin, then sends EOF, while the caller reads its output."""

    def __init__(self, channel: paramiko.Channel, source: Input | None) -> None:
        super().__init__(daemon=True, name="claudegate-ssh-stdin")
        self.channel = channel
        self.source = source
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            source: Any = self.source
            if isinstance(source, bytes | bytearray | memoryview):
                self.channel.sendall(bytes(source))
            elif source is not None:
                while chunk := source.read(1 << 16):
                    self.channel.sendall(chunk)
            self.channel.shutdown_write()
        except OSError:
            # The command exited or the channel closed before reading all of
            # stdin; its exit status (or the session error) tells the story.
            pass
        except BaseException as exc:  # pragma: no cover - surfaced by _collect
            self.error = exc
