"""The images step: base image on the host, then the gateway and nginx images.

Images are named by their build context's hash (see :mod:`..build_contexts`), so
"is it there?" is one ``docker image inspect`` per image and a redeploy of
the same sources builds nothing.

- The base image is loaded from this machine (``docker save | docker load``
  over the verified connection) when the operator has it -- a locally made
  base, no registry needed -- and pulled on the host otherwise.
- ``images.transfer: build`` (default) builds on the host from a tar context
  on stdin; the gateway's context carries the wheelhouse downloaded here.
  ``save-load`` builds here and sends the images (same CPU architecture only).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from collections.abc import Callable

from claudegate.connectors.base import Input, stderr_tail
from claudegate.deploy import docker_cli
from claudegate.deploy.base_image import pull_or_build
from claudegate.deploy.build_contexts import (
    ASSETS_DIR,
    BuildContext,
    certbot_context,
    gateway_context,
    nginx_context,
    with_refresh,
)
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.image_send import send_image
from claudegate.deploy.substep import CountingReader
from claudegate.deploy.wheelhouse import ensure_wheelhouse
from claudegate.errors import DeployFailed

__all__ = ["ImagesStep", "context_tar", "operator_has_image", "send_image"]

LABEL_CONTEXT = "org.claudegate.context"
BUILD_TIMEOUT = 1200.0


def operator_has_image(ref: str) -> bool:
    """True when this machine's own Docker has ``ref`` (used to send it instead of pulling)."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(docker_cli.image_inspect(ref), capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


def context_tar(ctx: Context, context: BuildContext) -> Callable[[], Input]:
    """The context's tar, made when the build runs (the wheel download happens then, once)."""

    def make() -> Input:
        wheels = None
        if context.needs_wheels:
            lock = ASSETS_DIR / "gateway" / "requirements.lock"
            ctx.note(f"gateway wheels for {ctx.machine}: downloading or reusing the cache")
            ctx.work(f"gateway wheels for {ctx.machine}: downloading (or reusing the cache)")
            wheels = ensure_wheelhouse(lock, ctx.machine)
            count = len(list(wheels.glob("*.whl")))
            ctx.work(f"gateway wheels for {ctx.machine}: {count} ready", done=count, expected=count, unit="wheels")
        return context.tar(wheels)

    return make


def context_upload(ctx: Context, context: BuildContext) -> Callable[[], Input]:
    """The context's tar as a stream that reports the bytes sent (wheels are fetched first, reported too)."""
    make = context_tar(ctx, context)

    def upload() -> Input:
        tar = make()
        assert isinstance(tar, bytes)
        counting = CountingReader(tar, f"sending the {context.name} build context", ctx._work_report)
        return io.BufferedReader(counting, buffer_size=1 << 16)

    return upload


def _build_locally(ctx: Context, *, context: BuildContext, base: str) -> None:
    tag = context.tag(base)
    tar = context_tar(ctx, context)()
    assert isinstance(tar, bytes)
    argv = docker_cli.build_image(
        tag,
        base_image=base,
        labels={LABEL_CONTEXT: context.digest(base)},
        no_cache=ctx.options.refresh,
    )
    built = subprocess.run(argv, input=tar, capture_output=True, timeout=BUILD_TIMEOUT, check=False)
    if built.returncode != 0:
        raise DeployFailed(f"building {tag} on this machine failed:\n{stderr_tail(built.stderr)}")
    send_image(ctx, tag)


class ImagesStep(Step):
    name = "images"
    title = "Images"

    def contexts(self, ctx: Context) -> list[BuildContext]:
        found = [gateway_context(), nginx_context()]
        if ctx.cfg.tls.mode == "acme":
            found.append(certbot_context())
        stamp = ctx.release.images_refresh if ctx.release is not None else ""
        return [with_refresh(c, stamp) for c in found]

    def plan(self, ctx: Context) -> list[Change]:
        base = ctx.cfg.images.base_image
        local_target = ctx.cfg.target.is_local
        changes: list[Change] = []
        refresh = ctx.options.refresh
        contexts = [c for c in self.contexts(ctx) if not ctx.fact(docker_cli.image_inspect(c.tag(base))).ok]
        # A refresh (deploy --refresh) fetches the base again before building: updates come from there.
        base_present = ctx.fact(docker_cli.image_inspect(base)).ok and not (refresh and contexts)
        save_load = ctx.cfg.images.transfer == "save-load" and not local_target
        if not base_present and (contexts or not save_load):
            if not local_target and operator_has_image(base):
                changes.append(
                    Change(
                        f"send the base image {base} from this machine (docker save | docker load)",
                        (Call(f"send {base}", lambda c: send_image(c, base)),),
                    )
                )
            else:
                # With no registry, the pull turns into an offer to build it (debootstrap).
                changes.append(
                    Change(
                        f"pull the base image {base} on the host (no registry: offer to build it with debootstrap)",
                        (Call(f"pull {base}", functools.partial(pull_or_build, base=base)),),
                    )
                )
        for context in contexts:
            tag = context.tag(base)
            if save_load:
                changes.append(
                    Change(
                        f"build {tag} on this machine and send it (docker save | docker load)",
                        (
                            Call(
                                f"build and send {tag}",
                                functools.partial(_build_locally, context=context, base=base),
                            ),
                        ),
                    )
                )
                continue
            argv = docker_cli.build_image(
                tag, base_image=base, labels={LABEL_CONTEXT: context.digest(base)}, no_cache=refresh
            )
            what = f" with wheels for {ctx.machine or 'the host'}" if context.needs_wheels else ""
            changes.append(
                Change(
                    f"build {tag} on the host{what}",
                    (
                        Run(
                            tuple(argv),
                            input=context_upload(ctx, context),
                            timeout=BUILD_TIMEOUT,
                            progress=f"building {context.name}",
                        ),
                    ),
                )
            )
        return changes
