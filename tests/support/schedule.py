"""How the suite is spread over pytest-xdist workers, and what each worker did.

CI runs ``-n 2 --dist loadgroup`` (.ci/run). xdist hands out *work units*
(an ``xdist_group``, or a lone test) in the order of their number of tests,
most first. That number says little about time here: the end-to-end modules
hold a handful of tests that run for minutes, the edge and gateway modules
hundreds that run for milliseconds. Ordered by count, a long end-to-end
group could start late and run on alone while the other worker sat idle.

:class:`LongestFirst` hands the work units out longest first (by
:data:`EXPECTED_SECONDS`, the CI run's own timings; an end-to-end module not
in it counts :data:`E2E_DEFAULT_SECONDS`) and then as xdist would: the many
short tests come last and fill the gaps, so both workers end together.

:class:`Timeline` collects what each worker ran and when (every test
report carries its start and stop), and prints a few lines at the end of
the run: each worker's busy time and when it finished, and the longest
groups with the worker and the span they ran in. With
``CLAUDEGATE_TIMELINE=<file>`` it also writes one JSON line per test.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pytest

#: Seconds a work unit took in a CI run (setup + call + teardown of its tests, summed), longest
#: first. Only the order matters: it is the order long units are handed out in. Refresh it from
#: the summary the :class:`Timeline` prints when a unit's time changes a lot.
EXPECTED_SECONDS: dict[str, int] = {
    "tests/deploy/test_e2e_multihost.py": 320,
    "tests/deploy/shared-stack": 250,
    "tests/deploy/test_e2e_acme_renewal.py": 220,
    "tests/deploy/test_e2e_fresh_server.py": 200,
    "tests/deploy/test_e2e_state_host.py": 140,
    "tests/edge/": 120,
    "tests/wizard/test_e2e_wizard.py": 75,
    "tests/deploy/test_e2e_images_ahead.py": 70,
    "tests/deploy/test_e2e_base_image.py": 56,
    "tests/install/test_install_sh.py": 50,
    "tests/audit/test_audit_local.py::test_every_probe_holds_on_a_good_stack": 38,
    "tests/install/test_newcomer_walkthrough.py": 37,
    "tests/audit/test_audit_fairness.py::test_a_first_come_inspection_queue_fails_the_probe": 27,
}
#: What an end-to-end module (a group whose name has ``/test_e2e_``) not in the table is taken to cost:
#: enough to start it before the short tests.
E2E_DEFAULT_SECONDS = 60


def unit_seconds(scope: str) -> int:
    """The expected seconds of a work unit (a group's name, or a lone test's id)."""
    if scope in EXPECTED_SECONDS:
        return EXPECTED_SECONDS[scope]
    return E2E_DEFAULT_SECONDS if "/test_e2e_" in scope and "::" not in scope else 0


def longest_first(workqueue: OrderedDict[str, dict[str, bool]]) -> None:
    """Reorder ``workqueue`` (scope -> its tests) in place: expected seconds, most first.

    The sort is stable: units of equal expectation (all the short ones) keep
    the order xdist gave them (most tests first, then collection order).
    """
    units = sorted(workqueue.items(), key=lambda unit: -unit_seconds(unit[0]))
    workqueue.clear()
    workqueue.update(units)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler for ``--dist loadgroup`` (``pytest_xdist_make_scheduler`` of tests/conftest.py)."""
    from xdist.scheduler import LoadGroupScheduling

    class LongestFirst(LoadGroupScheduling):  # type: ignore[misc]
        """xdist's loadgroup scheduling, with the work units handed out longest first."""

        _ordered = False

        def _assign_work_unit(self, node: Any) -> None:
            # schedule() fills the queue, then assigns the first unit to each node through here.
            if not self._ordered:
                self._ordered = True
                longest_first(self.workqueue)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


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
