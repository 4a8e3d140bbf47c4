"""What the suite's wall time would be on N pytest-xdist workers, from one run's per-test times.

Reads the file a run wrote with ``CLAUDEGATE_TIMELINE=<file>`` (one JSON
line per test: worker, work unit, start, stop, seconds; tests/conftest.py)
and replays ``--dist loadgroup`` as pytest-xdist 3.8 hands work out: the
work units (an ``xdist_group``, or a lone test) ordered by their number of
tests, most first, ties in collection order; each worker starts with two
units and takes the next one whenever two or fewer of its tests are left.

    CLAUDEGATE_TIMELINE=/tmp/timeline.jsonl .venv/bin/python -m pytest -q -n 2 --dist loadgroup
    .venv/bin/python bench/suite_schedule.py /tmp/timeline.jsonl --workers 1 2 3 4

It prints the sum of the tests' seconds, the longest units, and for each
worker count the simulated wall time and each worker's share. The tests'
seconds are taken as measured: on more workers than cores the CPU-bound
tests get slower, so a count above the run's own is a lower bound, which
only a real run can confirm.
"""

from __future__ import annotations

import argparse
import heapq
import json
import subprocess
import sys
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def collection_order() -> dict[str, int]:
    """Every test id (without its ``@group``) and its place in the collection."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    ids = [line.strip() for line in out.splitlines() if "::" in line]
    return {nodeid: index for index, nodeid in enumerate(ids)}


def units_of(rows: list[dict[str, Any]], order: dict[str, int]) -> OrderedDict[str, list[float]]:
    """The work units in collection order, each with its tests' seconds in the order they ran."""

    def bare(nodeid: str) -> str:
        return nodeid.rsplit("@", 1)[0] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid

    rows = sorted(rows, key=lambda r: (order.get(bare(r["nodeid"]), len(order)), r["start"]))
    units: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for row in rows:
        units.setdefault(row["unit"], []).append(row)
    return OrderedDict(
        (unit, [r["seconds"] for r in sorted(tests, key=lambda r: r["start"])]) for unit, tests in units.items()
    )


def simulate(units: OrderedDict[str, list[float]], workers: int) -> list[float]:
    """Each worker's finishing time under xdist's loadgroup rules."""
    queue = deque(sorted(units.items(), key=lambda unit: -len(unit[1])))  # stable: ties in collection order
    pending: list[deque[float]] = [deque() for _ in range(workers)]

    def assign(worker: int) -> None:
        pending[worker].extend(queue.popleft()[1])

    for worker in range(workers):
        if queue:
            assign(worker)
    for worker in range(workers):
        if queue and len(pending[worker]) <= 2:
            assign(worker)
    clock = [0.0] * workers
    events = [(0.0, worker) for worker in range(workers)]
    while events:
        now, worker = heapq.heappop(events)
        if not pending[worker]:
            continue
        clock[worker] = now + pending[worker].popleft()
        if queue and len(pending[worker]) <= 2:
            assign(worker)
        heapq.heappush(events, (clock[worker], worker))
    return clock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timeline", type=Path, help="the file a run wrote with CLAUDEGATE_TIMELINE")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.timeline.read_text().splitlines() if line.strip()]
    units = units_of(rows, collection_order())
    total = sum(sum(seconds) for seconds in units.values())
    workers_seen = sorted({r["worker"] for r in rows})
    print(f"{len(rows)} tests, {len(units)} work units, {total:.0f} s of tests (run on {', '.join(workers_seen)})")
    print("longest units:")
    for unit, seconds in sorted(units.items(), key=lambda u: -sum(u[1]))[:8]:
        print(f"  {sum(seconds):7.1f} s  {len(seconds):4d} tests  {unit}")
    for n in args.workers:
        clock = simulate(units, n)
        shares = ", ".join(f"{c:.0f}" for c in clock)
        print(f"{n} worker(s): wall {max(clock):.0f} s (lower bound {total / n:.0f} s); workers end at {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
