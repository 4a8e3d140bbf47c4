"""The gateway step: this release's gateway runs and is ready, beside the one serving now.

A new gateway id gets a new container next to the old one; nginx keeps
sending traffic to the old one until the switch step. A gateway that exits,
keeps restarting or is not ready in time is removed again and the deploy
stops, with the container's last log lines: nothing was switched, so the
old release keeps serving.
"""

from __future__ import annotations

from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import ContainerSpec
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.services import (
    container_matches,
    create_ops,
    gateway_specs_for,
    inspect,
    wait_gateway_ready,
)
from claudegate.errors import ConfigError, DeployFailed

__all__ = ["GatewayStep"]


class GatewayStep(Step):
    name = "gateway"
    title = "Gateway container"
    reads = frozenset({"current", "docker_missing", "secrets_gid"})

    def plan(self, ctx: Context) -> list[Change]:
        release = ctx.state.release
        if release is None:
            raise ConfigError("no release to start")
        changes: list[Change] = []
        specs = gateway_specs_for(ctx, release)
        for replica, spec in enumerate(specs, 1):
            what = f"gateway {release.gateway_id}" + (f" (replica {replica} of {len(specs)})" if len(specs) > 1 else "")
            changes += self._replica(ctx, what, release.gateway_image, spec)
        return changes

    def _replica(self, ctx: Context, what: str, image: str, spec: ContainerSpec) -> list[Change]:
        name = spec.name
        state = None if ctx.facts.docker_missing else inspect(ctx, name)
        # A Call: a wait loop, which removes a gateway that crashes instead of getting ready.
        ready = Call(f"wait until {name} is ready", lambda c: self._wait(c, name))
        if state is None:
            beside = " beside the one serving now" if ctx.facts.current is not None else ""
            return [Change(f"start {what} ({image}){beside}", (*create_ops(spec), ready))]
        if not container_matches(state, spec):
            remove = Run(tuple(docker_cli.container_remove(name)))
            return [
                Change(
                    f"recreate {what} (its container settings changed)",
                    (remove, *create_ops(spec), ready),
                )
            ]
        if not state.running:
            return [
                Change(
                    f"start the stopped {what}",
                    (Run(tuple(docker_cli.container_start(name))), ready),
                )
            ]
        return []

    @staticmethod
    def _wait(ctx: Context, name: str) -> None:
        try:
            wait_gateway_ready(ctx, name)
        except DeployFailed as exc:
            # Do not leave a crash-looping container behind; the serving one is untouched.
            ctx.run(docker_cli.container_remove(name), check=False)
            raise DeployFailed(
                f"{exc}\nThe new gateway was removed; the release that served before keeps serving.",
                hint="read the gateway's messages above, fix the config, and deploy again",
            ) from None
