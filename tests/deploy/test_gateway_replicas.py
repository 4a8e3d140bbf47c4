"""With `state:` each host runs two gateway replicas under one network alias; without it, one (as before)."""

from __future__ import annotations

from pathlib import Path

from claudegate.connectors.base import Result
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import create_container
from claudegate.deploy.engine import Run
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.release import build_release
from claudegate.deploy.services import gateway_specs_for
from claudegate.deploy.steps.gateway import GatewayStep
from tests.deploy.canned import MISSING, context
from tests.deploy.conftest import ConfigFactory
from tests.deploy.support import write_secret

LAYOUT = HostLayout()


def _plan(cfg: object) -> tuple[Context, list[str], list[list[str]]]:
    def answer(argv: list[str]) -> Result | None:
        return MISSING  # a fresh host: no group, no container

    ctx = context(cfg, answer)  # type: ignore[arg-type]
    ctx.state.release = build_release(ctx.cfg, LAYOUT, key_fingerprint="f")
    changes = GatewayStep().plan(ctx)
    creates = [list(op.argv) for c in changes for op in c.ops if isinstance(op, Run) and op.argv[1] == "create"]
    return ctx, [c.summary for c in changes], creates


def test_one_replica_without_state_named_as_before(make_cfg: ConfigFactory) -> None:
    ctx, summaries, creates = _plan(make_cfg())
    assert len(summaries) == 1 and "replica" not in summaries[0]
    assert ctx.state.release is not None
    (spec,) = gateway_specs_for(ctx, ctx.state.release)
    assert spec.name == LAYOUT.gateway_container(ctx.state.release.gateway_id)  # the one-replica name, unchanged
    assert creates == [create_container(spec)]


def test_two_replicas_with_state_under_one_alias(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    pw = write_secret(tmp_path / "pw", "pw")
    state = {"redis": {"url": "redis://10.0.0.5/0", "password_file": str(pw)},
             "postgres": {"url": "postgresql://u@10.0.0.5/db", "password_file": str(pw), "tls": "disable"}}  # fmt: skip
    ctx, summaries, creates = _plan(make_cfg(state=state))
    assert [s.split(" (")[1] for s in summaries] == ["replica 1 of 2)", "replica 2 of 2)"], summaries
    assert ctx.state.release is not None
    gid = ctx.state.release.gateway_id
    names = [argv[argv.index("--name") + 1] for argv in creates]
    assert names == [LAYOUT.gateway_container(gid), LAYOUT.gateway_container(gid) + "-r2"]
    aliases = {argv[argv.index("--network-alias") + 1] for argv in creates}
    assert aliases == {LAYOUT.gateway_alias(gid)}  # nginx's upstream name resolves to both
