"""Build an image on this machine (``images.transfer`` save-load/auto), outside any step's reporting.

Its own module because two callers build here: the images step (reporting
each build line) and the images sent ahead (:mod:`.images_ahead`), which
builds in a thread while the host installs Docker and may only record what
it is doing. So this module takes plain callables, not a :class:`Context`.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable

from claudegate.connectors.base import stderr_tail
from claudegate.deploy import docker_cli
from claudegate.deploy.build_contexts import ASSETS_DIR, BuildContext
from claudegate.deploy.substep import BuildOutput, Report
from claudegate.deploy.wheelhouse import ensure_wheelhouse
from claudegate.errors import DeployFailed

__all__ = ["BUILD_TIMEOUT", "LABEL_CONTEXT", "build_here", "context_bytes", "operator_has_image"]

LABEL_CONTEXT = "org.claudegate.context"
BUILD_TIMEOUT = 1200.0


def operator_has_image(ref: str) -> bool:
    """True when this machine's own Docker has ``ref`` (used to send it instead of pulling)."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(docker_cli.image_inspect(ref), capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


def context_bytes(context: BuildContext, machine: str, report: Report) -> bytes:
    """The context's tar; the gateway's carries the wheels for ``machine`` (downloaded once, then cached)."""
    wheels = None
    if context.needs_wheels:
        lock = ASSETS_DIR / "gateway" / "requirements.lock"
        report(f"gateway wheels for {machine}: downloading (or reusing the cache)", None, None, "")
        wheels = ensure_wheelhouse(lock, machine)
        count = len(list(wheels.glob("*.whl")))
        report(f"gateway wheels for {machine}: {count} ready", float(count), float(count), "wheels")
    return context.tar(wheels)


def build_here(
    context: BuildContext,
    tar: bytes,
    *,
    base: str,
    no_cache: bool,
    report: Report,
    check: Callable[[], None],
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> None:
    """``docker build`` of ``context`` on this machine; ``check`` raising (a cancel) abandons it, untagged.

    ``started`` receives the build process, so a caller in another thread can
    kill it at once instead of waiting for the build's next output line.
    """
    tag = context.tag(base)
    argv = docker_cli.build_image(
        tag, base_image=base, labels={LABEL_CONTEXT: context.digest(base)}, no_cache=no_cache
    )
    output = BuildOutput(f"building {context.name} here", report, check=check)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as build:
        assert build.stdin is not None and build.stdout is not None
        if started is not None:
            started(build)
        stdin = build.stdin

        def feed() -> None:
            # In a thread: the build may talk before it has read the whole context.
            try:
                stdin.write(tar)
            except OSError:
                pass  # the build died; its output says why
            finally:
                stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        tail: list[bytes] = []
        try:
            for line in build.stdout:
                tail = [*tail[-40:], line]
                output(line)
            check()  # killed from outside: the end of its output is not the end of the build
            build.wait(timeout=BUILD_TIMEOUT)
        except BaseException:
            build.kill()  # a cancel (or a crash) abandons the build: nothing is tagged
            raise
        finally:
            feeder.join(timeout=5)
    if build.returncode != 0:
        raise DeployFailed(f"building {tag} on this machine failed:\n{stderr_tail(b''.join(tail))}")
