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


def test_long_work_units_are_handed_out_first_and_the_rest_as_xdist_orders_them() -> None:
    """tests/support/schedule.py: expected seconds, most first; ties keep xdist's order."""
    from collections import OrderedDict

    from tests.support import schedule

    queue: OrderedDict[str, dict[str, bool]] = OrderedDict(
        (scope, dict.fromkeys(tests, False))
        for scope, tests in [
            ("tests/edge/", [f"e{i}" for i in range(100)]),  # many short tests: xdist's first
            ("tests/a/test_one.py::test_x", ["x"]),
            ("tests/deploy/test_e2e_brand_new.py", ["n1", "n2"]),  # an e2e module not in the table
            (conftest.STACK_GROUP, ["s1", "s2", "s3"]),
            ("tests/deploy/test_e2e_multihost.py", ["m1", "m2"]),
            ("tests/a/test_one.py::test_y", ["y"]),
        ]
    )
    schedule.longest_first(queue)
    seconds = schedule.EXPECTED_SECONDS
    tabled = sorted((s for s in queue if s in seconds), key=lambda s: -seconds[s])
    assert list(queue)[: len(tabled)] == tabled  # the table's, longest first
    rest = list(queue)[len(tabled) :]
    assert rest[0] == "tests/deploy/test_e2e_brand_new.py"  # then an e2e module the table misses
    assert rest[1:] == ["tests/a/test_one.py::test_x", "tests/a/test_one.py::test_y"]  # as xdist had them
    assert "tests/edge/" in tabled and tabled[0] == max(tabled, key=lambda s: seconds[s])


def test_every_unit_in_the_timing_table_exists() -> None:
    """A module renamed or removed must leave tests/support/schedule.py's table too."""
    from pathlib import Path

    from tests.support import schedule

    root = Path(__file__).resolve().parents[1]
    groups = {conftest.STACK_GROUP}
    for unit in schedule.EXPECTED_SECONDS:
        assert unit in groups or (root / unit.split("::")[0]).exists(), f"{unit}: no such module or group"
