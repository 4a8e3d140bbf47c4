"""The audit against a correctly configured local stack: every probe that can run holds."""

from __future__ import annotations

import pytest

from claudegate.audit import FAILED, run_audit
from tests.audit.conftest import AuditFactory
from tests.smoke.conftest import EdgeFactory

pytestmark = pytest.mark.timeout(300)


def test_every_probe_holds_on_a_good_stack(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    edge = make_edge("good", client_header_timeout=5, client_body_timeout=5)
    report = run_audit(audit_target(edge))
    print(report.table())
    failed = [r for r in report.results if r.verdict == FAILED]
    assert not failed, "\n".join(f"{r.name}: {r.detail}" for r in failed)
    assert report.held >= 15
