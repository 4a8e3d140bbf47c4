"""Every step's declared host facts are held to what its plan tests read (see ``tests/deploy/canned.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claudegate.deploy.engine import Step
from claudegate.deploy.steps.registry import STEP_TYPES


def test_every_step_has_canned_plan_cases_that_check_its_declaration() -> None:
    # A new step without a plan table (and its declaration check) fails here.
    text = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    unchecked = sorted(c.__name__ for c in STEP_TYPES.values() if f"assert_declared({c.__name__}," not in text)
    assert unchecked == []


def test_a_declared_fact_that_does_not_exist_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="names no host fact: curent"):

        class Typo(Step):
            name = "typo"
            reads = frozenset({"curent"})
