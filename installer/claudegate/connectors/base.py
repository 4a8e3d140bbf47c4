"""The connector interface, and the pure command builders it shares.

A connector runs commands (argv lists, never shell strings) on one target and
moves small files to and from it. Secrets travel only as a command's stdin
(``input=``) or as file content (``put_file``), never in argv: argv is visible
in ``ps`` on the target and ends up in error messages (which are redacted
anyway, as a second line of defence).

The builders at the bottom (:func:`sudo_argv`, :func:`put_file_argv`,
:func:`get_file_argv`) are pure functions so tests can assert exact commands.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from claudegate.errors import CommandFailed, ConfigError
from claudegate.redact import Secret, redact

__all__ = [
    "GET_FILE_MISSING_STATUS",
    "Connector",
    "Input",
    "Result",
    "get_file_argv",
    "put_file_argv",
    "stderr_tail",
    "sudo_argv",
]

log = logging.getLogger("claudegate.connectors")

#: What a command's stdin can be: bytes, or a binary stream read to its end
#: (for large transfers such as ``docker load`` of an image tarball).
Input = bytes | IO[bytes]

#: Exit status the ``get_file`` command uses for "no such file".
GET_FILE_MISSING_STATUS = 100


@dataclass(frozen=True)
class Result:
    """What a finished command left: exit status and its raw output."""

    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", errors="replace")


class Connector(ABC):
    """Runs commands on one target ("this machine" or a host over SSH).

    Use as a context manager or call :meth:`close`. Register every secret in
    play with :meth:`add_secret`: error messages and logs are redacted with
    them.
    """

    #: Human-readable target for messages: ``local`` or ``user@host:port``.
    target: str = "?"

    def __init__(self) -> None:
        self._secrets: list[str | Secret] = []

    # -- secrets ---------------------------------------------------------
    def add_secret(self, secret: str | Secret) -> None:
        """Mask this value in every message and log line this connector produces."""
        self._secrets.append(secret)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    # -- the interface ---------------------------------------------------
    @property
    @abstractmethod
    def is_root(self) -> bool:
        """True when commands already run as root (then ``sudo=True`` adds nothing)."""

    @abstractmethod
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
        """Run ``argv`` on the target and wait for it.

        ``input`` is fed to stdin (then stdin is closed; without it stdin is
        empty). ``sudo`` runs it as root with ``sudo -n`` (never prompts: a
        user without passwordless sudo gets a clear error). ``timeout``
        (seconds, None = the connector's default) raises
        :class:`~claudegate.errors.CommandTimedOut`. With ``check`` a non-zero
        exit raises :class:`~claudegate.errors.CommandFailed`; without it the
        :class:`Result` is returned whatever the status. ``on_output`` is
        called with stdout and stderr chunks as they arrive (progress for long
        commands such as an image build; the result still holds all of it);
        a connector that cannot stream calls it once, at the end.
        """

    def put_file(
        self,
        path: str,
        data: bytes,
        mode: int,
        owner: str | None = None,
        *,
        sudo: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Write ``data`` to ``path`` atomically, with ``mode`` (and ``owner``).

        A temporary file is made in the same directory (mode 0600 from its
        creation), chowned and chmodded to the final mode *before* the content
        is written, then renamed over ``path``: readers see the old file or
        the new one, never half of one, and the content never sits in a file
        with a wider mode. ``owner`` is ``user`` or ``user:group`` (needs root
        to differ from the login user; use ``sudo=True``). The parent
        directory must exist.

        This default sends the data over stdin to a small POSIX shell script
        (see :func:`put_file_argv`); subclasses may do it natively.
        """
        argv = put_file_argv(path, mode, owner)
        self.run(argv, input=data, sudo=sudo, timeout=timeout)

    def get_file(self, path: str, *, sudo: bool = False, timeout: float | None = None) -> bytes | None:
        """The content of ``path``, or None if it does not exist."""
        result = self.run(get_file_argv(path), sudo=sudo, timeout=timeout, check=False)
        if result.exit_status == GET_FILE_MISSING_STATUS:
            return None
        if result.exit_status != 0:
            self.raise_failed(get_file_argv(path), result)
        return result.stdout

    def close(self) -> None:  # noqa: B027 - a no-op is a fine default
        """Release the connection. Safe to call twice."""

    # -- helpers for implementations ---------------------------------------
    def prepare_argv(self, argv: Sequence[str], *, sudo: bool) -> list[str]:
        """Check ``argv`` and return what to execute (with ``sudo -n`` if needed).

        Refuses an argv that contains a registered secret: secrets go over
        stdin or into files, never where ``ps`` can see them.
        """
        argv = list(argv)
        if not argv or not all(isinstance(arg, str) for arg in argv):
            raise TypeError("argv must be a non-empty sequence of str")
        if secrets_in_argv(argv, self._secrets):
            raise ValueError(
                "refusing to run a command with a secret in its arguments; pass it as input= instead"
            )
        final = sudo_argv(argv, sudo=sudo, is_root=self.is_root)
        self.log_command(final)
        return final

    def raise_failed(self, argv: Sequence[str], result: Result) -> None:
        raise CommandFailed(
            argv=[self.redact(arg) for arg in argv],
            exit_status=result.exit_status,
            stderr_tail=self.redact(stderr_tail(result.stderr)),
            target=self.target,
        )

    def log_command(self, argv: Sequence[str]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s", self.target, self.redact(shlex.join(argv)))

    def __enter__(self) -> Connector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target}>"


# -- pure builders -----------------------------------------------------------


def sudo_argv(argv: Sequence[str], *, sudo: bool, is_root: bool) -> list[str]:
    """The argv actually run: ``sudo -n -- argv`` when root is wanted and we are not root.

    ``-n`` makes sudo fail instead of prompting for a password; ``--`` ends
    sudo's own options so argv can never be read as one.
    """
    if not argv:
        raise ValueError("empty argv")
    if sudo and not is_root:
        return ["sudo", "-n", "--", *argv]
    return list(argv)


# Writes stdin to "$1" atomically. Arguments: path, directory, base name,
# mode for writing (final mode + owner-write), final mode, owner ("" = keep).
# Every value arrives as a positional parameter: nothing is spliced into the
# script text, so paths with spaces or quotes are safe.
_PUT_FILE_SCRIPT = r"""set -eu
umask 077
tmp=$(mktemp "$2/.$3.cg-XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if [ -n "$6" ]; then chown -h -- "$6" "$tmp"; fi
chmod -- "$4" "$tmp"
cat >"$tmp"
if [ "$4" != "$5" ]; then chmod -- "$5" "$tmp"; fi
mv -f -- "$tmp" "$1"
trap - EXIT"""

_GET_FILE_SCRIPT = f"""if [ -e "$1" ]; then exec cat -- "$1"; else exit {GET_FILE_MISSING_STATUS}; fi"""

_OWNER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")


def check_mode(mode: int) -> int:
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"file mode {mode:#o} is not a permission mode (0..0o7777)")
    return mode


