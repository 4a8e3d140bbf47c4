"""What each pytest-xdist worker ran, and when: a few lines at the end of every run.

CI runs ``-n 3 --dist loadgroup`` (.ci/run). Every test report carries its
start and stop; :class:`Timeline` (registered on the controller by
tests/conftest.py) collects them and prints each worker's busy time and when
its last test ended, and the longest work units (an ``xdist_group``, or a
lone test) with the worker and the span they ran in. So a run shows whether
a worker sat idle at the end while the other ran a long group. With
``CLAUDEGATE_TIMELINE=<file>`` it also writes one JSON line per test, which
``bench/suite_schedule.py`` replays on other worker counts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Span:
    """One test as a worker ran it: when it started and stopped (epoch seconds), all phases."""

    worker: str
    nodeid: str
    start: float
    stop: float
    seconds: float = 0.0

    @property
    def unit(self) -> str:
        """The work unit: the ``xdist_group`` (after ``@``), else the test itself."""
        nodeid = self.nodeid
        return nodeid.split("@")[-1] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


@dataclass(eq=False)  # a plugin: pytest keeps it in sets
class Timeline:
    """Collects the test reports on the controller; prints who ran what, when."""

    began: float = field(default_factory=time.time)
    spans: dict[str, Span] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        node = getattr(report, "node", None)  # the worker (pytest-xdist); none without workers
        worker = getattr(getattr(node, "gateway", None), "id", "main")
        span = self.spans.get(report.nodeid)
        if span is None:
            span = self.spans[report.nodeid] = Span(worker, report.nodeid, report.start, report.stop)
        span.start, span.stop = min(span.start, report.start), max(span.stop, report.stop)
        span.seconds += report.duration

    def summary(self, ended: float) -> list[str]:
        workers: dict[str, list[Span]] = {}
        for span in self.spans.values():
            workers.setdefault(span.worker, []).append(span)
        if not workers or set(workers) == {"main"}:  # a run without workers: nothing to balance
            return []
        lines = [f"workers ({ended - self.began:.0f} s from the start of the run):"]
        for worker, spans in sorted(workers.items()):
            busy = sum(s.seconds for s in spans)
            done = max(s.stop for s in spans) - self.began
            lines.append(f"  {worker}: {len(spans)} tests, busy {busy:.0f} s, last test ended at {done:.0f} s")
        units: dict[str, list[Span]] = {}
        for span in self.spans.values():
            units.setdefault(span.unit, []).append(span)
        longest = sorted(units.items(), key=lambda u: -sum(s.seconds for s in u[1]))[:12]
        lines.append("longest work units (seconds, worker, from-to seconds into the run):")
        for unit, spans in longest:
            first = min(s.start for s in spans) - self.began
            last = max(s.stop for s in spans) - self.began
            on = ",".join(sorted({s.worker for s in spans}))
            lines.append(f"  {sum(s.seconds for s in spans):6.1f} {on:4} {first:5.0f}-{last:<5.0f} {unit}")
        return lines

    def write(self, path: str) -> None:
        with open(path, "w") as out:
            for span in sorted(self.spans.values(), key=lambda s: s.start):
                row = {"worker": span.worker, "nodeid": span.nodeid, "unit": span.unit,
                       "start": round(span.start - self.began, 3), "stop": round(span.stop - self.began, 3),
                       "seconds": round(span.seconds, 3)}  # fmt: skip
                out.write(json.dumps(row) + "\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        ended = time.time()
        for line in self.summary(ended):
            terminalreporter.write_line(line)
        path = os.environ.get("CLAUDEGATE_TIMELINE")
        if path:
            self.write(path)
