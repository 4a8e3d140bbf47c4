"""The smoke step: the deployed gateway, tested as its clients use it.

If a check fails after this run switched nginx, nginx is switched back to
the last good release (whose gateway still runs: cleanup only comes after a
pass), the new gateway is removed, and the run raises
:class:`~claudegate.errors.DeployFailed` naming the failed checks.
"""

from __future__ import annotations

import dataclasses

from claudegate.control.cancel import NEVER
from claudegate.deploy import docker_cli
from claudegate.deploy.audit_run import audit_deployment, connector_keys_and_log
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Step
from claudegate.deploy.release import parse_manifest
from claudegate.deploy.services import gateway_specs_for, inspect, switch_nginx, wait_gateway_ready
from claudegate.deploy.smoke_target import target_for
from claudegate.deploy.steps.clients import SMOKE_CLIENT, keys_dir, read_saved_key
from claudegate.errors import Cancelled, ClaudegateError, DeployFailed, SmokeTestFailed
from claudegate.smoke import SmokeTarget, run_smoke

__all__ = ["SmokeStep", "smoke_target", "target_for"]


def smoke_target(ctx: Context) -> SmokeTarget:
    release = ctx.state.release.smoke if ctx.state.release is not None else {}
    return target_for(
        ctx.cfg,
        trust=ctx.state.tls.trust if ctx.state.tls is not None else None,
        client_key=ctx.state.smoke_key,
        max_body_bytes=release.get("max_body_bytes"),
        per_ip_burst=release.get("per_ip_burst"),
    )


class SmokeStep(Step):
    name = "smoke"
    title = "Smoke test"
    reads = frozenset({"previous", "secrets_gid"})

    def perform(self, ctx: Context) -> None:
        if ctx.state.smoke_key is None:
            # A rollback has no clients step: use the key the deploys saved.
            ctx.state.smoke_key = read_saved_key(keys_dir(ctx), SMOKE_CLIENT)
            if ctx.state.smoke_key is not None:
                ctx.connector.add_secret(ctx.state.smoke_key)
        try:
            report = run_smoke(
                smoke_target(ctx), progress=lambda check: ctx.emit(
                    "check", message=check.name, status=check.status, detail=check.detail
                )
            )
        except Cancelled:
            self._back_after_cancel(ctx)
            raise
        ctx.state.smoke = report
        failed = ", ".join(report.failed)
        if report.ok and ctx.cfg.audit and not ctx.options.dry_run:
            failed = self._quick_audit(ctx)
        if not failed:
            return
        release = ctx.state.release
        fallback = ctx.state.fallback
        # nginx serves ``release`` now (the switch step saw to it, in this run
        # or in the interrupted one this run resumes); anything else that
        # served before is the way back.
        if release is None or fallback is None or fallback == release.rid:
            if report.ok:  # the audit failed, with no release to go back to
                raise DeployFailed(
                    f"the quick security audit failed: {failed}",
                    hint="run claudegate audit --config ... for the evidence; each failure names what to fix",
                )
            raise SmokeTestFailed(
                f"the smoke test failed: {failed}\n{report.table()}",
                failed=report.failed,
                hint="there was no earlier release to switch back to; see the failed checks",
            )
        what = "smoke test" if not report.ok else "quick security audit"
        self._switch_back(ctx, fallback, f"{what} failed ({failed})")
        raise DeployFailed(
            f"the {what} of release {release.rid} failed ({failed}); nginx was switched back to release "
            f"{fallback}, which keeps serving\n{report.table() if not report.ok else ''}".rstrip(),
            hint="fix what the failed checks say, then deploy again"
            if not report.ok else "run claudegate audit for the evidence; each failure names what to fix",
        )

    @classmethod
    def _back_after_cancel(cls, ctx: Context) -> None:
        """Cancelled mid-test: nginx serves an unproven release; put the last good one back first.

        The way back has waits of its own; they must run to their end, so the
        cancel token is set aside for them (the run still ends Cancelled).
        """
        release, fallback = ctx.state.release, ctx.state.fallback
        if release is None or fallback is None or fallback == release.rid:
            return
        saved = ctx.controls
        ctx.controls = dataclasses.replace(saved, cancel=NEVER)
        try:
            cls._switch_back(ctx, fallback, "smoke test cancelled")
        finally:
            ctx.controls = saved

    @staticmethod
    def _quick_audit(ctx: Context) -> str:
        """``audit: true``: the quick audit after a passing smoke test; the names of probes that failed."""
        keys, read_log = connector_keys_and_log(ctx.cfg, ctx.connector, ctx.layout)
        result = audit_deployment(
            ctx.cfg, keys, read_log, quick=True,
            progress=lambda probe: ctx.note(f"audit {probe.name}: {probe.verdict}"),
        )  # fmt: skip
        ctx.note(f"quick audit: {result.summary()}")
        for probe in result.failed:
            ctx.note(f"audit {probe.name} failed: {probe.detail} (fix: {probe.fix})")
        return ", ".join(f"audit {probe.name}" for probe in result.failed)

    @staticmethod
    def _switch_back(ctx: Context, fallback: str, reason: str) -> None:
        release = ctx.state.release
        assert release is not None
        manifest = ctx.read_file(f"{ctx.layout.release_dir(fallback)}/release.json")
        if manifest is None:
            raise DeployFailed(f"{reason} and release {fallback} is gone")
        good = parse_manifest(fallback, manifest)
        ctx.note(f"{reason}; switching nginx back to release {fallback}")
        try:
            for spec in gateway_specs_for(ctx, good):
                state = inspect(ctx, spec.name)
                if state is not None and not state.running:
                    ctx.run(docker_cli.container_start(spec.name))
                    wait_gateway_ready(ctx, spec.name)
            switch_nginx(ctx, fallback, ctx.facts.previous if ctx.facts.previous != fallback else None)
        except ClaudegateError as exc:
            raise DeployFailed(
                f"{reason} and switching back to {fallback} failed too: {exc}"
            ) from exc
        if good.gateway_id != release.gateway_id:
            for spec in gateway_specs_for(ctx, release):
                failed_gateway = spec.name
                # A rollback's target stays (stopped) for another try; a new release's gateway goes.
                if ctx.options.playbook == "rollback":
                    ctx.run(docker_cli.container_stop(failed_gateway), check=False, timeout=90)
                else:
                    ctx.run(docker_cli.container_remove(failed_gateway), check=False)
        if ctx.state.journal is not None:
            ctx.state.journal.finish(f"{reason}; switched back to {fallback}")
            ctx.save_journal()
