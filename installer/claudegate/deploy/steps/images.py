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
import threading
from collections.abc import Callable, Sequence

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
from claudegate.deploy.image_send import send_image, send_images
from claudegate.deploy.substep import BuildOutput, CountingReader
from claudegate.deploy.wheelhouse import ensure_wheelhouse, normalized_arch
from claudegate.errors import DeployFailed

__all__ = ["ImagesStep", "context_tar", "operator_engine_arch", "operator_has_image", "send_image", "transfer_choice"]

LABEL_CONTEXT = "org.claudegate.context"
BUILD_TIMEOUT = 1200.0


def operator_has_image(ref: str) -> bool:
    """True when this machine's own Docker has ``ref`` (used to send it instead of pulling)."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(docker_cli.image_inspect(ref), capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


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
        wheels = None
        if context.needs_wheels:
            lock = ASSETS_DIR / "gateway" / "requirements.lock"
            ctx.note(f"gateway wheels for {ctx.facts.machine}: downloading or reusing the cache")
            ctx.work(f"gateway wheels for {ctx.facts.machine}: downloading (or reusing the cache)")
            wheels = ensure_wheelhouse(lock, ctx.facts.machine)
            count = len(list(wheels.glob("*.whl")))
            ctx.work(f"gateway wheels for {ctx.facts.machine}: {count} ready", done=count, expected=count, unit="wheels")
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


def _build_here(ctx: Context, *, context: BuildContext, base: str) -> None:
    """``docker build`` on this machine, its step lines reported as ``work`` events."""
    tag = context.tag(base)
    tar = context_tar(ctx, context)()
    assert isinstance(tar, bytes)
    argv = docker_cli.build_image(
        tag,
        base_image=base,
        labels={LABEL_CONTEXT: context.digest(base)},
        no_cache=ctx.options.refresh,
    )
    report = BuildOutput(f"building {context.name} here", ctx._work_report, check=ctx.check_cancelled)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as build:
        assert build.stdin is not None and build.stdout is not None
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
                report(line)
            build.wait(timeout=BUILD_TIMEOUT)
        except BaseException:
            build.kill()  # a cancel (or a crash) abandons the build: nothing is tagged
            raise
        finally:
            feeder.join(timeout=5)
    if build.returncode != 0:
        raise DeployFailed(f"building {tag} on this machine failed:\n{stderr_tail(b''.join(tail))}")


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
        if save_load:
            # The loaded images carry their base layers: the host needs no base image of its own.
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
