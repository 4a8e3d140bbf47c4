"""How the images step picks its transfer (issue 14): ``auto`` builds here and sends when this
machine's Docker can make the host's images; the plan says which and why. Canned host facts;
this machine's engine is replaced by what each case needs (its real use is in the e2e deploy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import claudegate.deploy.steps.images as images
from claudegate.connectors.base import Connector, Input, Result
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call, Run
from claudegate.deploy.facts import HostFacts
from claudegate.deploy.images_ahead import ImagesAhead, find_spools, make_spool
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.progress import StepEvent
from claudegate.deploy.steps.images import ImagesStep, start_images_ahead, transfer_choice
from tests.deploy.canned import assert_declared, context, kinds, plan
from tests.deploy.conftest import ConfigFactory


class NoImages(Connector):
    """A remote host that has no image at all (a fresh server)."""

    target = "deploy@203.0.113.10"

    @property
    def is_root(self) -> bool:
        return False

    def run(self, argv: Sequence[str], *, input: Input | None = None, sudo: bool = False,
            timeout: float | None = None, check: bool = False, **_: Any) -> Result:  # fmt: skip
        if list(argv) == find_spools():
            return Result(0, b"", b"")  # no spool directory left by an earlier run
        assert list(argv[:3]) == ["docker", "image", "inspect"], argv
        return Result(1, b"", b"Error: No such image\n")


def ctx_for(make_cfg: ConfigFactory, machine: str = "x86_64", **images_section: str) -> Context:
    cfg = make_cfg(images={"base_image": "debian:bookworm-slim", **images_section})
    ctx = Context(cfg=cfg, connector=NoImages(), layout=HostLayout(), options=RunOptions("deploy"))
    ctx.facts.machine = machine
    return ctx


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """This machine's engine as each test wants it: its architecture (None: no engine) and images."""
    state: dict[str, Any] = {"arch": "x86_64", "images": {"debian:bookworm-slim"}}
    monkeypatch.setattr(images, "operator_engine_arch", lambda: state["arch"])
    monkeypatch.setattr(images, "operator_has_image", lambda ref: ref in state["images"])
    return state


def test_auto_builds_here_when_the_engine_matches(make_cfg: ConfigFactory, operator: dict[str, Any]) -> None:
    ctx = ctx_for(make_cfg, machine="amd64")  # Debian's name for the same architecture
    assert transfer_choice(ctx, "debian:bookworm-slim")[0] is True
    changes, read = plan(ImagesStep(), ctx)
    assert_declared(ImagesStep, [read])  # the host's architecture, learned by connect
    # One change: build gateway and nginx here and send both in one stream; no base image for the host.
    assert len(changes) == 1, [c.summary for c in changes]
    summary = changes[0].summary
    assert "claudegate/gateway:" in summary and "claudegate/nginx:" in summary
    assert "on this machine and send them in one docker save | docker load (auto: " in summary
    assert isinstance(changes[0].ops[0], Call)


@pytest.mark.parametrize(
    ("arch", "has_base", "reason"),
    [
        (None, True, "no working Docker engine on this machine"),
        ("aarch64", True, "this machine's Docker is aarch64, the host is x86_64"),
        ("x86_64", False, "this machine's Docker has no debian:bookworm-slim"),
    ],
)
def test_auto_builds_on_the_host_otherwise_and_says_why(
    make_cfg: ConfigFactory, operator: dict[str, Any], arch: str | None, has_base: bool, reason: str
) -> None:
    operator["arch"] = arch
    if not has_base:
        operator["images"] = set()
    ctx = ctx_for(make_cfg)
    assert transfer_choice(ctx, "debian:bookworm-slim") == (False, f"auto: {reason}")
    changes, read = plan(ImagesStep(), ctx)
    assert_declared(ImagesStep, [read])
    builds = [c for c in changes if c.summary.startswith("build claudegate/")]
    assert [c.summary.split()[1].split(":")[0] for c in builds] == ["claudegate/gateway", "claudegate/nginx"]
    assert all(c.summary.endswith(f"on the host{' with wheels for x86_64' if 'gateway' in c.summary else ''}"
                                  f" (auto: {reason})") for c in builds)  # fmt: skip
    assert all(isinstance(c.ops[0], Run) and c.ops[0].argv[:2] == ("docker", "build") for c in builds)
    assert any("base image" in c.summary for c in changes)  # the host builds FROM its own base


