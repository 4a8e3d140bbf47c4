"""The engine, the plan text and the playbooks, with steps and a connector that touch nothing real."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from claudegate.connectors.base import Connector, Input, Result
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.diff import file_diff
from claudegate.deploy.engine import Call, Change, Put, Run, Step, run_steps
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.playbook import PLAYBOOKS_DIR, load_playbook
from claudegate.deploy.progress import StepEvent
from claudegate.deploy.results import DeployResult, StepReport
from claudegate.deploy.steps.registry import STEP_TYPES
from claudegate.errors import CommandFailed, ConfigError, DeployFailed
from tests.deploy.conftest import ConfigFactory


class Recorder(Connector):
    """Runs nothing: records argv and files; ``fail`` makes a command exit 1."""

    target = "fake"

    def __init__(self, fail: str | None = None) -> None:
        super().__init__()
        self.ran: list[list[str]] = []
        self.files: dict[str, bytes] = {}
        self.fail = fail

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
        check: bool = True,
    ) -> Result:
        self.ran.append(list(argv))
        result = Result(1 if self.fail in argv else 0, b"", b"boom\n")
        if check and not result.ok:
            self.raise_failed(argv, result)
        return result

    def put_file(self, path: str, data: bytes, mode: int, owner: str | None = None, **_: Any) -> None:
        self.files[path] = data


class Wants(Step):
    """A step that wants one file; it is "done" once the file exists."""

    name = "wants"
    title = "Wants a file"

    def plan(self, ctx: Context) -> list[Change]:
        connector = ctx.connector
        assert isinstance(connector, Recorder)
        if "/x" in connector.files:
            return []
        return [
            Change(
                "write /x", (Put("/x", b"x", 0o644), Run(("echo", "hi"))), diff=file_diff("x", None, b"x\n")
            )
        ]


class Fails(Step):
    name = "fails"
    title = "Fails"

    def plan(self, ctx: Context) -> list[Change]:
        return [Change("run false", (Run(("false",)),))]


class Performs(Step):
    name = "performs"
    title = "Performs"
    done = False

    def perform(self, ctx: Context) -> None:
        Performs.done = True


def make_ctx(
    cfg: Any, connector: Connector, *, dry_run: bool = False, events: list[StepEvent] | None = None
) -> Context:
    return Context(
        cfg=cfg,
        connector=connector,
        layout=HostLayout(),
        options=RunOptions("deploy", dry_run=dry_run),
        reporter=(events.append if events is not None else (lambda e: None)),
    )


def test_dry_run_plans_and_applies_nothing(make_cfg: ConfigFactory) -> None:
    connector = Recorder()
    Performs.done = False
    outcomes = run_steps(make_ctx(make_cfg(), connector, dry_run=True), [Wants(), Performs()])
    assert connector.ran == [] and connector.files == {}
    assert not Performs.done
    assert [o.changed for o in outcomes] == [True, False]
    assert outcomes[0].changes[0].summary == "write /x"


def test_apply_then_verify_then_perform_then_nothing_left(make_cfg: ConfigFactory) -> None:
    connector = Recorder()
    events: list[StepEvent] = []
    Performs.done = False
    outcomes = run_steps(make_ctx(make_cfg(), connector, events=events), [Wants(), Performs()])
    assert connector.files == {"/x": b"x"} and connector.ran == [["echo", "hi"]]
    assert Performs.done and outcomes[0].changed
    assert [(e.kind, e.step) for e in events] == [
        ("start", "wants"), ("plan", "wants"), ("finish", "wants"),
        ("start", "performs"), ("plan", "performs"), ("finish", "performs"),
    ]  # fmt: skip
    assert events[1].changes == ("write /x",) and events[0].total == 2
    again = run_steps(make_ctx(make_cfg(), connector), [Wants()])
    assert not again[0].changed


def test_a_failing_command_becomes_deploy_failed_naming_the_step(make_cfg: ConfigFactory) -> None:
    events: list[StepEvent] = []
    with pytest.raises(DeployFailed, match=r"step fails \(Fails\) failed") as failed:
        run_steps(make_ctx(make_cfg(), Recorder(fail="false"), events=events), [Fails()])
    assert isinstance(failed.value.__cause__, CommandFailed)
    assert events[-1].kind == "fail" and "boom" in events[-1].message


def test_a_step_that_stays_undone_fails_verification(make_cfg: ConfigFactory) -> None:
    class Never(Step):
        name = "never"
        title = "Never done"

        def plan(self, ctx: Context) -> list[Change]:
            return [Change("something", (Call("nothing", lambda c: None),))]

    with pytest.raises(DeployFailed, match="still not done after applying: something"):
        run_steps(make_ctx(make_cfg(), Recorder()), [Never()])


def test_a_broken_reporter_does_not_break_the_run(make_cfg: ConfigFactory) -> None:
    ctx = make_ctx(make_cfg(), Recorder())

    def broken(event: StepEvent) -> None:
        raise RuntimeError("display broke")

    ctx.reporter = broken
    assert run_steps(ctx, [Wants()])[0].changed


def test_plan_text_lists_every_change_and_the_diffs() -> None:
    steps = (
        StepReport("layout", "Directories", ("create /opt/claudegate (0755 0:0)",), (), 0.1),
        StepReport(
            "release",
            "Release files",
            ("upload release abc",),
            (file_diff("r/x.conf", b"a 1;\n", b"a 2;\n"),),
            0.1,
        ),
        StepReport("smoke", "Smoke test", (), (), 0.1),
    )
    result = DeployResult("deploy", True, "deploy@host:22", "abc", None, steps)
    assert result.changed_steps == ["layout", "release"]
    assert result.plan_text() == (
        "deploy on deploy@host:22: release abc\n"
        "  layout: create /opt/claudegate (0755 0:0)\n"
        "  release: upload release abc\n"
        "  2 step(s) would change: layout, release\n"
        "--- host/r/x.conf\n+++ new/r/x.conf\n@@ -1 +1 @@\n-a 1;\n+a 2;\n"
    )
    unchanged = DeployResult("deploy", False, "local", "abc", "abc", (steps[2],))
    assert unchanged.plan_text() == "deploy on local: release abc\n  no changes\n"
    assert unchanged.to_json()["changed"] is False


def test_file_diff() -> None:
    assert file_diff("a", b"same\n", b"same\n") == ""
    assert file_diff("a", None, b"new\n") == "--- /dev/null\n+++ new/a\n@@ -0,0 +1 @@\n+new\n"
    assert "No newline at end of file" in file_diff("a", b"x", b"y")
    assert file_diff("a", b"\0bin", b"other") == "Binary or large file a differs\n"


def test_the_playbooks_name_known_steps_in_order() -> None:
    deploy = load_playbook("deploy")
    assert [s.name for s in deploy.steps] == [
        "connect", "lock", "docker", "layout", "secrets", "tls", "release", "images", "networks",
        "migrate", "gateway", "clients", "switch", "acme", "renewal", "smoke", "cleanup", "unlock",
    ]  # fmt: skip
    assert [s.name for s in load_playbook("rollback").steps][3:6] == ["rollback", "gateway", "switch"]
    assert [s.name for s in load_playbook("uninstall").steps] == ["connect", "lock", "uninstall", "unlock"]
    assert [s.name for s in load_playbook("renew").steps] == ["connect", "lock", "acme", "renewal", "unlock"]
    for path in PLAYBOOKS_DIR.glob("*.yaml"):
        for step in load_playbook(path.stem).build():
            assert type(step) is STEP_TYPES[step.name]


def test_a_playbook_with_an_unknown_step_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\nsteps:\n  - connect\n  - swtich\n")
    with pytest.raises(ConfigError, match="unknown step 'swtich'") as bad:
        load_playbook("bad", tmp_path)
    assert bad.value.hint == "did you mean 'switch'?"
    (tmp_path / "shape.yaml").write_text("steps: {connect: 1}\n")
    with pytest.raises(ConfigError, match="non-empty 'steps' list"):
        load_playbook("shape", tmp_path)
    (tmp_path / "long.yaml").write_text("steps:\n  - step: smoke\n    with: {retries: 2}\n")
    assert load_playbook("long", tmp_path).steps[0].options == {"retries": 2}


def test_installs_docker_reads_the_docker_steps_change() -> None:
    from claudegate.deploy.results import DeployResult, StepReport
    from claudegate.deploy.steps.host import INSTALL_DOCKER

    def result(*changes: str) -> DeployResult:
        step = StepReport("docker", "Docker engine", changes, (), 0.0)
        return DeployResult("deploy", True, "local", None, None, (step,))

    assert result(INSTALL_DOCKER, "start the Docker engine").installs_docker
    assert not result("start the Docker engine").installs_docker
