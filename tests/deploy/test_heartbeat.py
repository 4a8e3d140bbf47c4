"""Heartbeats: a step that is quiet for a while still says what it is doing, every few seconds.

A canned long step (a ``Call`` that sleeps, as a silent ``apt-get`` inside a
build would) runs through the real engine; the events it produces, and the
CLI's stderr for the same run in a separate process, must have no gap longer
than the promise (5 s with the real setting).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import claudegate.deploy.progress as progress
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Step, run_steps
from claudegate.deploy.progress import StepEvent
from tests.deploy.conftest import ConfigFactory
from tests.deploy.test_engine import Recorder, make_ctx

REPO = Path(__file__).resolve().parents[2]


class Slow(Step):
    """Says one thing, then is silent for ``seconds`` (a long command with no output)."""

    name = "slow"
    title = "Slow"
    seconds = 1.5

    def plan(self, ctx: Context) -> list[Change]:
        return [] if getattr(self, "done", False) else [Change("wait", (Call("wait", self._wait),))]

    def _wait(self, ctx: Context) -> None:
        ctx.work("building gateway: RUN apt-get install python3")
        time.sleep(self.seconds)
        self.done = True


def test_a_quiet_step_sends_heartbeats_naming_what_it_does(
    make_cfg: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "HEARTBEAT_QUIET", 0.2)
    events: list[tuple[float, StepEvent]] = []
    busy = threading.Lock()
    overlaps: list[StepEvent] = []

    def reporter(event: StepEvent) -> None:
        # Two events at once would garble a terminal: the heartbeat must wait its turn.
        if not busy.acquire(blocking=False):
            overlaps.append(event)
            return
        try:
            events.append((time.monotonic(), event))
            time.sleep(0.01)
        finally:
            busy.release()

    ctx = make_ctx(make_cfg(), Recorder())
    ctx.reporter = reporter
    run_steps(ctx, [Slow()])
    ended = time.monotonic()
    beats = [e for _, e in events if e.heartbeat]
    assert overlaps == []
    assert len(beats) >= 4, [e.message for _, e in events]
    assert {(b.kind, b.step, b.title, b.index, b.total, b.unit) for b in beats} == {
        ("work", "slow", "Slow", 1, 1, "s")
    }
    assert all(b.message == "still building gateway: RUN apt-get install python3" for b in beats)
    assert [b.done for b in beats] == sorted(b.done or 0.0 for b in beats)  # the step's elapsed time grows
    stamps = [t for t, _ in events]
    assert max(b - a for a, b in itertools.pairwise(stamps)) < 0.2 + 0.2
    assert events[-1][1].kind == "finish"
    time.sleep(0.5)
    assert time.monotonic() - ended >= 0.5 and events[-1][1].kind == "finish"  # silent once the step is over


def test_a_busy_step_sends_no_heartbeat(make_cfg: ConfigFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "HEARTBEAT_QUIET", 0.3)

    class Chatty(Slow):
        def _wait(self, ctx: Context) -> None:
            for n in range(10):
                ctx.work(f"line {n}")
                time.sleep(0.1)
            self.done = True

    events: list[StepEvent] = []
    run_steps(make_ctx(make_cfg(), Recorder(), events=events), [Chatty()])
    assert [e for e in events if e.heartbeat] == []
    assert len([e for e in events if e.kind == "work"]) == 10


def test_a_failing_step_stops_its_heartbeat(make_cfg: ConfigFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "HEARTBEAT_QUIET", 0.1)

    class Breaks(Slow):
        def _wait(self, ctx: Context) -> None:
            time.sleep(0.35)
            raise RuntimeError("broken")

    events: list[StepEvent] = []
    with pytest.raises(RuntimeError):
        run_steps(make_ctx(make_cfg(), Recorder(), events=events), [Breaks()])
    assert any(e.heartbeat and e.message == "still working on Slow" for e in events)
    count = len(events)
    time.sleep(0.4)
    assert len(events) == count and events[-1].kind == "fail"
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]


def test_cli_stderr_has_a_line_at_least_every_5_seconds_off_a_terminal(tmp_path: Path) -> None:
    """The CLI's printer, the real 4 s setting, stderr to a pipe (as in CI): no gap over 5 s in 11 s of silence."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        "from claudegate.cli.output import StepPrinter\n"
        "from claudegate.deploy.engine import run_steps\n"
        "from tests.deploy.test_engine import Recorder, make_ctx\n"
        "from tests.deploy.test_heartbeat import Slow\n"
        "Slow.seconds = 11.0\n"
        "ctx = make_ctx(None, Recorder())\n"
        "ctx.reporter = StepPrinter()\n"
        "run_steps(ctx, [Slow()])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    stamps: list[float] = [time.monotonic()]
    lines: list[str] = []
    for raw in proc.stderr:
        stamps.append(time.monotonic())
        lines.append(raw.decode())
    assert proc.wait() == 0, "".join(lines)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 5.0, (gaps, lines)
    still = [line for line in lines if "still building gateway" in line]
    assert len(still) >= 2 and "s in Slow)" in still[-1], lines
    assert lines[-1].startswith("[1/1] Slow: changed (11.")
