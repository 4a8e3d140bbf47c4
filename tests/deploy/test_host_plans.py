"""Plans of the connect, lock, docker, layout and unlock steps from canned host facts, one case a row.

See :mod:`tests.deploy.canned`: no host, no Docker; any command a plan is
not expected to run fails the case, and so does a host fact read that the
step does not declare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from claudegate.connectors.base import Result
from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.host import (
    INSTALL_DOCKER,
    ConnectStep,
    DockerStep,
    LayoutStep,
    LockStep,
    UnlockStep,
)
from claudegate.errors import ConfigError, DeployFailed
from tests.deploy.canned import MISSING, assert_declared, context, kinds, ok, plan
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()
R1, R2, R3 = "r00000000001", "r00000000002", "r00000000003"


# -- connect -----------------------------------------------------------------


@dataclass(frozen=True)
class ConnectCase:
    id: str
    dry_run: bool = False
    sudo: str = "root"  # "root" (no sudo needed), "passwordless", "asks a password"
    links: dict[str, str] = field(default_factory=dict)  # link path -> release
    journal: Journal | None = None
    # What the run knows after the plan; None: an error naming this text.
    current: str | None = None
    previous: str | None = None
    fallback: str | None = None
    error: str | None = None


CONNECT = [
    ConnectCase("a real run only learns the machine (it reads the rest under the lock)"),
    ConnectCase("a dry run reads the releases", dry_run=True,
                links={LAYOUT.current_link: R2, LAYOUT.previous_link: R1},
                current=R2, previous=R1, fallback=R2),
    ConnectCase("a dry run on a new host", dry_run=True),
    ConnectCase("an interrupted run's fallback is the last good release", dry_run=True,
                links={LAYOUT.current_link: R3, LAYOUT.previous_link: R2},
                journal=Journal(playbook="deploy", release=R3, fallback=R2),
                current=R3, previous=R2, fallback=R2),
    ConnectCase("a finished run's journal resumes nothing", dry_run=True,
                links={LAYOUT.current_link: R3},
                journal=Journal(playbook="deploy", release=R3, fallback=R2, finished=True, outcome="ok"),
                current=R3, fallback=R3),
    ConnectCase("passwordless sudo", sudo="passwordless"),
    ConnectCase("sudo that asks a password stops here", sudo="asks a password",
                error="cannot run commands with sudo without a password"),
]


@pytest.mark.parametrize("case", CONNECT, ids=[c.id for c in CONNECT])
def test_connect_plan(make_cfg: ConfigFactory, case: ConnectCase) -> None:
    _connect(make_cfg, case)


def _connect(make_cfg: ConfigFactory, case: ConnectCase) -> set[str]:
    def answer(argv: list[str]) -> Result | None:
        if argv == ["uname", "-m"]:
            return ok("aarch64\n")
        if argv == ["true"] and case.sudo != "root":
            return ok() if case.sudo == "passwordless" else MISSING
        if argv[:2] == ["sh", "-c"] and argv[3] == "claudegate-readlink" and case.dry_run:
            return ok("".join(f"{link} {rid}\n" for link, rid in case.links.items()))
        return None

    files = {LAYOUT.journal: case.journal.to_bytes()} if case.journal is not None else {}
    ctx = context(make_cfg(), answer, files, dry_run=case.dry_run, root=case.sudo == "root")
    if case.error is not None:
        with pytest.raises(ConfigError, match=case.error):
            plan(ConnectStep(), ctx)
        return set()
    changes, read = plan(ConnectStep(), ctx)
    assert changes == []
    assert ctx.facts.machine == "aarch64"
    assert (ctx.facts.current, ctx.facts.previous, ctx.state.fallback) == (case.current, case.previous, case.fallback)
    return read


# -- lock ----------------------------------------------------------------------


@pytest.mark.parametrize(("dry_run", "held", "note"), [
    (True, True, "the deploy lock is held by ops@laptop (pid 4242, deploy started 2026-12-07T04:00:00Z) (90 s left)"),
    (True, False, None),
    (False, True, None),  # a real run takes the lock in perform, after the plan
], ids=["a dry run says who holds the lock", "a dry run on a free lock", "a real run's plan asks nothing"])
def test_lock_plan(make_cfg: ConfigFactory, dry_run: bool, held: bool, note: str | None) -> None:
    owner = {"user": "ops", "operator_host": "laptop", "pid": 4242, "playbook": "deploy",
             "started_at": "2026-12-07T04:00:00Z"}  # fmt: skip

    def answer(argv: list[str]) -> Result | None:
        if argv[:2] == ["sh", "-c"] and argv[3] == "claudegate-lock-read" and dry_run:
            return ok(f"now=1000\nexpires=1090\ntoken=abc\n{json.dumps(owner)}\n" if held else "")
        return None

    notes: list[str] = []
    ctx = context(make_cfg(), answer, dry_run=dry_run)
    ctx.reporter = lambda event: notes.append(event.message) if event.kind == "note" else None
    changes, read = plan(LockStep(), ctx)
    assert changes == []
    assert_declared(LockStep, [read])
    assert notes == ([note] if note else [])
    assert ctx.state.lock is None  # planning takes no lock


# -- docker --------------------------------------------------------------------


@dataclass(frozen=True)
class DockerCase:
    id: str
    installed: bool
    running: bool = False
    os_id: str = "debian"
    changes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (summary start, op kinds)
    error: str | None = None


START = ("start the Docker engine", ("claudegate-start-docker", "call: wait for the engine"))
DOCKER = [
    DockerCase("running: nothing to do", installed=True, running=True),
    DockerCase("installed, stopped: start it", installed=True, changes=(START,)),
    DockerCase("missing on Debian: install (asks first), then start", installed=False,
               changes=((INSTALL_DOCKER, ("claudegate-apt",)), START)),
    DockerCase("missing on an Ubuntu derivative", installed=False, os_id="linuxmint\nID_LIKE=\"ubuntu debian\"",
               changes=((INSTALL_DOCKER, ("claudegate-apt",)), START)),
    DockerCase("missing elsewhere: a config error, nothing installed", installed=False, os_id="fedora",
               error="only Debian and Ubuntu are set up automatically"),
]


@pytest.mark.parametrize("case", DOCKER, ids=[c.id for c in DOCKER])
def test_docker_plan(make_cfg: ConfigFactory, case: DockerCase) -> None:
    _docker(make_cfg, case)


def _docker(make_cfg: ConfigFactory, case: DockerCase) -> set[str]:
    def answer(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-which"]:
            return ok("/usr/bin/docker\n") if case.installed else MISSING
        if argv == ["cat", "/etc/os-release"]:
            return ok(f"ID={case.os_id}\nPRETTY_NAME=\"Some OS\"\n")
        if argv[:2] == ["docker", "info"]:
            return ok("27.1\n") if case.running else MISSING
        return None

    ctx = context(make_cfg(), answer)
    if case.error is not None:
        with pytest.raises(ConfigError, match=case.error):
            plan(DockerStep(), ctx)
        return set()
    changes, read = plan(DockerStep(), ctx)
    assert [(c.summary[: len(s)], kinds(c)) for c, (s, _) in zip(changes, case.changes, strict=False)] == list(
        case.changes
    )
    assert len(changes) == len(case.changes)
    # Later steps inspect no container while there is no engine to ask.
    assert ctx.facts.docker_missing == bool(case.changes)
    install = next((c for c in changes if c.summary == INSTALL_DOCKER), None)
    assert (install is not None and install.consent is not None) == (not case.installed)
    return read


# -- layout --------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutCase:
    id: str
    group: bool  # the secrets group exists (gid 998)
    stats: dict[str, str]  # path -> "mode uid gid kind"
    changes: tuple[str, ...] = ()  # summaries, in order (directories by path)
    error: str | None = None


def _right(gid: int | None = 998) -> dict[str, str]:
    return {s.path: f"{s.mode:o} {s.uid} {s.gid} directory" for s in LAYOUT.directories(gid)}


LAYOUT_CASES = [
    LayoutCase("all there", True, _right()),
    LayoutCase("one directory with a wrong mode", True, {**_right(), LAYOUT.tls: "777 0 0 directory"},
               (f"set {LAYOUT.tls} to 0750 0:0 (was 0777 0:0)",)),
    LayoutCase("a missing directory", True, {k: v for k, v in _right().items() if k != LAYOUT.releases},
               (f"create {LAYOUT.releases} (0755 0:0)",)),
    LayoutCase("a file where a directory goes stops the run", True, {**_right(), LAYOUT.tls: "644 0 0 regular file"},
               error=f"{LAYOUT.tls} exists on the host but is a regular file"),
    LayoutCase("no group yet: it comes first", False, _right(None),
               (f"create the system group {LAYOUT.secrets_group}",)),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[c.id for c in LAYOUT_CASES])
def test_layout_plan(make_cfg: ConfigFactory, case: LayoutCase) -> None:
    _layout(make_cfg, case)


def _layout(make_cfg: ConfigFactory, case: LayoutCase) -> set[str]:
    def answer(argv: list[str]) -> Result | None:
        if argv[:2] == ["getent", "group"]:
            return ok(f"{LAYOUT.secrets_group}:x:998:\n") if case.group else MISSING
        if argv[3:4] == ["claudegate-stat"]:
            return ok("".join(f"{case.stats[p]}|{p}\n" for p in argv[4:] if p in case.stats))
        return None

    ctx = context(make_cfg(), answer)
    ctx.facts.secrets_gid = 12345  # stale: the layout step asks the host again
    if case.error is not None:
        with pytest.raises(DeployFailed, match=case.error):
            plan(LayoutStep(), ctx)
        return set()
    changes, read = plan(LayoutStep(), ctx)
    assert len(changes) == len(case.changes), [c.summary for c in changes]
    for change, summary in zip(changes, case.changes, strict=True):
        assert change.summary.startswith(summary), change.summary
    assert ctx.facts.secrets_gid == (998 if case.group else None)
    return read


# -- unlock --------------------------------------------------------------------


def test_unlock_plans_nothing_and_reads_nothing(make_cfg: ConfigFactory) -> None:
    # Its work is perform's: finish the journal, release the lock; a plan asks the host nothing.
    changes, read = plan(UnlockStep(), context(make_cfg()))
    assert changes == []
    assert_declared(UnlockStep, [read])


# -- the declarations ----------------------------------------------------------


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(ConnectStep, [_connect(make_cfg, c) for c in CONNECT])
    assert_declared(DockerStep, [_docker(make_cfg, c) for c in DOCKER])
    assert_declared(LayoutStep, [_layout(make_cfg, c) for c in LAYOUT_CASES])
