"""The switch step's plan from canned facts, one case a row (pyinfra's per-operation cases are the model).

Each case gives what the host answers (nginx's container, if any; where
``releases/current`` points; whether a certificate reload is pending) and
the one change the plan must hold, with the kinds of its operations in
order. No host, no Docker: the connector answers the read-only commands and
fails on anything else, so a plan that would change something while
planning fails too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from claudegate.connectors.base import Result
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call, Run
from claudegate.deploy.layout import LABEL_SPEC, HostLayout
from claudegate.deploy.release import build_release
from claudegate.deploy.services import nginx_spec_for
from claudegate.deploy.steps.switch import SwitchStep
from tests.deploy.canned import MISSING, Canned, assert_declared, ok, plan
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()
OTHER = "0123456789ab"


@dataclass(frozen=True)
class Case:
    id: str
    nginx: str  # "absent", "matching", "stale spec", "stopped", "missing a network"
    current: str | None  # where releases/current points: "new", OTHER or None
    fallback: str | None = None
    reload: bool = False
    summary: str | None = None  # start of the one change's summary; None: nothing to do
    ops: tuple[str, ...] = ()  # the operations' kinds: docker's subcommand, a script's name, "call: WHAT"


# Create nginx's container, join its second network, start it, wait until it answers.
CREATE = ("docker create", "docker network connect", "docker container start", "call: wait for nginx")
LINK = "claudegate-link"

CASES = [
    Case("first deploy", "absent", None, summary="start nginx on release",
         ops=(LINK, *CREATE)),
    Case("first deploy keeps the previous release", "absent", None, fallback=OTHER,
         summary="start nginx on release",
         ops=(LINK, LINK, *CREATE)),
    Case("its settings changed", "stale spec", OTHER, summary="recreate nginx on release",
         ops=(LINK, "docker container rm", *CREATE)),
    Case("left off a network", "missing a network", OTHER, summary="recreate nginx on release",
         ops=(LINK, "docker container rm", *CREATE)),
    Case("stopped", "stopped", "new", summary="start the stopped nginx",
         ops=(LINK, "docker container start", "call: wait for nginx")),
    Case("another release serves", "matching", OTHER, summary=f"switch nginx from release {OTHER} to",
         ops=("call: switch to",)),
    Case("no release served yet", "matching", None, summary="switch nginx from release none to",
         ops=("call: switch to",)),
    Case("a new certificate", "matching", "new", reload=True, summary="reload nginx for the new certificate",
         ops=("call: reload nginx",)),
    Case("up to date", "matching", "new"),
]


def _container(case: Case, spec: Any, rid: str) -> dict[str, Any]:
    networks = {spec.network: {}, **{net: {"IPAddress": ip or ""} for net, ip in spec.extra_networks}}
    if case.nginx == "missing a network":
        networks.pop(spec.network)
    label = "stale" if case.nginx == "stale spec" else spec.digest()
    return {
        "Id": "c0ffee", "Name": f"/{spec.name}",
        "Config": {"Image": spec.image, "Labels": {LABEL_SPEC: label}},
        "State": {"Status": "exited" if case.nginx == "stopped" else "running"},
        "NetworkSettings": {"Networks": networks},
    }


def _kind(op: Any) -> str:
    if isinstance(op, Call):
        return f"call: {op.what}"
    assert isinstance(op, Run)
    if op.argv[0] == "docker":  # docker create, docker container start, docker network connect
        return " ".join(op.argv[:3] if op.argv[1] in ("container", "network") else op.argv[:2])
    return op.argv[3]  # sh -c SCRIPT NAME ARGS


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_switch_plan(make_cfg: ConfigFactory, case: Case) -> None:
    _switch(make_cfg, case)


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(SwitchStep, [_switch(make_cfg, c) for c in CASES])


def _switch(make_cfg: ConfigFactory, case: Case) -> set[str]:
    cfg = make_cfg()
    release = build_release(cfg, LAYOUT, key_fingerprint="f")
    rid = release.rid
    ctx = Context(cfg=cfg, connector=Canned(lambda argv: None), layout=LAYOUT, options=RunOptions("deploy"))
    ctx.state.release = release
    ctx.state.fallback = case.fallback
    ctx.state.reload_nginx = case.reload
    spec = nginx_spec_for(ctx, release)
    current = rid if case.current == "new" else case.current

    def answer(argv: list[str]) -> Result | None:
        if argv[:3] == ["docker", "container", "inspect"] and argv[-1] == spec.name:
            return MISSING if case.nginx == "absent" else ok(json.dumps(_container(case, spec, rid)))
        if argv[:2] == ["sh", "-c"] and argv[3] == "claudegate-readlink":
            return ok(f"{LAYOUT.current_link} {current}\n" if current else "")
        return None

    ctx.connector = Canned(answer)
    changes, read = plan(SwitchStep(), ctx)
    if case.summary is None:
        assert changes == []
        return read
    (change,) = changes
    assert change.summary.startswith(case.summary), change.summary
    kinds = tuple(_kind(op) for op in change.ops)
    assert len(kinds) == len(case.ops), kinds
    for kind, expected in zip(kinds, case.ops, strict=True):
        assert kind.startswith(expected), (kinds, case.ops)
    links = [op.argv[4:] for op in change.ops if isinstance(op, Run) and _kind(op) == "claudegate-link"]
    if links:  # current points at the new release; previous at the fallback when there is one
        assert links[-1] == (LAYOUT.current_link, rid)
        assert ((LAYOUT.previous_link, OTHER) in links) == (case.fallback == OTHER)
    return read