def check_owner(owner: str | None) -> str | None:
    if owner is not None and not _OWNER_RE.match(owner):
        raise ConfigError(f"file owner {owner!r} is not 'user' or 'user:group'")
    return owner


def put_file_argv(path: str, mode: int, owner: str | None = None) -> list[str]:
    """The command that writes stdin to ``path`` atomically (see :meth:`Connector.put_file`).

    While the content is written the temporary file has ``mode`` plus the
    owner's write bit (so a read-only mode such as 0400 can still be
    written); the exact ``mode`` is applied before the rename.
    """
    check_mode(mode)
    check_owner(owner)
    if not path or path.endswith("/"):
        raise ConfigError(f"not a file path: {path!r}")
    directory, name = posixpath.split(path)
    write_mode = mode | 0o200
    return [
        "sh",
        "-c",
        _PUT_FILE_SCRIPT,
        "claudegate-put-file",
        path,
        directory or ".",
        name,
        f"{write_mode:04o}",
        f"{mode:04o}",
        owner or "",
    ]


def get_file_argv(path: str) -> list[str]:
    """The command that prints ``path``, or exits 100 if it does not exist."""
    if not path:
        raise ConfigError("empty file path")
    return ["sh", "-c", _GET_FILE_SCRIPT, "claudegate-get-file", path]


def stderr_tail(stderr: bytes, lines: int = 12, max_chars: int = 2000) -> str:
    """The last few lines of a command's stderr, decoded, for error messages."""
    text = stderr.decode("utf-8", errors="replace").rstrip()
    tail = "\n".join(text.splitlines()[-lines:])
    if len(tail) > max_chars:
        tail = "..." + tail[-max_chars:]
    return tail


def secrets_in_argv(argv: Iterable[str], secrets: Iterable[str | Secret]) -> bool:
    """True if any secret appears in argv (a programming error: secrets go via stdin)."""
    joined = "\0".join(argv)
    return redact(joined, secrets) != joined
