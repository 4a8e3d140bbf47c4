"""The rollback step: choose the previous release as this run's target.

The steps after it (gateway, switch, smoke, cleanup) then do what a deploy
does, towards that release: start its (stopped) gateway, switch nginx with
``previous`` and ``current`` swapped, smoke-test it, stop the other one. A
second rollback therefore goes forward again.
"""

from __future__ import annotations

import posixpath

from claudegate.deploy.context import Context
from claudegate.deploy.engine import Change, Step
from claudegate.deploy.release import parse_manifest
from claudegate.errors import DeployFailed

__all__ = ["RollbackStep"]


class RollbackStep(Step):
    name = "rollback"
    title = "Choose the release to roll back to"
    reads = frozenset({"current", "previous"})

    def plan(self, ctx: Context) -> list[Change]:
        current, previous = ctx.facts.current, ctx.facts.previous
        if previous is None or previous == current:
            raise DeployFailed(
                f"there is no previous release to roll back to (current: {current or 'none'})",
                hint="a rollback needs two deploys of different configurations",
            )
        data = ctx.read_file(posixpath.join(ctx.layout.release_dir(previous), "release.json"))
        if data is None:
            raise DeployFailed(f"the previous release {previous} is no longer on the host")
        ctx.state.release = parse_manifest(previous, data)
        ctx.state.fallback = current
        if ctx.state.journal is not None:
            ctx.state.journal.release = previous
            ctx.state.journal.fallback = current
        ctx.note(f"rolling back from release {current} to {previous}")
        return []
