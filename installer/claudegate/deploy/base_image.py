"""The base image when no registry answers: pull it, or (after a yes) build it with debootstrap.

``images.base_image`` is normally pulled on the host. On a machine with no
route to a registry the pull fails, and the deploy used to stop at the Images
step. Instead the step asks (a ``build-base-image`` consent, through the
session's interaction) to make a Debian bookworm rootfs with debootstrap from
the Debian mirror and ``docker import`` it under the configured name: the
recipe the tests build their base image with (``assets/base/build-base-image.sh``).
On the local target it runs on this machine; for a remote host it runs here
too, and the image is sent over the verified connection (docker save | load).
"""

from __future__ import annotations

from pathlib import Path

from claudegate.connectors.base import stderr_tail
from claudegate.connectors.local import LocalConnector
from claudegate.control.interaction import ConsentQuestion
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.deploy.image_send import send_image
from claudegate.errors import DeployFailed
from claudegate.resources import ASSETS_DIR

__all__ = ["BUILD_CACHE", "base_image_build_argv", "debootstrap_probe", "pull_or_build"]

#: Where the debootstrap rootfs tarball is cached (root's: the build runs as root).
BUILD_CACHE = Path("/var/cache/claudegate/base")
BUILD_TIMEOUT = 1200.0


def base_image_build_argv(tag: str, cache: Path | None = None) -> list[str]:
    """The shipped debootstrap recipe, its settings passed as environment (``cache``: :data:`BUILD_CACHE`)."""
    cache = cache or BUILD_CACHE  # read at call time: a test points it at an empty directory
    script = ASSETS_DIR / "base" / "build-base-image.sh"
    return ["env", f"CLAUDEGATE_BASE_IMAGE={tag}", f"CLAUDEGATE_TEST_CACHE={cache}", "bash", str(script)]


def debootstrap_probe() -> list[str]:
    return ["sh", "-c", "command -v debootstrap || test -x /usr/sbin/debootstrap"]


def _last_line(stderr: bytes) -> str:
    lines = stderr_tail(stderr).strip().splitlines()
    return lines[-1] if lines else "no reason given"


def pull_or_build(ctx: Context, base: str) -> None:
    """Pull ``base`` on the host; when that fails, offer to build it with debootstrap."""
    ctx.work(f"pulling {base}")
    pulled = ctx.run(docker_cli.image_pull(base), timeout=900, check=False)
    if pulled.ok:
        return
    reason = _last_line(pulled.stderr)
    local = ctx.cfg.target.is_local
    where = "this machine" if local else "this machine, then send it to the host (docker save | docker load)"
    ctx.note(f"cannot pull {base}: {reason}")
    ctx.consent(
        ConsentQuestion(
            topic="build-base-image",
            target=ctx.connector.target if local else "this machine",
            detail=f"no image registry answered for {base} ({reason}); build a Debian bookworm base with "
            f"debootstrap from the Debian mirror on {where}, named {base} (root, about 2 minutes)",
        )
    )
    here = LocalConnector()
    if local:
        found = ctx.run(debootstrap_probe(), check=False, timeout=30, sudo=False)
    else:
        found = here.run(debootstrap_probe(), check=False, timeout=30)
    if not found.ok:
        raise DeployFailed(
            f"cannot pull {base} ({reason}), and debootstrap is not installed on this machine to build it",
            hint="apt-get install debootstrap and deploy again, or set images.base_image to an image Docker has",
        )
    ctx.work(f"building {base} with debootstrap (a few minutes the first time)")
    argv = base_image_build_argv(base)
    if local:
        built = ctx.run(argv, check=False, timeout=BUILD_TIMEOUT)
    else:
        built = here.run(argv, sudo=True, check=False, timeout=BUILD_TIMEOUT)
    if not built.ok:
        raise DeployFailed(
            f"building {base} with debootstrap failed:\n{stderr_tail(built.stderr)}",
            hint="check that deb.debian.org (or $DEBIAN_MIRROR) is reachable from this machine",
        )
    if not local:
        send_image(ctx, base)
