"""The migrate step's plan from canned facts: it changes nothing in a plan and says when it will run.

Its work (a one-shot container of the new gateway image running
``claudegate-gateway migrate``) happens in ``perform``; the e2e fleet test
(tests/deploy/test_e2e_multihost.py) runs it against PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from claudegate.deploy.steps.migrate import MigrateStep
from tests.deploy.canned import assert_declared, context, plan
from tests.deploy.conftest import ConfigFactory


@dataclass(frozen=True)
class MigrateCase:
    id: str
    state: bool  # deploy.yaml has a state: section
    migrate: bool  # this host is the one that migrates (a fleet's first)
    dry_run: bool
    note: bool  # the plan says the migration will run


CASES = [
    MigrateCase("one host on SQLite: nothing to migrate", state=False, migrate=True, dry_run=True, note=False),
    MigrateCase("state: the plan says it runs once", state=True, migrate=True, dry_run=True, note=True),
    MigrateCase("state, a later host of the fleet: not again", state=True, migrate=False, dry_run=True, note=False),
    MigrateCase("state, a real run: said when it runs, not in the plan", state=True, migrate=True, dry_run=False,
                note=False),
]  # fmt: skip


def _state(tmp_path: Path) -> dict[str, object]:
    secret = tmp_path / "pw"
    secret.write_text("x" * 32)
    secret.chmod(0o600)
    return {
        "redis": {"url": "redis://10.0.0.5:6379/0", "password_file": str(secret)},
        "postgres": {"url": "postgresql://claudegate@10.0.0.5:5432/claudegate", "password_file": str(secret),
                     "tls": "disable"},
    }


def _case(make_cfg: ConfigFactory, tmp_path: Path, case: MigrateCase) -> set[str]:
    cfg = make_cfg(state=_state(tmp_path)) if case.state else make_cfg()
    ctx = context(cfg, dry_run=case.dry_run, migrate=case.migrate)
    notes: list[str] = []
    ctx.reporter = lambda event: notes.append(event.message) if event.kind == "note" else None
    changes, read = plan(MigrateStep(), ctx)
    assert changes == []  # a plan never changes anything; the migration is perform's
    said = [n for n in notes if "migrate runs once" in n]
    assert bool(said) == case.note, notes
    return read


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_migrate_plan(make_cfg: ConfigFactory, tmp_path: Path, case: MigrateCase) -> None:
    _case(make_cfg, tmp_path, case)


def test_the_migrate_cases_read_the_declared_facts(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    assert_declared(MigrateStep, [_case(make_cfg, tmp_path, c) for c in CASES])
