"""The audit-log proof, from canned records: what counts as proof that a refused request reached nothing."""

from __future__ import annotations

from typing import Any

import pytest

from claudegate.audit import FAILED, HELD, AuditTarget, probes_auth
from claudegate.audit.context import Run
from claudegate.audit.probes_auth import upstream_proof
from claudegate.probes.wire import Answer


def _run(records: list[dict[str, Any]], ids: list[str]) -> Run:
    run = Run.open(AuditTarget(base_url="https://gw.test", audit_records=lambda: records))
    run.refused_ids = [(rid, f"POST trick {i}") for i, rid in enumerate(ids)]
    return run


def test_refused_at_the_gateway_or_at_nginx_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    paused: list[float] = []
    monkeypatch.setattr(probes_auth, "pause", paused.append)
    records = [{"request_id": "req_gw1", "upstream_request_id": None, "input_tokens": 0, "output_tokens": 0}]
    assert upstream_proof(_run(records, ["req_gw1", "req_edge9"])).verdict == HELD
    # nginx's id is never in the gateway's log: nothing waits for it.
    assert paused == []


def test_a_gateway_record_written_late_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    paused: list[float] = []
    monkeypatch.setattr(probes_auth, "pause", paused.append)
    record = {"request_id": "req_gw3", "upstream_request_id": "req_011abc"}
    reads: list[int] = []

    def reader() -> list[dict[str, Any]]:
        reads.append(1)
        return [record] if len(reads) >= 3 else []  # the gateway wrote it after two looks

    run = Run.open(AuditTarget(base_url="https://gw.test", audit_records=reader))
    run.refused_ids = [("req_gw3", "POST trick 0"), ("req_edge4", "POST trick 1")]
    result = upstream_proof(run)
    assert len(paused) == 2 and result.verdict == FAILED and "reached the upstream API" in result.detail


def test_a_record_with_an_upstream_id_or_tokens_fails() -> None:
    records = [{"request_id": "req_gw1", "upstream_request_id": "req_011abc"},
               {"request_id": "req_gw2", "upstream_request_id": None, "input_tokens": 12}]
    result = upstream_proof(_run(records, ["req_gw1", "req_gw2"]))
    assert result.verdict == FAILED and "trick 0" in result.detail and "trick 1" in result.detail


def test_a_gateway_or_upstream_id_missing_from_the_log_is_no_proof() -> None:
    # Rotated away, or upstream's own id (an error upstream produced): neither proves anything.
    result = upstream_proof(_run([], ["req_gw7", "req_011upstream"]))
    assert result.verdict == FAILED and "not in the gateway's audit log" in result.detail


def test_the_gateway_header_names_the_request_before_an_upstream_body_id() -> None:
    answer = Answer(400, {"content-type": "application/json", "x-claudegate-request-id": "req_gw5"},
                    b'{"type":"error","error":{"type":"invalid_request_error","message":"x"},"request_id":"req_011up"}')
    assert answer.request_id == "req_gw5"