def test_an_explicit_choice_is_followed(make_cfg: ConfigFactory, operator: dict[str, Any]) -> None:
    assert transfer_choice(ctx_for(make_cfg, transfer="build"), "debian:bookworm-slim") == (False, "")
    operator["arch"] = None  # save-load asked for: no probing, the build here says what is wrong
    assert transfer_choice(ctx_for(make_cfg, transfer="save-load"), "debian:bookworm-slim") == (
        True, "images.transfer: save-load"
    )  # fmt: skip


def test_the_local_target_never_sends_to_itself(make_cfg: ConfigFactory, operator: dict[str, Any]) -> None:
    cfg = make_cfg(target={"host": "local", "sudo": False})
    ctx = Context(cfg=cfg, connector=NoImages(), layout=HostLayout(), options=RunOptions("deploy"))
    ctx.facts.machine = "x86_64"
    assert transfer_choice(ctx, cfg.images.base_image) == (False, "")


# -- the images step's plan, one case a row (images.transfer: build) -------------


@dataclass(frozen=True)
class ImagesCase:
    id: str
    on_host: tuple[str, ...]  # "base", "gateway", "nginx", "certbot": images the host has
    here: bool = False  # this machine's Docker has the base image
    refresh: bool = False
    acme: bool = False
    changes: tuple[str, ...] = ()  # summary starts, in order
    kinds: tuple[str, ...] = ()  # one op each: a build ("docker build") or a Call


IMAGES = [
    ImagesCase("all there", ("base", "gateway", "nginx")),
    ImagesCase("a new host with the base: both built on the host", ("base",),
               changes=("build claudegate/gateway:", "build claudegate/nginx:"), kinds=("docker build", "docker build")),
    ImagesCase("no base on the host: pulled first", (), changes=(
        "pull the base image", "build claudegate/gateway:", "build claudegate/nginx:"),
        kinds=("call: pull", "docker build", "docker build")),
    ImagesCase("no base there, one here: sent", (), here=True, changes=(
        "send the base image", "build claudegate/gateway:", "build claudegate/nginx:"),
        kinds=("call: send", "docker build", "docker build")),
    ImagesCase("acme adds certbot's image", ("base", "gateway", "nginx"), acme=True,
               changes=("build claudegate/certbot:",), kinds=("docker build",)),
    ImagesCase("--refresh fetches the base again before building", ("base",), refresh=True, changes=(
        "pull the base image", "build claudegate/gateway:", "build claudegate/nginx:"),
        kinds=("call: pull", "docker build", "docker build")),
]  # fmt: skip


@pytest.mark.parametrize("case", IMAGES, ids=[c.id for c in IMAGES])
def test_images_plan(make_cfg: ConfigFactory, operator: dict[str, Any], case: ImagesCase) -> None:
    _images(make_cfg, operator, case)


def _images(make_cfg: ConfigFactory, operator: dict[str, Any], case: ImagesCase) -> set[str]:
    base = "debian:bookworm-slim"
    operator["images"] = {base} if case.here else set()
    sections: dict[str, Any] = {"images": {"base_image": base, "transfer": "build"}}
    if case.acme:
        sections["tls"] = {"mode": "acme", "email": "ops@example.com"}
    cfg = make_cfg(**sections)
    step = ImagesStep()
    tags = {c.name: c.tag(base) for c in step.contexts(context(cfg))}
    present = {base if name == "base" else tags[name] for name in case.on_host}

    def answer(argv: list[str]) -> Result | None:
        if argv[:3] == ["docker", "image", "inspect"]:
            return Result(0, b"sha256:x\n", b"") if argv[-1] in present else Result(1, b"", b"")
        if argv == find_spools():  # no images left on the host by a killed run
            return Result(0, b"", b"")
        return None

    ctx = context(cfg, answer, refresh=case.refresh, facts=HostFacts(machine="x86_64"))
    changes, read = plan(step, ctx)
    assert len(changes) == len(case.changes), [c.summary for c in changes]
    for change, want, op in zip(changes, case.changes, case.kinds, strict=True):
        assert change.summary.startswith(want), change.summary
        assert kinds(change)[0].startswith(op), kinds(change)
        build = change.ops[0]
        if isinstance(build, Run):  # --no-cache exactly when refreshing; the context comes on stdin
            assert ("--no-cache" in build.argv) == case.refresh and callable(build.input)
    return read


