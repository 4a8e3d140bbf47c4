"""Plans of the networks, layout and secrets steps from canned host facts (no host, no Docker)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from claudegate.connectors.base import Connector, Input, Result
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Put, Run
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.files import SecretsStep
from claudegate.deploy.steps.host import LayoutStep
from claudegate.deploy.steps.network import NetworksStep
from claudegate.errors import DeployFailed
from claudegate.redact import Secret
from tests.deploy.conftest import ConfigFactory

Answer = Callable[[list[str]], Result | None]
MISSING = Result(1, b"", b"")


class Facts(Connector):
    """Answers read-only commands from ``answer``; anything else is an error (a plan changes nothing)."""

    target = "canned"

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer

    @property
    def is_root(self) -> bool:
        return True

    def run(
        self,
        argv: Sequence[str],
        *,
        input: Input | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = False,
        **_: Any,
    ) -> Result:
        found = self.answer(list(argv))
        if found is None:
            raise AssertionError(f"unexpected command in a plan: {argv}")
        return found


def ctx_for(make_cfg: ConfigFactory, answer: Answer) -> Context:
    return Context(cfg=make_cfg(), connector=Facts(answer), layout=HostLayout(), playbook="deploy")


def ok(text: str = "") -> Result:
    return Result(0, text.encode(), b"")


def test_the_internal_network_gets_no_host_address(make_cfg: ConfigFactory) -> None:
    ctx = ctx_for(make_cfg, lambda argv: MISSING if argv[:3] == ["docker", "network", "inspect"] else None)
    changes = NetworksStep().plan(ctx)
    internal = next(c for c in changes if "claudegate-internal" in c.summary)
    (op,) = internal.ops
    assert isinstance(op, Run)
    assert "--opt" in op.argv and "com.docker.network.bridge.inhibit_ipv4=true" in op.argv
    assert "--internal" in op.argv


def test_an_internal_network_with_a_host_address_stops_the_deploy(make_cfg: ConfigFactory) -> None:
    def answer(argv: list[str]) -> Result | None:
        if argv[:3] != ["docker", "network", "inspect"]:
            return None
        name = argv[-1]
        internal = name.endswith("-internal")
        doc = {
            "Name": name,
            "Internal": internal,
            "IPAM": {"Config": [{"Subnet": "10.213.71.0/28"}] if internal else []},
            "Options": {},  # made by an older claudegate: the bridge has a host address
        }
        return ok(json.dumps(doc))

    with pytest.raises(DeployFailed) as caught:
        NetworksStep().plan(ctx_for(make_cfg, answer))
    assert "host" in str(caught.value) and "without going through nginx" in str(caught.value)
    assert caught.value.hint is not None and "docker network rm claudegate-internal" in caught.value.hint


def test_layout_makes_the_secrets_group_first_and_gives_it_the_secrets_dir(make_cfg: ConfigFactory) -> None:
    def answer(argv: list[str]) -> Result | None:
        if argv[:2] == ["getent", "group"]:
            return MISSING
        if argv[3:4] == ["claudegate-stat"]:
            return ok()  # nothing exists yet
        return None

    changes = LayoutStep().plan(ctx_for(make_cfg, answer))
    assert changes[0].summary.startswith("create the system group claudegate")
    (op,) = changes[0].ops
    assert isinstance(op, Run) and op.argv[-1] == "claudegate" and "groupadd --system" in op.argv[2]
    secrets = next(c for c in changes if c.summary.startswith("create /opt/claudegate/shared/secrets "))
    assert secrets.summary.endswith("(0750 0:claudegate)")


def test_secrets_owned_by_uid_10001_are_given_to_root_and_the_group(make_cfg: ConfigFactory) -> None:
    key = "sk-ant-api03-plan-test"
    layout = HostLayout()

    def answer(argv: list[str]) -> Result | None:
        if argv == ["getent", "group", "claudegate"]:
            return ok("claudegate:x:998:\n")
        if argv[3:4] == ["claudegate-sha256"]:
            return ok(f"{hashlib.sha256(key.encode()).hexdigest()}  {layout.api_key_file}\n")
        if argv[3:4] == ["claudegate-stat"]:
            return ok(
                f"600 10001 10001 regular file|{layout.api_key_file}\n"
                f"600 10001 10001 regular file|{layout.pepper_file}\n"
            )
        return None

    ctx = ctx_for(make_cfg, answer)
    ctx.state.upstream_key = Secret(key)
    changes = SecretsStep().plan(ctx)
    assert [c.summary for c in changes] == [
        f"replace the Anthropic API key ({layout.api_key_file}, 0640, root:claudegate)",
        f"set {layout.pepper_file} to 0640, root:claudegate",
    ]
    (put,) = changes[0].ops
    assert isinstance(put, Put) and (put.mode, put.owner) == (0o640, "0:claudegate")
    (fix,) = changes[1].ops
    assert isinstance(fix, Run) and 'chown -h -- "$2" "$1"' in fix.argv[2] and fix.argv[-1] == "0:claudegate"

    # Already right: nothing to do.
    def settled(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-stat"]:
            return ok(
                f"640 0 998 regular file|{layout.api_key_file}\n640 0 998 regular file|{layout.pepper_file}\n"
            )
        return answer(argv)

    ctx = ctx_for(make_cfg, settled)
    ctx.state.upstream_key = Secret(key)
    assert SecretsStep().plan(ctx) == []
