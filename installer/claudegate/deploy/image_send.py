"""Send images from this machine's Docker to the host's: ``docker save`` here into ``docker load`` there.

Its own module because both the images step and the base-image builder send
images, and the builder sits below the step (the step calls it).
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import IO

from claudegate.connectors.base import stderr_tail
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.errors import ClaudegateError, DeployFailed

__all__ = ["SEND_TIMEOUT", "CountingPipe", "send_image", "send_images"]

SEND_TIMEOUT = 1200.0


class CountingPipe(io.RawIOBase):
    """Reads a pipe and calls ``on_read(total)`` with the bytes read so far, at most every ``every`` s and at EOF."""

    def __init__(
        self, pipe: IO[bytes], on_read: Callable[[int], None], *, every: float = 1.0,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._pipe = pipe
        self._on_read = on_read
        self._every = every
        self._stop = stop
        self._sent = 0
        self._last = float("-inf")
        #: ``stop`` said so and the stream was ended early.
        self.cancelled = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        # A transfer takes minutes on a slow link: Cancel stops it between chunks.
        # The stream just ends here (the feeder threads of both connectors treat
        # EOF, not an exception, as normal); ``docker load`` then refuses the
        # cut archive and keeps nothing, and the caller raises Cancelled.
        if self._stop is not None and self._stop():
            self.cancelled = True
            return 0
        data = self._pipe.read(len(buffer))
        view = memoryview(buffer)
        view[: len(data)] = data
        self._sent += len(data)
        now = time.monotonic()
        if now - self._last >= self._every or not data:
            self._last = now
            self._on_read(self._sent)
        return len(data)


def send_images(ctx: Context, refs: Sequence[str]) -> None:
    """``docker save`` of ``refs`` here, streamed into ``docker load`` on the host.

    One stream for all of them: layers the images share are written once.
    """
    argv = docker_cli.image_save(*refs)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as save:
        assert save.stdout is not None
        what = f"sending {', '.join(refs)} (docker save | docker load)"
        counted = CountingPipe(save.stdout, lambda sent: ctx.work(what, done=float(sent), unit="bytes"),
                               stop=lambda: ctx.controls.cancel.cancelled)
        stream = io.BufferedReader(counted, buffer_size=1 << 16)
        try:
            ctx.run(docker_cli.image_load(), input=stream, timeout=SEND_TIMEOUT)
        except ClaudegateError:
            if not counted.cancelled:
                raise
        finally:
            save.stdout.close()
            err = save.stderr.read() if save.stderr is not None else b""
            save.wait()
    if counted.cancelled:
        ctx.check_cancelled()  # raises Cancelled naming the step
    if save.returncode != 0:
        raise DeployFailed(f"docker save {' '.join(refs)} failed on this machine:\n{stderr_tail(err)}")


def send_image(ctx: Context, ref: str) -> None:
    """``docker save`` here, streamed into ``docker load`` on the host."""
    send_images(ctx, [ref])
