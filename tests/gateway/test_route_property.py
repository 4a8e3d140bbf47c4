"""Differential property test of the route table, against the running gateway.

For generated request targets (percent-encodings in either hex case, case
variants, doubled and back slashes, dot segments, ``;`` parameters, Unicode
look-alikes, fragments, query strings), either the gateway refuses and the
recording upstream receives nothing, or upstream receives exactly one
request whose raw path is byte for byte the client's path and the path the
gateway audited (the one its scope check saw).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from claudegate_gateway.routes import OPERATIONS
from tests.edge.rawhttp import raw_exchange, req
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

LITERALS = ["v1", "messages", "count_tokens", "models", "batches", "files", "content", "results", "cancel"]
IDS = ["msgbatch_01", "file_011C", "claude-sonnet-4-6", "x", "A-b_9"]
ODD = [".", "..", "", "%2e", "%2E%2E", "%2f", "%2F", "%5c", "%00", ";x=1", "é", "\uff0f", "\u2215", "\\", " ", "~", "*"]
CANONICAL = re.compile(r"/v1(?:/[A-Za-z0-9_-]+)+")


def _mangle(segment: str, how: str, rng: st.DataObject) -> str:
    if not segment:
        return segment
    i = rng.draw(st.integers(0, len(segment) - 1))
    ch = segment[i]
    if how == "pct":
        hexed = rng.draw(st.sampled_from([f"%{ord(ch):02X}", f"%{ord(ch):02x}"]))
        return segment[:i] + hexed + segment[i + 1 :]
    if how == "case":
        return segment[:i] + ch.swapcase() + segment[i + 1 :]
    if how == "param":
        return segment + rng.draw(st.sampled_from([";", ";x", ";x=1"]))
    if how == "unicode":
        return segment[:i] + rng.draw(st.sampled_from(["é", "ｍ", "\u200b", "\u0435"])) + segment[i + 1 :]
    return segment


@st.composite
def targets(draw: st.DrawFn) -> tuple[str, str]:
    """A real operation's path, then none to a few of the tricks a client might try."""
    rng = draw(st.data())
    op = draw(st.sampled_from(OPERATIONS))
    segments = op.template.format(**{n: draw(st.sampled_from(IDS)) for n in op.param_names}).split("/")[1:]
    seps = ["/"] * len(segments)
    tail = ""
    for _ in range(draw(st.integers(0, 3))):
        trick = draw(st.sampled_from(["mangle", "insert", "sep", "tail"]))
        i = draw(st.integers(0, len(segments) - 1))
        if trick == "mangle":
            segments[i] = _mangle(segments[i], draw(st.sampled_from(["pct", "case", "param", "unicode"])), rng)
        elif trick == "insert":
            segments.insert(i, draw(st.sampled_from(LITERALS + IDS + ODD)))
            seps.insert(i, "/")
        elif trick == "sep":
            seps[i] = draw(st.sampled_from(["//", "\\", "/./", "/x/../", "%2F"]))
        else:
            tail = draw(st.sampled_from(["/", "#f", "/.", ";", "%20", "/..", "?"]))
    path = "".join(sep + seg for sep, seg in zip(seps, segments, strict=True)) + tail
    query = draw(st.sampled_from(["", "", "", "beta=true", "limit=5", "x=1", "beta=true&beta=true", "lim%69t=2",
                                  "after_id=a&limit=3", "beta=tru%65"]))  # fmt: skip
    method = draw(st.sampled_from([op.method] * 6 + ["GET", "POST", "DELETE", "PUT"]))
    return method, path + ("?" + query if query else "")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("prop"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProc) -> str:
    return gw.create_key("any")  # every endpoint: only the route table stands in the way


BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=targets())
def test_forwarded_path_is_exactly_the_inspected_path(
    gw: GatewayProc, key: str, fake_anthropic: FakeAnthropic, case: tuple[str, str]
) -> None:
    method, target = case
    fake = fake_anthropic
    fake.state.clear_requests()
    body = BODY.encode() if method == "POST" else b""
    headers = [f"x-api-key: {key}", "anthropic-version: 2023-06-01", "connection: close"]
    if body:
        headers += ["content-type: application/json", f"content-length: {len(body)}"]
    payload = req(method, "\x00", *headers, body=body).replace(b"\x00", target.encode(), 1)
    response = raw_exchange(gw.port, None, payload)
    seen = list(fake.state.requests)
    if not seen:
        if response.status == 200:
            # An owned list: answered from the gateway's own index, never upstream.
            # This key owns nothing, so whatever the cursor, the page is empty.
            event("answered by the gateway")
            page = json.loads(response.body)
            assert page["data"] == [] and page["has_more"] is False and page["first_id"] is None, target
            assert target.split("#")[0].split("?")[0] in ("/v1/files", "/v1/messages/batches"), target
            return
        event("refused")
        assert response.status >= 400, (target, response.status)
        return
    event("forwarded")
    assert len(seen) == 1, [(r.method, r.raw_path) for r in seen]
    up = seen[0]
    client_path = target.split("#")[0].split("?")[0]
    audited = gw.record(response.headers)
    # Byte for byte: what the client sent, what the scopes saw, what upstream got.
    assert up.raw_path == client_path == audited["path"], (target, up.raw_path, audited["path"])
    assert CANONICAL.fullmatch(up.raw_path), up.raw_path
    assert up.method == method == audited["method"] and audited["operation"]
    sent_query = parse_qsl(target.split("#")[0].partition("?")[2], keep_blank_values=True)
    got_query = parse_qsl(up.raw_query, keep_blank_values=True)
    assert len({n for n, _ in got_query}) == len(got_query), (target, up.raw_query)
    op = next(o for o in OPERATIONS if o.name == audited["operation"])
    assert op.owner_action != "list", target  # lists never ask upstream
    if audited["operation"] == "models.list":
        # The gateway pages the scoped catalogue itself (modelscope.py): it reads upstream's
        # whole list, a page of 1000; the client's own paging never goes upstream.
        # The client's selection (lifecycle, beta) goes along as sent; its paging does not.
        own = {(n, v) for n, v in got_query if n not in ("limit", "after_id")}
        assert ("limit", "1000") in got_query and own <= set(sent_query), (target, up.raw_query)
        return
    assert set(got_query) <= set(sent_query), (target, up.raw_query)
