"""Images sent ahead: built here and streamed to the host's disk while the host installs Docker.

On a fresh host the Docker step (``apt-get install docker.io``, 10-15 s) and
the images step (build here, then ``docker save | docker load``) ran one
after the other, although the build and the transfer need nothing from the
host's Docker until the final ``docker load``. When the images step will
build here and send (``images.transfer`` save-load, or auto choosing it) and
Docker is being installed, the Docker step starts this job first: in a
thread, this machine builds what it lacks and streams ``docker save`` over
SSH into a file in a fresh root-only spool directory on the host
(``/var/tmp/claudegate-images.XXXXXXXX``, made by ``mktemp -d``). The images
step then waits for it and runs ``docker load --input`` from that file. When
the build here outlasts the install (a cold build cache), the engine is up
by the time the stream starts, so it goes straight into ``docker load``
instead: the file would only be a detour.

Whatever happens, the spool directory goes: after the load, and on a
failure, a cancel or a lost connection (the deploy's end discards the job:
the local build and ``docker save`` are killed, the remote ``cat`` ends with
its input, the directory is removed). A run killed outright cannot clean
up; the next one removes every stale spool directory of the same user
before making its own (the deploy lock means no other run is using one).

The thread only records what it is doing; the images step reports it
(front ends get their events from the run's own thread).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from claudegate.connectors.base import stderr_tail
from claudegate.deploy import docker_cli
from claudegate.deploy.build_contexts import BuildContext
from claudegate.deploy.build_here import build_here, context_bytes, operator_has_image
from claudegate.deploy.image_send import SEND_TIMEOUT, CountingPipe
from claudegate.errors import ClaudegateError, DeployFailed

if TYPE_CHECKING:
    from claudegate.deploy.context import Context

__all__ = ["SPOOL_PREFIX", "ImagesAhead", "find_spools", "make_spool", "remove_spool", "write_spool"]

# mktemp -d makes it (a new name, 0700), so the shared /var/tmp is safe to use; it is on disk, not tmpfs.
SPOOL_PREFIX = "/var/tmp/claudegate-images."  # noqa: S108

# Stale directories first (a run killed before it could clean up): only real
# directories (find does not follow symlinks) owned by this user, so a
# planted link or another user's directory in the sticky /var/tmp is left alone.
_MAKE_SPOOL = f"""set -eu
find /var/tmp -maxdepth 1 -name 'claudegate-images.*' -type d -user "$(id -u)" -exec rm -rf -- {{}} +
mktemp -d {SPOOL_PREFIX}XXXXXXXX"""

_WRITE_SPOOL = """set -eu
umask 077
exec cat > "$1/images.tar\""""


_FIND_SPOOLS = """find /var/tmp -maxdepth 1 -name 'claudegate-images.*' -type d -user "$(id -u)" -print"""


def find_spools() -> list[str]:
    """The spool directories on the host (real directories of this user only), one a line."""
    return ["sh", "-c", _FIND_SPOOLS]


def make_spool() -> list[str]:
    """Remove stale spool directories, make a new one (0700) and print its path."""
    return ["sh", "-c", _MAKE_SPOOL]


def write_spool(directory: str) -> list[str]:
    """Write stdin to ``images.tar`` in the spool directory (fails if the directory is gone)."""
    return ["sh", "-c", _WRITE_SPOOL, "claudegate-spool", directory]


def remove_spool(*directories: str) -> list[str]:
    return ["rm", "-rf", "--", *directories]


class _Stopped(Exception):
    """The job was discarded while it ran (raised inside its thread only)."""


