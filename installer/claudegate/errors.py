"""The errors claudegate raises, and the exit code each one maps to.

Every error the core raises on purpose derives from :class:`ClaudegateError`.
Front ends (CLI, TUI) catch that one class, print ``str(error)`` (and
``error.hint``, the fix, when there is one) to stderr, and exit with
``error.exit_code``. Messages never contain secrets: anything that may carry
command output or arguments is passed through :func:`claudegate.redact.redact`
before it reaches an error.

::

    ClaudegateError                exit 1   base; anything else we raise on purpose
    ├── ConfigError                exit 2   a setting is missing, invalid or inconsistent
    ├── ConnectionFailed           exit 3   host unreachable, SSH handshake or authentication failed,
    │                                       session lost
    ├── HostKeyError               exit 4   the server's identity could not be verified
    │   ├── HostKeyUnknown                  first contact: key not in known_hosts and not confirmed
    │   └── HostKeyChanged                  key differs from the recorded or confirmed one
    ├── CommandFailed              exit 5   a command on the target exited non-zero
    │   └── CommandTimedOut                 ... or did not finish in time
    ├── DeployFailed               exit 6   a deploy step failed (the previous release keeps serving)
    ├── SmokeTestFailed            exit 7   the deployed gateway failed one or more checks
    ├── Declined                   exit 8   a question needed a yes (host key, installing Docker, ...)
    │                                       and got a no, or no terminal to ask on and no flag
    ├── AuditFailed                exit 9   claudegate audit found probes that did not hold
    └── Cancelled                  exit 130 the run was cancelled (Ctrl-C, the wizard's Cancel);
                                            the journal says where, the next run resumes

The codes themselves live in :class:`ExitCode`, with one phrase each in
:data:`EXIT_CODE_HELP` (front ends build their help from it).
:func:`host_key_compare_command` says what to run on a server to see its key's
fingerprint (used in host-key messages and questions).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

__all__ = [
    "EXIT_CODE_HELP",
    "AuditFailed",
    "Cancelled",
    "ClaudegateError",
    "CommandFailed",
    "CommandTimedOut",
    "ConfigError",
    "ConnectionFailed",
    "Declined",
    "DeployFailed",
    "ExitCode",
    "HostKeyChanged",
    "HostKeyError",
    "HostKeyUnknown",
    "SmokeTestFailed",
    "host_key_compare_command",
]


class ExitCode(IntEnum):
    """Every exit status a front end uses; :data:`EXIT_CODE_HELP` says what each means."""

    OK = 0
    ERROR = 1
    CONFIG = 2
    CONNECTION = 3
    HOST_KEY = 4
    COMMAND = 5
    DEPLOY = 6
    SMOKE = 7
    DECLINED = 8
    AUDIT = 9
    CANCELLED = 130


#: One phrase per exit code, in order: the CLI's ``--help`` is built from this.
EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "error",
    ExitCode.CONFIG: "bad config",
    ExitCode.CONNECTION: "cannot connect",
    ExitCode.HOST_KEY: "host key unknown or changed",
    ExitCode.COMMAND: "a command failed on the host",
    ExitCode.DEPLOY: "deploy failed (the old release keeps serving)",
    ExitCode.SMOKE: "smoke test failed",
    ExitCode.DECLINED: "a question was answered no, or needs a flag without a terminal",
    ExitCode.AUDIT: "a security audit probe failed",
    ExitCode.CANCELLED: "cancelled or interrupted (a rerun resumes)",
}


class ClaudegateError(Exception):
    """Base of every error claudegate raises on purpose.

    ``hint`` is the fix in one sentence ("re-run with --accept-host-key ..."),
    shown after the message by front ends; None when there is nothing better
    to say than the message.
    """

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ClaudegateError):
    """A setting is missing, invalid or inconsistent (says which and how to fix it)."""

    exit_code = ExitCode.CONFIG


class ConnectionFailed(ClaudegateError):
    """The target could not be reached or logged into, or the session was lost.

    ``target`` names it as ``user@host:port`` (or ``host:port`` before a user
    is involved) so the message always says where it tried.
    """

    exit_code = ExitCode.CONNECTION

    def __init__(self, message: str, *, target: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.target = target


class HostKeyError(ClaudegateError):
    """The server's host key could not be verified; nothing was sent to it."""

    exit_code = ExitCode.HOST_KEY

    def __init__(self, message: str, *, host: str, port: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host
        self.port = port


#: The public host key file per SSH key type, as OpenSSH names them under /etc/ssh.
_HOST_KEY_FILES = {
    "ssh-ed25519": "ssh_host_ed25519_key.pub",
    "ecdsa-sha2-nistp256": "ssh_host_ecdsa_key.pub",
    "ecdsa-sha2-nistp384": "ssh_host_ecdsa_key.pub",
    "ecdsa-sha2-nistp521": "ssh_host_ecdsa_key.pub",
    "ssh-rsa": "ssh_host_rsa_key.pub",
    "rsa-sha2-256": "ssh_host_rsa_key.pub",
    "rsa-sha2-512": "ssh_host_rsa_key.pub",
}


def host_key_compare_command(key_type: str) -> str:
    """What to run on the server itself (its console) to see the fingerprint of its ``key_type`` key."""
    return f"ssh-keygen -lf /etc/ssh/{_HOST_KEY_FILES.get(key_type, 'ssh_host_*_key.pub')}"


class HostKeyUnknown(HostKeyError):
    """First contact: the offered key is neither recorded nor confirmed.

    ``fingerprint`` is formatted like ``ssh-keygen -lf`` prints it
    (``SHA256:`` + unpadded base64), ``key_type`` like ``ssh-ed25519``.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        key_type: str,
        fingerprint: str,
        known_hosts: Path | None = None,
    ) -> None:
        where = host if port == 22 else f"[{host}]:{port}"
        super().__init__(
            f"The authenticity of host {where} can't be established: it offered the "
            f"{key_type} key {fingerprint}, which is not in "
            f"{known_hosts if known_hosts is not None else 'the known hosts file'}.",
            host=host,
            port=port,
            hint=(
                f"Check the fingerprint on the server itself ({host_key_compare_command(key_type)}), then re-run with "
                f"--accept-host-key {fingerprint}"
            ),
        )
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts


class HostKeyChanged(HostKeyError):
    """The offered key differs from the recorded (or operator-confirmed) one.

    ``expected_fingerprint`` is the recorded/confirmed key; ``known_hosts``
    and ``line`` (1-based) point at the record when it came from a file, and
    are None when the expectation came from ``--accept-host-key``.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        key_type: str,
        expected_fingerprint: str,
        offered_fingerprint: str,
        known_hosts: Path | None = None,
        line: int | None = None,
    ) -> None:
        where = host if port == 22 else f"[{host}]:{port}"
        if known_hosts is not None and line is not None:
            source = f"recorded in {known_hosts} line {line}"
            hint = (
                "This can mean someone is intercepting the connection. If the server was "
                f"reinstalled on purpose, confirm the new key out-of-band, delete line {line} "
                f"of {known_hosts} (ssh-keygen -R '{where}' -f {known_hosts}), and re-run with "
                f"--accept-host-key {offered_fingerprint}"
            )
        else:
            source = "confirmed with --accept-host-key"
            hint = "Check the fingerprint on the server itself; do not continue until it matches."
        super().__init__(
            f"HOST KEY CHANGED for {where}: it offered the {key_type} key {offered_fingerprint}, "
            f"but the key {source} is {expected_fingerprint}. Nothing was sent to the host.",
            host=host,
            port=port,
            hint=hint,
        )
        self.key_type = key_type
        self.expected_fingerprint = expected_fingerprint
        self.offered_fingerprint = offered_fingerprint
        self.known_hosts = known_hosts
        self.line = line


