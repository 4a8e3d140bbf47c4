"""The migrate step: with ``state:``, PostgreSQL's schema is brought to this release before its gateway starts.

Run once per deploy (a rolling deploy asks its first host only), in a
one-shot container of the new gateway image with the new ``gateway.yaml``
and the host's secrets, on the egress network (it needs PostgreSQL, not
nginx). The gateway's steps are *expand*: gateways of the previous release
keep running on them while the roll goes on. A failure stops the deploy
before any new gateway starts; nothing was switched.

Nothing to do when this release's gateway already runs on the host (it
migrated when it started, under the same advisory lock), so a repeated
deploy stays "no changes".
"""

from __future__ import annotations

import dataclasses

from claudegate.containers import GATEWAY_CONFIG
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Change, Step
from claudegate.deploy.layout import LABEL_ROLE
from claudegate.deploy.services import gateway_spec_for, inspect, logs_tail
from claudegate.errors import DeployFailed

__all__ = ["MigrateStep"]

#: Long enough for a migration on a large ledger; the gateway holds an advisory lock meanwhile.
MIGRATE_TIMEOUT = 600.0


class MigrateStep(Step):
    name = "migrate"
    title = "Schema migrations (state.postgres)"

    def plan(self, ctx: Context) -> list[Change]:
        if ctx.cfg.state is not None and ctx.options.migrate and ctx.options.dry_run:
            ctx.note("claudegate-gateway migrate runs once, in the new gateway image, before any new gateway starts")
        return []

    def perform(self, ctx: Context) -> None:
        release = ctx.state.release
        if ctx.cfg.state is None or not ctx.options.migrate or release is None:
            return
        serving = inspect(ctx, ctx.layout.gateway_container(release.gateway_id))
        if serving is not None and serving.running:
            return  # it migrated when it started
        base = gateway_spec_for(ctx, release)
        spec = dataclasses.replace(
            base,
            name=f"{ctx.layout.prefix}-migrate",
            network=ctx.layout.egress_network,
            network_alias=None,
            extra_networks=(),
            restart="no",
            args=("migrate", "--config", GATEWAY_CONFIG),
            labels={**base.labels, LABEL_ROLE: "migrate"},
        )
        ctx.run(docker_cli.container_remove(spec.name), check=False)  # a run cut short left one
        ctx.note(f"migrating PostgreSQL's schema with {release.gateway_image}")
        ctx.run(docker_cli.create_container(spec))
        try:
            result = ctx.run(
                [*docker_cli.container_start(spec.name)[:-1], "--attach", spec.name],
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
            if not result.ok:
                raise DeployFailed(
                    f"the schema migration failed (claudegate-gateway migrate, exit status {result.exit_status}):\n"
                    + logs_tail(ctx, spec.name),
                    hint="no new gateway was started; the release that served before keeps serving."
                    " Check that this host reaches state.postgres",
                )
            ctx.note(logs_tail(ctx, spec.name, lines=5) or "schema up to date")
        finally:
            ctx.run(docker_cli.container_remove(spec.name), check=False)
