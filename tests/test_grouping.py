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