def test_the_images_cases_read_the_declared_facts(make_cfg: ConfigFactory, operator: dict[str, Any]) -> None:
    assert_declared(ImagesStep, [_images(make_cfg, operator, c) for c in IMAGES])


class SpoolHost(NoImages):
    """A fresh host that also answers the spool commands of the images sent ahead."""

    def __init__(self, *, spools: Sequence[str] = (), make_ok: bool = True) -> None:
        super().__init__()
        self.spools, self.make_ok = list(spools), make_ok
        self.ran: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: Input | None = None, sudo: bool = False,
            timeout: float | None = None, check: bool = False, **_: Any) -> Result:  # fmt: skip
        self.ran.append(list(argv))
        if list(argv) == make_spool():
            if self.make_ok:
                return Result(0, b"/var/tmp/claudegate-images.Ab12Cd34\n", b"")
            failed = Result(1, b"", b"mktemp: failed to create directory: No space left on device\n")
            if check:
                self.raise_failed(argv, failed)
            return failed
        if list(argv) == find_spools():
            return Result(0, "".join(f"{path}\n" for path in self.spools).encode(), b"")
        return super().run(argv, input=input, sudo=sudo, timeout=timeout, check=check)


def test_nothing_is_sent_ahead_in_a_dry_run_or_when_the_host_builds(
    make_cfg: ConfigFactory, operator: dict[str, Any]
) -> None:
    for ctx in (ctx_for(make_cfg, transfer="build"), ctx_for(make_cfg)):
        host = SpoolHost()
        ctx.connector = host
        # the second one: save-load, but only a plan
        ctx.options = RunOptions("deploy", dry_run=ctx.cfg.images.transfer != "build")
        start_images_ahead(ctx)
        assert ctx.state.images_ahead is None
        assert make_spool() not in host.ran  # nothing was made on the host


def test_a_spool_that_cannot_be_made_only_costs_the_overlap(make_cfg: ConfigFactory, operator: dict[str, Any]) -> None:
    ctx = ctx_for(make_cfg)
    ctx.connector = SpoolHost(make_ok=False)
    events: list[StepEvent] = []
    ctx.reporter = events.append
    start_images_ahead(ctx)  # no exception: the images step sends them after the install instead
    assert ctx.state.images_ahead is None
    notes = [e.message for e in events if e.kind == "note"]
    assert len(notes) == 1 and notes[0].startswith("could not start sending the images while Docker is installed")
    assert "No space left on device" in notes[0]
    assert [c for c in ImagesStep().plan(ctx) if "on this machine and send them in one" in c.summary]


def test_the_images_step_loads_what_was_sent_ahead_and_removes_stale_spools_only(
    make_cfg: ConfigFactory, operator: dict[str, Any]
) -> None:
    ctx = ctx_for(make_cfg)
    mine = "/var/tmp/claudegate-images.Ab12Cd34"
    stale = "/var/tmp/claudegate-images.killed99"
    ctx.connector = SpoolHost(spools=[stale, mine, "/var/tmp/claudegate-imagesX"])
    ahead = ImagesAhead(ctx, ImagesStep().contexts(ctx), base="debian:bookworm-slim", why="auto: test")
    ahead.spool = mine  # as start() sets it (not started: no thread, no build)
    ctx.state.images_ahead = ahead
    changes = ImagesStep().plan(ctx)
    summaries = [c.summary for c in changes]
    assert len(changes) == 2, summaries
    remove, load = changes
    # Only the directory a killed run left; never this run's own, nor a name outside the prefix.
    assert remove.summary == f"remove {stale} (images an interrupted run sent ahead)"
    assert isinstance(remove.ops[0], Run) and remove.ops[0].argv == ("rm", "-rf", "--", stale)
    assert load.summary.startswith("load claudegate/gateway:") and "sent while Docker was installed" in load.summary
    assert isinstance(load.ops[0], Call)
    assert not [s for s in summaries if "send them in one" in s]  # not built and sent a second time
