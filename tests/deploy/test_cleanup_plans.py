"""The cleanup step's plan from a canned host, one case a row.

A host here is: where ``current`` and ``previous`` point, the release and
gateway directories on disk (with their manifests), the gateway containers
(running or not) and the images present. Each case lists the changes the
plan must hold, in order, by summary; the connector fails on any command a
plan should not run.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from claudegate.connectors.base import Result
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Run
from claudegate.deploy.layout import LABEL_GATEWAY, HostLayout
from claudegate.deploy.steps.cleanup import CleanupStep
from tests.deploy.canned import MISSING, Canned, assert_declared, ok, plan
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()


def _rel(n: int) -> str:
    return f"r{n:011d}"


def _gw(n: int) -> str:
    return f"g{n:011d}"


def _images(n: int) -> dict[str, str]:
    return {"gateway": f"claudegate-gateway:{n}", "nginx": f"claudegate-nginx:{n}"}


@dataclass(frozen=True)
class Host:
    current: int | None
    previous: int | None = None
    releases: tuple[int, ...] = ()  # release n uses gateway n and images n
    running: tuple[int, ...] = ()  # gateway containers that run
    stopped: tuple[int, ...] = ()  # gateway containers that exist, stopped
    images: tuple[str, ...] = ()  # images present on the engine
    extra_entries: tuple[str, ...] = ()  # other names in releases/


@dataclass(frozen=True)
class Case:
    id: str
    host: Host
    changes: tuple[str, ...] = field(default=())


CASES = [
    Case("nothing served yet", Host(current=None, releases=(1,), running=(1,))),
    Case("one release, up", Host(current=1, releases=(1,), running=(1,))),
    Case("previous gateway still runs: stopped, kept",
         Host(current=2, previous=1, releases=(1, 2), running=(1, 2)),
         ("stop gateway g00000000001 of the previous release (kept for rollback)",)),
    Case("previous gateway already stopped", Host(current=2, previous=1, releases=(1, 2), running=(2,), stopped=(1,))),
    Case("an older release goes, with its gateway, directory and images",
         Host(current=3, previous=2, releases=(1, 2, 3), running=(3,), stopped=(1, 2),
              images=("claudegate-gateway:1", "claudegate-nginx:1")),
         ("remove gateway g00000000001 of an older release",
          "remove release r00000000001",
          "remove gateway config g00000000001",
          "remove images no kept release uses: claudegate-gateway:1, claudegate-nginx:1")),
    Case("an image already gone is not removed again",
         Host(current=3, previous=2, releases=(1, 2, 3), running=(3,), stopped=(2,),
              images=("claudegate-nginx:1",)),
         ("remove release r00000000001", "remove gateway config g00000000001",
          "remove images no kept release uses: claudegate-nginx:1")),
    Case("a half-unpacked release is removed; a temporary link and the links are not",
         Host(current=1, releases=(1,), running=(1,), extra_entries=(".incoming.abc123", "current.tmp")),
         ("remove release .incoming.abc123",)),
]


def _host(host: Host) -> Any:
    links = {LAYOUT.current_link: host.current, LAYOUT.previous_link: host.previous}
    entries = [_rel(n) for n in host.releases] + ["current", "previous", *host.extra_entries]
    manifests = {
        posixpath.join(LAYOUT.release_dir(_rel(n)), "release.json"): json.dumps(
            {"gateway_id": _gw(n), "images": _images(n), "base_image": "debian:bookworm-slim", "smoke": {}}
        ).encode()
        for n in host.releases
    }
    containers = {LAYOUT.gateway_container(_gw(n)): (n, n in host.running) for n in (*host.running, *host.stopped)}

    def answer(argv: list[str]) -> Result | None:
        if argv[:2] == ["sh", "-c"] and argv[3] == "claudegate-readlink":
            return ok("".join(f"{link} {_rel(n)}\n" for link, n in links.items() if n is not None))
        if argv[:3] == ["docker", "container", "ls"]:
            return ok("\n".join(containers) + "\n")
        if argv[:3] == ["docker", "container", "inspect"]:
            if argv[-1] not in containers:
                return MISSING
            n, running = containers[argv[-1]]
            return ok(json.dumps({
                "Id": "c", "Name": f"/{argv[-1]}", "Config": {"Image": "x", "Labels": {LABEL_GATEWAY: _gw(n)}},
                "State": {"Status": "running" if running else "exited"}, "NetworkSettings": {"Networks": {}},
            }))
        if argv[:2] == ["ls", "-1A"] and argv[-1] == LAYOUT.releases:
            return ok("\n".join(entries) + "\n")
        if argv[:2] == ["ls", "-1A"] and argv[-1] == LAYOUT.gateways:
            return ok("\n".join(_gw(n) for n in host.releases) + "\n")
        if argv[:3] == ["docker", "image", "inspect"]:
            return ok("sha256:x") if argv[-1] in host.images else MISSING
        return None

    return answer, manifests


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cleanup_plan(make_cfg: ConfigFactory, case: Case) -> None:
    _cleanup(make_cfg, case)


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(CleanupStep, [_cleanup(make_cfg, c) for c in CASES])


def _cleanup(make_cfg: ConfigFactory, case: Case) -> set[str]:
    answer, files = _host(case.host)
    ctx = Context(cfg=make_cfg(), connector=Canned(answer, files), layout=LAYOUT, options=RunOptions("deploy"))
    changes, read = plan(CleanupStep(), ctx)
    assert tuple(c.summary for c in changes) == case.changes
    for change in changes:
        (op,) = change.ops
        assert isinstance(op, Run)
        _only_what_it_says(change.summary, op.argv)
        # Docker refuses to remove an image another installation still uses: that is fine, nothing else is.
        assert op.check != change.summary.startswith("remove images")
    return read


def _only_what_it_says(summary: str, argv: Sequence[str]) -> None:
    """Each removal touches exactly the thing its summary names, never a kept one."""
    if summary.startswith("remove release "):
        assert list(argv) == ["rm", "-rf", "--", LAYOUT.release_dir(summary.split()[-1])]
    elif summary.startswith("remove gateway config "):
        assert list(argv) == ["rm", "-rf", "--", LAYOUT.gateway_dir(summary.split()[-1])]
    elif summary.startswith(("remove gateway ", "stop gateway ")):
        assert argv[-1] == LAYOUT.gateway_container(summary.split()[2])
    else:
        assert summary.startswith("remove images")
        assert list(argv[-len(summary.split(": ")[1].split(", ")):]) == summary.split(": ")[1].split(", ")