class CommandFailed(ClaudegateError):
    """A command exited non-zero.

    ``argv`` is already redacted (the caller passes its secrets to
    :func:`claudegate.redact.redact` first; connectors do this), ``stderr_tail``
    is the last lines of its stderr, also redacted. ``exit_status`` is None
    when there is none (the command was killed or timed out).
    """

    exit_code = ExitCode.COMMAND

    def __init__(
        self,
        *,
        argv: Sequence[str],
        exit_status: int | None,
        stderr_tail: str,
        target: str,
        message: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        self.target = target
        command = shlex.join(self.argv)
        if message is None:
            message = f"command failed on {target} with exit status {exit_status}: {command}"
        if stderr_tail:
            message += "\n" + "\n".join("  | " + line for line in stderr_tail.splitlines())
        super().__init__(message)


class CommandTimedOut(CommandFailed):
    """A command did not finish within its timeout (it was abandoned or killed)."""

    def __init__(self, *, argv: Sequence[str], timeout: float, stderr_tail: str, target: str) -> None:
        self.timeout = timeout
        super().__init__(
            argv=argv,
            exit_status=None,
            stderr_tail=stderr_tail,
            target=target,
            message=f"command timed out after {timeout:g}s on {target}: {shlex.join(list(argv))}",
        )


class DeployFailed(ClaudegateError):
    """A deploy step failed; the message names the step. The old release keeps serving."""

    exit_code = ExitCode.DEPLOY


class SmokeTestFailed(ClaudegateError):
    """The smoke test found failing checks; ``failed`` lists their names."""

    exit_code = ExitCode.SMOKE

    def __init__(self, message: str, *, failed: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failed = list(failed)


class AuditFailed(ClaudegateError):
    """``claudegate audit`` found probes that did not hold; ``failed`` lists their names."""

    exit_code = ExitCode.AUDIT

    def __init__(self, message: str, *, failed: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failed = list(failed)


class Declined(ClaudegateError):
    """A question the run needed answered yes was answered no, or could not be asked.

    ``flag`` names the command-line flag that answers it without a terminal
    (``--yes``, ``--accept-host-key SHA256:...``), when there is one.
    """

    exit_code = ExitCode.DECLINED

    def __init__(self, message: str, *, flag: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.flag = flag


class Cancelled(ClaudegateError):
    """The run was cancelled between or inside steps; nothing is half-switched.

    ``step`` names the step it stopped in (None before the first). The host's
    journal records the cancellation and the lock is released (or left to
    expire when the connection was gone), so the next run resumes.
    """

    exit_code = ExitCode.CANCELLED

    def __init__(self, message: str = "cancelled", *, step: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "run the same command again: it resumes where this one stopped")
        self.step = step
