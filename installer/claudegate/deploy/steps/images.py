"""The images step: base image on the host, then the gateway and nginx images.

Images are named by their build context's hash (see :mod:`..build_contexts`), so
"is it there?" is one ``docker image inspect`` per image and a redeploy of
the same sources builds nothing.

- The base image is loaded from this machine (``docker save | docker load``
  over the verified connection) when the operator has it -- a locally made
  base, no registry needed -- and pulled on the host otherwise.
- ``images.transfer: build`` builds on the host from a tar context on stdin;
  the gateway's context carries the wheelhouse downloaded here.
  ``save-load`` builds here and sends every missing image in *one*
  ``docker save | docker load`` stream, so the layers they share (the base)
  travel once and the host runs no ``apt-get`` at all; this machine's build
  cache keeps the ``apt-get`` layers from one deploy to the next, so a code
  change rebuilds only the last layer. ``auto`` (default) is save-load when
  this machine has a working Docker engine of the target's CPU architecture
  and the base image, else build; the plan says which and why.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from collections.abc import Callable, Sequence

from claudegate.connectors.base import Input
from claudegate.deploy import docker_cli
from claudegate.deploy.base_image import pull_or_build
from claudegate.deploy.build_contexts import (
    BuildContext,
    certbot_context,
    gateway_context,
    nginx_context,
    with_refresh,
)
from claudegate.deploy.build_here import (
    BUILD_TIMEOUT,
    LABEL_CONTEXT,
    build_here,
    context_bytes,
    operator_has_image,
)
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.image_send import send_image, send_images
from claudegate.deploy.images_ahead import SPOOL_PREFIX, ImagesAhead, find_spools, remove_spool
from claudegate.deploy.substep import CountingReader
from claudegate.deploy.wheelhouse import normalized_arch
from claudegate.errors import Cancelled, ClaudegateError

__all__ = [
    "BUILD_TIMEOUT",
    "LABEL_CONTEXT",
    "ImagesStep",
    "context_tar",
    "operator_engine_arch",
    "operator_has_image",
    "send_image",
    "start_images_ahead",
    "transfer_choice",
]


def operator_engine_arch() -> str | None:
    """This machine's Docker engine architecture (``x86_64``/``aarch64``), None when it has no working engine."""
    if shutil.which("docker") is None:
        return None
    try:
        probe = subprocess.run(docker_cli.engine_architecture(), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    return normalized_arch(probe.stdout.decode(errors="replace").strip())


def transfer_choice(ctx: Context, base: str) -> tuple[bool, str]:
    """``(save_load, why)``: whether images are built here and sent, and the reason the plan gives."""
    chosen = ctx.cfg.images.transfer
    if ctx.cfg.target.is_local or chosen == "build":
        return False, ""
    if chosen == "save-load":
        return True, "images.transfer: save-load"
    target = normalized_arch(ctx.facts.machine)
    here = operator_engine_arch()
    if here is None:
        return False, "auto: no working Docker engine on this machine"
    if target is None or here != target:
        return False, f"auto: this machine's Docker is {here}, the host is {ctx.facts.machine or 'unknown'}"
    if not operator_has_image(base):
        return False, f"auto: this machine's Docker has no {base}"
    return True, f"auto: this machine's Docker is {here} like the host and has {base}"


def context_tar(ctx: Context, context: BuildContext) -> Callable[[], Input]:
    """The context's tar, made when the build runs (the wheel download happens then, once)."""

    def make() -> Input:
        if context.needs_wheels:
            ctx.note(f"gateway wheels for {ctx.facts.machine}: downloading or reusing the cache")
        return context_bytes(context, ctx.facts.machine, ctx._work_report)

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


def _build_here(ctx: Context, *, context: BuildContext, base: str) -> None:
    """``docker build`` on this machine, its step lines reported as ``work`` events."""
    tar = context_tar(ctx, context)()
    assert isinstance(tar, bytes)
    build_here(
        context, tar, base=base, no_cache=ctx.options.refresh, report=ctx._work_report, check=ctx.check_cancelled
    )


def _build_and_send(ctx: Context, *, contexts: Sequence[BuildContext], base: str) -> None:
    """Build what this machine lacks (its cache makes unchanged layers free), then send all in one stream."""
    refresh = ctx.options.refresh
    for context in contexts:
        tag = context.tag(base)
        if not refresh and operator_has_image(tag):
            ctx.work(f"{tag} is already built on this machine")
            continue
        _build_here(ctx, context=context, base=base)
    send_images(ctx, [c.tag(base) for c in contexts])


def start_images_ahead(ctx: Context) -> None:
    """Called by the Docker step before it installs Docker: build here and write the images to the host's disk meanwhile.

    Only when the images step would build here and send anyway (a fresh host has none of the images);
    a spool directory that cannot be made only costs the overlap, never the deploy.
    """
    if ctx.options.dry_run or ctx.options.playbook != "deploy" or ctx.state.images_ahead is not None:
        return
    base = ctx.cfg.images.base_image
    save_load, why = transfer_choice(ctx, base)
    if not save_load:
        return
    ahead = ImagesAhead(ctx, ImagesStep().contexts(ctx), base=base, why=why)
    try:
        ahead.start()
    except ClaudegateError as exc:
        ctx.note(f"could not start sending the images while Docker is installed ({exc}); they follow it")
        return
    ctx.state.images_ahead = ahead
    ctx.note(f"building {', '.join(ahead.tags)} here and writing them to {ahead.path} while Docker is installed")


def _load_ahead(ctx: Context) -> None:
    """Wait for the images sent ahead and ``docker load`` them; a failed transfer falls back to the direct stream."""
    ahead = ctx.state.images_ahead
    assert ahead is not None
    try:
        ahead.wait(ctx)
    except ClaudegateError as exc:
        if isinstance(exc, Cancelled) or not ahead.send_failed:
            raise
        ctx.note(f"writing the images to the host's disk failed ({exc}); sending them straight into docker load")
        ctx.stop_background()
        _build_and_send(ctx, contexts=ahead.contexts, base=ahead.base)
        return
    ahead.load(ctx)
    ctx.state.images_ahead = None


def _stale_spools(ctx: Context) -> list[Change]:
    """Spool directories a killed run left on the host (hundreds of MB each): removed here."""
    found = ctx.fact(find_spools()).text.split()
    mine = ctx.state.images_ahead.spool if ctx.state.images_ahead is not None else None
    stale = [path for path in found if path != mine and path.startswith(SPOOL_PREFIX)]
    if not stale:
        return []
    return [Change(f"remove {', '.join(stale)} (images an interrupted run sent ahead)", (Run(tuple(remove_spool(*stale))),))]


class ImagesStep(Step):
    name = "images"
    title = "Images"
    reads = frozenset({"machine"})

    def contexts(self, ctx: Context) -> list[BuildContext]:
        found = [gateway_context(), nginx_context()]
        if ctx.cfg.tls.mode == "acme":
            found.append(certbot_context())
        stamp = ctx.state.release.images_refresh if ctx.state.release is not None else ""
        return [with_refresh(c, stamp) for c in found]

    def plan(self, ctx: Context) -> list[Change]:
        base = ctx.cfg.images.base_image
        local_target = ctx.cfg.target.is_local
        changes: list[Change] = []
        refresh = ctx.options.refresh
        contexts = [c for c in self.contexts(ctx) if not ctx.fact(docker_cli.image_inspect(c.tag(base))).ok]
        save_load, why = transfer_choice(ctx, base)
        if not local_target:
            changes += _stale_spools(ctx)
        if save_load:
            # The loaded images carry their base layers: the host needs no base image of its own.
            # Images sent ahead are always collected here (even when the engine already loaded
            # them): the step reports them and removes their spool directory.
            ahead = ctx.state.images_ahead
            if ahead is not None and {c.tag(base) for c in contexts} <= set(ahead.tags):
                changes.append(
                    Change(
                        f"load {', '.join(ahead.tags)} on the host: built on this machine and sent while "
                        f"Docker was installed ({why})",
                        (Call("load the images sent ahead", _load_ahead),),
                    )
                )
                return changes
            if contexts:
                tags = ", ".join(c.tag(base) for c in contexts)
                build_and_send = functools.partial(_build_and_send, contexts=contexts, base=base)
                changes.append(
                    Change(
                        f"build {tags} on this machine and send them in one docker save | docker load ({why})",
                        # A Call: builds on this machine, then one docker save | docker load stream.
                        (Call("build here and send", build_and_send),),
                    )
                )
            return changes
        # A refresh (deploy --refresh) fetches the base again before building: updates come from there.
        base_present = ctx.fact(docker_cli.image_inspect(base)).ok and not (refresh and contexts)
        if not base_present:
            if not local_target and operator_has_image(base):
                changes.append(
                    Change(
                        f"send the base image {base} from this machine (docker save | docker load)",
                        # A Call: a docker save here streamed into docker load there.
                        (Call(f"send {base}", lambda c: send_image(c, base)),),
                    )
                )
            else:
                # With no registry, the pull turns into an offer to build it (debootstrap).
                changes.append(
                    Change(
                        f"pull the base image {base} on the host (no registry: offer to build it with debootstrap)",
                        # A Call: a failed pull turns into a question, then a debootstrap build.
                        (Call(f"pull {base}", functools.partial(pull_or_build, base=base)),),
                    )
                )
        for context in contexts:
            tag = context.tag(base)
            argv = docker_cli.build_image(
                tag, base_image=base, labels={LABEL_CONTEXT: context.digest(base)}, no_cache=refresh
            )
            what = f" with wheels for {ctx.facts.machine or 'the host'}" if context.needs_wheels else ""
            changes.append(
                Change(
                    f"build {tag} on the host{what}" + (f" ({why})" if why else ""),
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
