"""The ``local`` target: commands run on this machine with :mod:`subprocess`."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from claudegate.connectors.base import Connector, Input, Result, check_mode, check_owner, stderr_tail
from claudegate.errors import ClaudegateError, CommandTimedOut

__all__ = ["LocalConnector"]


class LocalConnector(Connector):
    """Runs commands on this machine.

    Each command gets its own process group, so a timeout kills it together
    with whatever it started. ``sudo=True`` uses ``sudo -n`` unless we are
    already root. Files are written natively (``mkstemp`` + ``fchmod`` +
    ``rename``) when no privilege change is needed.
    """

    target = "local"

    def __init__(self, *, default_timeout: float | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.default_timeout = default_timeout
        self.env = dict(env) if env is not None else None

    @property
    def is_root(self) -> bool:
        return os.geteuid() == 0

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
        try:
            proc = subprocess.Popen(
                final,
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            # What a shell would say: 127 for "not found", 126 otherwise.
            status = 127 if isinstance(exc, FileNotFoundError) else 126
            result = Result(status, b"", f"{final[0]}: {exc.strerror}\n".encode())
            if check:
                self.raise_failed(argv, result)
            return result

        feeder: threading.Thread | None = None
        data: bytes | None = None
        if isinstance(input, bytes | bytearray | memoryview):
            data = bytes(input)
        elif input is not None:
            # A stream: copy it in a thread while communicate() drains the
            # output, so neither side can fill a pipe and block the other.
            assert proc.stdin is not None
            pipe, proc.stdin = proc.stdin, None
            feeder = threading.Thread(target=_feed, args=(input, pipe), daemon=True)
            feeder.start()

        try:
            stdout, stderr = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            raise CommandTimedOut(
                argv=[self.redact(a) for a in argv],
                timeout=timeout or 0.0,
                stderr_tail=self.redact(stderr_tail(stderr)),
                target=self.target,
            ) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            if feeder is not None:
                feeder.join(timeout=5)

        if on_output is not None:
            # communicate() gathers everything: this connector reports once, at the end.
            on_output(stdout + stderr)
        result = Result(proc.returncode, stdout, stderr)
        if check and result.exit_status != 0:
            self.raise_failed(argv, result)
        return result

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
        if sudo and not self.is_root:
            super().put_file(path, data, mode, owner, sudo=True, timeout=timeout)
            return
        check_mode(mode)
        check_owner(owner)
        directory, name = os.path.split(os.path.abspath(path))
        try:
            # mkstemp creates the file 0600 (O_EXCL), so it is private from
            # its first moment; owner and mode are set before any content.
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.cg-")
        except OSError as exc:
            raise ClaudegateError(f"cannot write {path} on {self.target}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                if owner is not None:
                    uid, gid = _resolve_owner(owner)
                    os.fchown(fh.fileno(), uid, gid)
                os.fchmod(fh.fileno(), mode | 0o200)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                if mode | 0o200 != mode:
                    os.fchmod(fh.fileno(), mode)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ClaudegateError(f"cannot write {path} on {self.target}: {exc.strerror}") from exc
            raise

    def get_file(self, path: str, *, sudo: bool = False, timeout: float | None = None) -> bytes | None:
        if sudo and not self.is_root:
            return super().get_file(path, sudo=True, timeout=timeout)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClaudegateError(f"cannot read {path} on {self.target}: {exc.strerror}") from exc


def _feed(source: IO[bytes], pipe: IO[bytes]) -> None:
    try:
        shutil.copyfileobj(source, pipe, 1 << 16)
    except (BrokenPipeError, ValueError):
        pass  # the command stopped reading; its exit status tells the story
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _resolve_owner(owner: str) -> tuple[int, int]:
    """``user`` or ``user:group`` (names or numbers) to (uid, gid); -1 keeps a value."""
    user, _, group = owner.partition(":")
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        gid = -1
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise ClaudegateError(f"no such user or group on this machine: {owner!r}") from exc
    return uid, gid
