"""The Images step's base image with no registry: the failed pull becomes a question, and a yes
builds it with the shipped debootstrap recipe (issue 14). Canned host facts, no Docker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from claudegate.connectors.base import Connector, Input, Result
from claudegate.control.controls import RunControls
from claudegate.deploy.base_image import pull_or_build
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.images import ImagesStep
from claudegate.errors import Declined, DeployFailed
from claudegate.session.scripted import ScriptedInteraction
from tests.deploy.conftest import ConfigFactory

BASE = "debian:bookworm-slim"
NO_REGISTRY = b"Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host\n"


class Host(Connector):
    """This machine as the local target, answering from canned results; records every command."""

    target = "local"

    def __init__(self, *, pull_ok: bool, debootstrap: bool, build_ok: bool = True) -> None:
        super().__init__()
        self.pull_ok, self.debootstrap, self.build_ok = pull_ok, debootstrap, build_ok
        self.ran: list[list[str]] = []

    @property
    def is_root(self) -> bool:
        return True

    def run(self, argv: Sequence[str], *, input: Input | None = None, sudo: bool = False,
            timeout: float | None = None, check: bool = False, **_: Any) -> Result:  # fmt: skip
        argv = list(argv)
        self.ran.append(argv)
        if argv[:3] == ["docker", "image", "pull"]:
            return Result(0, b"", b"") if self.pull_ok else Result(1, b"", NO_REGISTRY)
        if argv[:2] == ["sh", "-c"] and "debootstrap" in argv[2]:
            return Result(0 if self.debootstrap else 1, b"", b"")
        if argv[0] == "env" and argv[-1].endswith("build-base-image.sh"):
            return Result(0 if self.build_ok else 1, b"", b"E: Failed getting release file\n")
        if argv[:3] == ["docker", "image", "inspect"]:
            return Result(1, b"", b"")
        raise AssertionError(f"unexpected command: {argv}")


def ctx_for(make_cfg: ConfigFactory, host: Host, consent: bool) -> tuple[Context, ScriptedInteraction]:
    cfg = make_cfg(target={"host": "local", "sudo": False})
    asked = ScriptedInteraction(consent_answers=consent)
    ctx = Context(cfg=cfg, connector=host, layout=HostLayout(), options=RunOptions("deploy"),
                  controls=RunControls(interaction=asked))  # fmt: skip
    return ctx, asked


def test_the_plan_names_the_offer(make_cfg: ConfigFactory) -> None:
    ctx, _ = ctx_for(make_cfg, Host(pull_ok=True, debootstrap=True), consent=False)
    changes = ImagesStep().plan(ctx)
    pull = next(c for c in changes if "base image" in c.summary)
    assert "offer to build it with debootstrap" in pull.summary
    assert isinstance(pull.ops[0], Call)


def test_a_pull_that_works_asks_nothing(make_cfg: ConfigFactory) -> None:
    host = Host(pull_ok=True, debootstrap=True)
    ctx, asked = ctx_for(make_cfg, host, consent=False)
    pull_or_build(ctx, BASE)
    assert asked.asked == []
    assert [a[:3] for a in host.ran] == [["docker", "image", "pull"]]


def test_no_registry_and_a_no_builds_nothing(make_cfg: ConfigFactory) -> None:
    host = Host(pull_ok=False, debootstrap=True)
    ctx, _ = ctx_for(make_cfg, host, consent=False)
    with pytest.raises(Declined) as info:
        pull_or_build(ctx, BASE)
    assert "debootstrap" in str(info.value) and "no such host" in str(info.value)
    assert not [a for a in host.ran if a[0] == "env"]


def test_no_registry_and_a_yes_builds_it_with_the_shipped_recipe(make_cfg: ConfigFactory) -> None:
    host = Host(pull_ok=False, debootstrap=True)
    ctx, asked = ctx_for(make_cfg, host, consent=True)
    pull_or_build(ctx, BASE)
    assert [q.topic for q in asked.asked] == ["build-base-image"]  # type: ignore[union-attr]
    (build,) = [a for a in host.ran if a[0] == "env"]
    assert f"CLAUDEGATE_BASE_IMAGE={BASE}" in build and build[-1].endswith("assets/base/build-base-image.sh")


def test_without_debootstrap_the_error_says_how_to_get_it(make_cfg: ConfigFactory) -> None:
    host = Host(pull_ok=False, debootstrap=False)
    ctx, _ = ctx_for(make_cfg, host, consent=True)
    with pytest.raises(DeployFailed) as info:
        pull_or_build(ctx, BASE)
    assert "debootstrap is not installed" in str(info.value) and "apt-get install debootstrap" in (info.value.hint or "")


def test_a_failed_build_shows_why(make_cfg: ConfigFactory) -> None:
    host = Host(pull_ok=False, debootstrap=True, build_ok=False)
    ctx, _ = ctx_for(make_cfg, host, consent=True)
    with pytest.raises(DeployFailed) as info:
        pull_or_build(ctx, BASE)
    assert "Failed getting release file" in str(info.value)