class ImagesAhead:
    """The thread that builds here and writes ``docker save`` of ``contexts`` into the host's spool file."""

    def __init__(self, ctx: Context, contexts: Sequence[BuildContext], *, base: str, why: str) -> None:
        self.contexts = tuple(contexts)
        self.base = base
        self.why = why
        self.tags = tuple(c.tag(base) for c in contexts)
        self._run = ctx.run
        self._machine = ctx.facts.machine
        self._no_cache = ctx.options.refresh
        self._stop = threading.Event()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self.doing = "starting"
        self.sent = 0
        self.error: BaseException | None = None
        #: True when the failure came from the transfer (the images step then sends directly).
        self.send_failed = False
        #: The engine was up when the send began: the images went straight into docker load.
        self.direct = False
        self.spool = ""
        self.started_at = time.monotonic()
        #: Images this machine had already built (its cache), by context name.
        self.already: list[str] = []
        self.built_at: float | None = None
        self.wanted_at: float | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._work, name="claudegate-images-ahead", daemon=True)
        self._discarded = False

    @property
    def path(self) -> str:
        return f"{self.spool}/images.tar"

    def start(self) -> None:
        """Make the spool directory (here, so a failure is the caller's), then start the thread."""
        self.spool = self._run(make_spool(), timeout=60).text.strip()
        if not self.spool.startswith(SPOOL_PREFIX) or "/" in self.spool[len(SPOOL_PREFIX) :]:
            raise DeployFailed(f"making a spool directory on the host printed {self.spool[:200]!r}")
        self._thread.start()

    # -- the thread ------------------------------------------------------------
    def _check(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _started(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.append(proc)
            stopped = self._stop.is_set()
        if stopped:
            proc.kill()

    def _record(self, message: str, done: float | None, expected: float | None, unit: str) -> None:
        self.doing = message

    def _work(self) -> None:
        try:
            for context in self.contexts:
                self._check()
                if not self._no_cache and operator_has_image(context.tag(self.base)):
                    self.already.append(context.name)
                    continue
                tar = context_bytes(context, self._machine, self._record)
                self._check()
                build_here(
                    context,
                    tar,
                    base=self.base,
                    no_cache=self._no_cache,
                    report=self._record,
                    check=self._check,
                    started=self._started,
                )
            self.built_at = time.monotonic()
            self._send()
        except BaseException as exc:  # handed to the images step (or dropped when discarded)
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def _send(self) -> None:
        # A long build may end after the engine is up: then straight into docker load, no file.
        self.direct = self._run(docker_cli.docker_info(), check=False, timeout=30).ok
        if self.direct:
            argv = docker_cli.image_load()
            self.doing = f"sending {', '.join(self.tags)} (docker save | docker load; the engine is up)"
        else:
            argv = write_spool(self.spool)
            self.doing = f"writing {', '.join(self.tags)} to {self.path} on the host (docker save | ssh)"
        with subprocess.Popen(
            docker_cli.image_save(*self.tags), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as save:
            assert save.stdout is not None
            self._started(save)

            def count(sent: int) -> None:
                self.sent = sent

            stream = io.BufferedReader(CountingPipe(save.stdout, count, every=0.5), buffer_size=1 << 16)
            try:
                self._run(argv, input=stream, timeout=SEND_TIMEOUT)
            except BaseException:
                self.send_failed = True
                raise
            finally:
                save.stdout.close()
                err = save.stderr.read() if save.stderr is not None else b""
                save.wait()
        # Killed on purpose: the remote cat saw the end of its input and kept a partial file.
        self._check()
        if save.returncode != 0:
            raise DeployFailed(f"docker save {' '.join(self.tags)} failed on this machine:\n{stderr_tail(err)}")

    # -- the images step's side ---------------------------------------------------
    def describe(self) -> str:
        mb = self.sent / 1e6
        return f"{self.doing} ({mb:.0f} MB sent)" if self.sent else self.doing

    def wait(self, ctx: Context) -> None:
        """Wait for the thread, reporting what it does; a cancel stops the wait at once (then discard)."""
        last = float("-inf")
        self.wanted_at = time.monotonic()
        while self._thread.is_alive():
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                ctx.work(f"images sent ahead: {self.describe()}", done=float(self.sent) or None, unit="bytes")
            ctx.controls.cancel.wait(0.2)
            ctx.check_cancelled()
        if self.error is not None:
            raise self.error

    def load(self, ctx: Context) -> None:
        """``docker load`` from the spool file on the host (unless they went straight in), then remove the spool."""
        loading = time.monotonic()
        if not self.direct:
            ctx.work(f"loading {', '.join(self.tags)} on the host from {self.path} (docker load)")
            ctx.run(docker_cli.image_load_file(self.path), timeout=SEND_TIMEOUT)
        self.discard()
        if self.built_at is not None and self.finished_at is not None and self.wanted_at is not None:
            built = [c.name for c in self.contexts if c.name not in self.already]
            made = f"built {', '.join(built)} here in {self.built_at - self.started_at:.1f} s" if built else ""
            had = f"{', '.join(self.already)} already built on this machine" if self.already else ""
            ctx.note(
                f"images sent ahead: {'; '.join(x for x in (made, had) if x)}, "
                f"{self.sent / 1e6:.0f} MB {'sent into docker load' if self.direct else 'written to the host'} "
                f"in {self.finished_at - self.built_at:.1f} s, "
                f"waited for {max(0.0, self.finished_at - self.wanted_at):.1f} s of it, "
                f"loaded in {time.monotonic() - loading:.1f} s"
            )

    def discard(self) -> None:
        """Stop the thread (kill the local build or ``docker save``), then remove the spool directory.

        Safe to call twice and on a lost connection (the next run then removes the stale directory).
        """
        if self._discarded:
            return
        self._discarded = True
        with self._lock:
            self._stop.set()
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        if self._thread.is_alive():
            # A wheel download in progress is not killed; what the thread writes after this finds no directory.
            self._thread.join(timeout=30)
        if self.spool:
            with contextlib.suppress(ClaudegateError, OSError):
                self._run(remove_spool(self.spool), timeout=60)
