"""Upstream's error bodies: they may quote the request back, so the rules see them too.

An error from upstream (a 400 naming the offending value, a 404 quoting an
id, a proxy's HTML page) can hold text from the request. The request rules
ran on the request already, but a field they only logged, a rule a client
is exempt from on requests but not responses, or text upstream derived from
the request reach the client here. So an error body is checked by the
client's request rules (what the request held) and its response rules:
every string of a JSON error is walked (redacted in place), a body that is
not JSON is checked as one text. A block, or a match in a body that cannot
be rewritten, replaces the message with one naming the rule; the status and
error type stay upstream's.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from claudegate_gateway.errors import error_body
from claudegate_gateway.filters.policy import FilterPolicy
from claudegate_gateway.filters.response import ResponseFilter, Tally
from claudegate_gateway.filters.results import Verdict

__all__ = ["filter_error_body"]


def filter_error_body(
    data: bytes, policy: FilterPolicy, rf: ResponseFilter | None, request_id: str
) -> tuple[bytes, list[Verdict]]:
    """The error body to send (``data`` itself when nothing matched) and the verdicts (as response verdicts)."""
    out, verdicts = _filter(data, policy, rf, request_id)
    return out, [replace(v, direction="response") for v in verdicts]


def _filter(
    data: bytes, policy: FilterPolicy, rf: ResponseFilter | None, request_id: str
) -> tuple[bytes, list[Verdict]]:
    try:
        doc: Any = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        text = data.decode("utf-8", "replace")
        probe = {"messages": [{"role": "user", "content": text}]}
        result = policy.apply(probe)
        tally = Tally()
        if rf is not None:
            rf.other_block(copy.deepcopy(probe), tally)
        verdicts = [*result.verdicts, *tally.verdicts()]
        if not verdicts or all(v.action == "log" for v in verdicts):
            return data, verdicts
        rule = next(v.rule for v in verdicts if v.action != "log")
        return _withheld(doc, rule, request_id), verdicts
    result = policy.apply(doc)
    verdicts = list(result.verdicts)
    if result.blocked is not None:
        return _withheld(doc, result.blocked.rule, request_id), verdicts
    out = copy.deepcopy(result.body) if result.changed else copy.deepcopy(doc)
    changed = result.changed
    if rf is not None:
        tally = Tally()
        changed |= rf.other_block(out, tally)
        verdicts += tally.verdicts()
        if tally.blocked is not None:
            return _withheld(doc, tally.blocked.name, request_id), verdicts
    if not changed:
        return data, verdicts
    return json.dumps(out, ensure_ascii=False).encode(), verdicts


def _withheld(doc: Any, rule: str, request_id: str) -> bytes:
    error = doc.get("error") if isinstance(doc, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    if not isinstance(kind, str) or not kind.isascii() or len(kind) > 64:
        kind = "api_error"
    message = f"The upstream error message was withheld by the gateway's filter rule {rule!r}"
    return error_body(kind, message, request_id)
