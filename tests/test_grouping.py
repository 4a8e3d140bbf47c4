"""The collection hook of tests/conftest.py: who shares the deployed stack, and in what order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests import conftest

AUDIT, DAY2 = conftest.STACK_MODULES


class FakeItem:
    """What the hook reads of a collected test: its id, its fixtures, its marks."""

    def __init__(self, nodeid: str, *fixtures: str, scope: str = "function") -> None:
        self.nodeid = nodeid
        defs = {name: [SimpleNamespace(scope=scope)] for name in fixtures}
        self._fixtureinfo = SimpleNamespace(name2fixturedefs=defs)
        self.marks: list[pytest.Mark] = []

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return next((m for m in self.marks if m.name == name), None)

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.marks.append(marker.mark)

    def group(self) -> Any:
        mark = self.get_closest_marker("xdist_group")
        return mark.args[0] if mark is not None else None


def _run_hook(items: list[FakeItem]) -> list[str]:
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    return [item.nodeid for item in items]


def test_the_stack_users_run_on_one_worker_in_the_fixed_order() -> None:
    items = [
        FakeItem("tests/a/test_first.py::test_x"),
        FakeItem(f"{DAY2}::test_smoke", "shared_stack"),
        FakeItem("tests/a/test_first.py::test_y"),
        FakeItem(f"{AUDIT}::test_probes", "shared_stack"),
        FakeItem(f"{DAY2}::test_keys", "shared_stack"),
        FakeItem(f"{AUDIT}::test_allowlist", "shared_stack"),
        FakeItem("tests/b/test_module.py::test_z", "gw", scope="module"),
    ]
    order = _run_hook(items)
    # The audit (which leaves the stack as deployed) before day 2 (which changes it for good),
    # each in file order, where the first of them was; the others keep their places.
    assert order == [
        "tests/a/test_first.py::test_x",
        f"{AUDIT}::test_probes",
        f"{AUDIT}::test_allowlist",
        f"{DAY2}::test_smoke",
        f"{DAY2}::test_keys",
        "tests/a/test_first.py::test_y",
        "tests/b/test_module.py::test_z",
    ]
    groups = {item.nodeid: item.group() for item in items}
    assert {groups[n] for n in order[1:5]} == {conftest.STACK_GROUP}  # one group: one deploy
    assert groups["tests/a/test_first.py::test_x"] is None  # spread one by one
    assert groups["tests/b/test_module.py::test_z"] == "tests/b/test_module.py"  # its module's fixture


def test_a_module_not_in_the_order_cannot_use_the_stack() -> None:
    items = [FakeItem("tests/deploy/test_e2e_new.py::test_x", "shared_stack")]
    with pytest.raises(pytest.UsageError, match="STACK_MODULES"):
        _run_hook(items)


def test_the_timeline_says_what_each_worker_did_and_the_longest_units() -> None:
    """tests/support/schedule.py: the lines printed at the end of a run with workers."""
    from types import SimpleNamespace

    from tests.support.schedule import Timeline

    timeline = Timeline(began=1000.0)

    def report(worker: str, nodeid: str, start: float, stop: float) -> Any:
        node = SimpleNamespace(gateway=SimpleNamespace(id=worker))
        return SimpleNamespace(node=node, nodeid=nodeid, start=start, stop=stop, duration=stop - start)

    group = "tests/deploy/test_e2e_x.py"
    for phase_start, phase_stop in ((1010.0, 1040.0), (1040.0, 1050.0)):  # setup, call: one test
        timeline.pytest_runtest_logreport(report("gw0", f"{group}::test_a@{group}", phase_start, phase_stop))
    timeline.pytest_runtest_logreport(report("gw0", f"{group}::test_b@{group}", 1050.0, 1070.0))
    timeline.pytest_runtest_logreport(report("gw1", "tests/a/test_one.py::test_x", 1010.0, 1012.0))
    lines = timeline.summary(ended=1080.0)
    assert lines[0] == "workers (80 s from the start of the run):"
    assert "  gw0: 2 tests, busy 60 s, last test ended at 70 s" in lines
    assert "  gw1: 1 tests, busy 2 s, last test ended at 12 s" in lines
    longest = lines[lines.index("longest work units (seconds, worker, from-to seconds into the run):") + 1]
    assert longest.split() == ["60.0", "gw0", "10-70", group]
    # Without workers (one process) there is nothing to balance: no lines.
    alone = Timeline(began=0.0)
    alone.pytest_runtest_logreport(SimpleNamespace(nodeid="t::x", start=1.0, stop=2.0, duration=1.0))  # type: ignore[arg-type]
    assert alone.summary(ended=3.0) == []
