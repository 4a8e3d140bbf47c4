"""How the images step picks its transfer (issue 14): ``auto`` builds here and sends when this
machine's Docker can make the host's images; the plan says which and why. Canned host facts;
this machine's engine is replaced by what each case needs (its real use is in the e2e deploy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import claudegate.deploy.steps.images as images
from claudegate.connectors.base import Connector, Input, Result
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Run
from claudegate.deploy.images_ahead import find_spools
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.images import ImagesStep, transfer_choice
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
    ctx = Context(cfg=cfg, connector=NoImages(), layout=HostLayout(), playbook="deploy")
    ctx.machine = machine
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
    changes = ImagesStep().plan(ctx)
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
    changes = ImagesStep().plan(ctx)
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
    ctx = Context(cfg=cfg, connector=NoImages(), layout=HostLayout(), playbook="deploy")
    ctx.machine = "x86_64"
    assert transfer_choice(ctx, cfg.images.base_image) == (False, "")
