"""Send an image from this machine's Docker to the host's: ``docker save`` here into ``docker load`` there.

Its own module because both the images step and the base-image builder send
images, and the builder sits below the step (the step calls it).
"""

from __future__ import annotations

import subprocess

from claudegate.connectors.base import stderr_tail
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.errors import DeployFailed

__all__ = ["SEND_TIMEOUT", "send_image"]

SEND_TIMEOUT = 1200.0


def send_image(ctx: Context, ref: str) -> None:
    """``docker save`` here, streamed into ``docker load`` on the host."""
    with subprocess.Popen(docker_cli.image_save(ref), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as save:
        assert save.stdout is not None
        try:
            ctx.run(docker_cli.image_load(), input=save.stdout, timeout=SEND_TIMEOUT)
        finally:
            save.stdout.close()
            err = save.stderr.read() if save.stderr is not None else b""
            save.wait()
    if save.returncode != 0:
        raise DeployFailed(f"docker save {ref} failed on this machine:\n{stderr_tail(err)}")
