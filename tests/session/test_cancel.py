"""The cancel token, the one cancellable sleep, and the engine stopping between steps and ops."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from claudegate.control import cancel
from claudegate.control.cancel import NEVER, CancelToken
from claudegate.control.controls import RunControls, current, using
from claudegate.control.interaction import ConsentQuestion
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call, Change, Run, Step, run_steps
from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import HostLayout
from claudegate.errors import Cancelled, Declined, ExitCode
from claudegate.session.scripted import ScriptedInteraction
from tests.deploy.conftest import ConfigFactory
from tests.deploy.test_engine import Recorder


def test_sleep_wakes_at_once_when_another_thread_cancels() -> None:
    token = CancelToken()
    threading.Timer(0.2, token.cancel, args=("stop",)).start()
    started = time.monotonic()
    with pytest.raises(Cancelled) as stopped:
        cancel.sleep(30, token)
    assert time.monotonic() - started < 2
    assert stopped.value.message == "stop" and stopped.value.exit_code == ExitCode.CANCELLED == 130


def test_sleep_without_a_token_just_sleeps_and_never_cannot_be_cancelled() -> None:
    started = time.monotonic()
    cancel.sleep(0.05)
    cancel.sleep(0.05, NEVER)
    assert time.monotonic() - started >= 0.1
    with pytest.raises(RuntimeError):
        NEVER.cancel()


def test_cancel_is_idempotent_and_keeps_the_first_reason() -> None:
    token = CancelToken()
    assert not token.cancelled
    token.cancel("first")
    token.cancel("second")
    assert token.cancelled and token.reason == "first"
    with pytest.raises(Cancelled, match="first"):
        token.raise_if_cancelled()


def test_controls_are_per_thread_and_restored() -> None:
    token = CancelToken()
    seen: list[CancelToken] = []
    with using(RunControls(cancel=token)):
        assert current().cancel is token
        worker = threading.Thread(target=lambda: seen.append(current().cancel))
        worker.start()
        worker.join()
    assert seen == [NEVER] and current().cancel is NEVER


class Journaled(Step):
    """Starts a journal (as the lock step does) and changes nothing."""

    name = "journaled"
    title = "Journal"

    def perform(self, ctx: Context) -> None:
        ctx.state.journal = Journal(playbook="deploy", release="r1", fallback="r0")


class CancelsFromAnotherThread(Step):
    name = "first"
    title = "First"

    def __init__(self, token: CancelToken, **options: Any) -> None:
        super().__init__(**options)
        self.token = token

    def plan(self, ctx: Context) -> list[Change]:
        return [Change("wait", (Call("wait", self._wait),))]

    def _wait(self, ctx: Context) -> None:
        threading.Timer(0.1, self.token.cancel).start()
        for _ in range(100):  # a wait loop, as the steps have
            ctx.sleep(0.5)

    def verify(self, ctx: Context) -> None:
        return None


class Never(Step):
    name = "never"
    title = "Never planned"

    def plan(self, ctx: Context) -> list[Change]:
        raise AssertionError("a cancelled run must not plan the next step")


def _ctx(make_cfg: ConfigFactory, connector: Recorder, controls: RunControls) -> Context:
    return Context(cfg=make_cfg(), connector=connector, layout=HostLayout(), options=RunOptions("deploy"), controls=controls)


def test_engine_stops_inside_a_wait_and_records_it_in_the_journal(make_cfg: ConfigFactory) -> None:
    token = CancelToken()
    connector = Recorder()
    events: list[str] = []
    ctx = _ctx(make_cfg, connector, RunControls(cancel=token))
    ctx.reporter = lambda e: events.append(f"{e.kind}:{e.step}")
    started = time.monotonic()
    with pytest.raises(Cancelled) as stopped:
        run_steps(ctx, [Journaled(), CancelsFromAnotherThread(token), Never()])
    assert time.monotonic() - started < 5
    assert stopped.value.step == "first"
    assert events[-1] == "fail:first" and "start:never" not in events
    saved = Journal.from_bytes(connector.files[HostLayout().journal])
    assert saved is not None and saved.interrupted  # the next run resumes it
    assert saved.outcome == "cancelled in step first" and saved.fallback == "r0"


def test_engine_checks_the_token_before_each_step(make_cfg: ConfigFactory) -> None:
    token = CancelToken()
    token.cancel()
    connector = Recorder()
    with pytest.raises(Cancelled):
        run_steps(_ctx(make_cfg, connector, RunControls(cancel=token)), [Never()])
    assert connector.ran == []


class NeedsConsent(Step):
    name = "needs"
    title = "Needs a yes"

    def plan(self, ctx: Context) -> list[Change]:
        if any(argv == ["install"] for argv in self.ran(ctx)):
            return []
        question = ConsentQuestion("install-docker", ctx.connector.target, "install docker.io")
        return [Change("install", (Run(("install",)),), consent=question)]

    @staticmethod
    def ran(ctx: Context) -> Sequence[list[str]]:
        connector = ctx.connector
        assert isinstance(connector, Recorder)
        return connector.ran


def test_a_change_that_needs_consent_is_asked_and_a_no_changes_nothing(make_cfg: ConfigFactory) -> None:
    connector = Recorder()
    no = ScriptedInteraction(consent_answers=False)
    with pytest.raises(Declined) as declined:
        run_steps(_ctx(make_cfg, connector, RunControls(interaction=no)), [NeedsConsent()])
    assert connector.ran == [] and declined.value.flag == "--yes"
    assert [q.kind for q in no.asked] == ["consent"]

    yes = ScriptedInteraction(consent_answers={"install-docker": True})
    run_steps(_ctx(make_cfg, connector, RunControls(interaction=yes)), [NeedsConsent()])
    assert connector.ran == [["install"]] and len(yes.asked) == 1


def test_a_dry_run_asks_nothing(make_cfg: ConfigFactory) -> None:
    connector = Recorder()
    asked = ScriptedInteraction(consent_answers=False)
    ctx = _ctx(make_cfg, connector, RunControls(interaction=asked))
    ctx.options = RunOptions("deploy", dry_run=True)
    run_steps(ctx, [NeedsConsent()])
    assert asked.asked == [] and connector.ran == []
