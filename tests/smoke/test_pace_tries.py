"""stream.unbuffered / edge.stream_unbuffered: a late reader is not a buffering proxy.

The streams here come from an httpx mock transport, chunk by chunk in real time: a paced one (one
event a chunk, 100 ms apart) and a bunched one (all events in one chunk after 0.5 s), which is
what the client reads both behind nginx's proxy_buffering and when its thread was late to read the
socket. Real nginx with proxy_buffering on is tested in tests/smoke/test_stack.py and
tests/audit/test_audit_weakened.py; this pins the rule between tries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from claudegate.probes.pace import PACE_EVENTS, PACE_INTERVAL, PACE_PATH, PACE_TRIES, check_pace
from claudegate.probes.verdict import Failed
from claudegate.probes.wire import Endpoint

EP = Endpoint(domain="gw.test", connect_host="127.0.0.1", https_port=443, http_port=80)


def _event(seq: int) -> bytes:
    return b"event: claudegate_pace\ndata: " + json.dumps({"type": "claudegate_pace", "seq": seq}).encode() + b"\n\n"


def _paced() -> Iterator[bytes]:
    for seq in range(PACE_EVENTS):
        if seq:
            time.sleep(PACE_INTERVAL)
        yield _event(seq)


def _bunched() -> Iterator[bytes]:
    time.sleep(PACE_INTERVAL * (PACE_EVENTS - 1))
    yield b"".join(_event(seq) for seq in range(PACE_EVENTS))


def _client(streams: list[str]) -> tuple[httpx.Client, list[str]]:
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == PACE_PATH
        kind = streams[min(len(served), len(streams) - 1)]
        served.append(kind)
        body = _paced() if kind == "paced" else _bunched()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx.Client(transport=httpx.MockTransport(handler)), served


def test_a_paced_stream_passes_on_the_first_try() -> None:
    http, served = _client(["paced"])
    detail = check_pace(EP, http, "key", 10)
    assert served == ["paced"] and "not buffered" in detail and "try" not in detail


@pytest.mark.parametrize("late", [1, PACE_TRIES - 1])
def test_a_reader_late_on_some_tries_passes_and_says_so(late: int) -> None:
    http, served = _client(["bunched"] * late + ["paced"])
    detail = check_pace(EP, http, "key", 10)
    assert served == ["bunched"] * late + ["paced"]
    assert f"on try {late + 1}" in detail and "not buffered" in detail, detail


def test_bunched_on_every_try_is_buffered() -> None:
    http, served = _client(["bunched"])
    with pytest.raises(Failed) as failed:
        check_pace(EP, http, "key", 10)
    assert served == ["bunched"] * PACE_TRIES
    assert f"on each of {PACE_TRIES} tries" in str(failed.value) and "proxy_buffering" in str(failed.value)


def test_a_refusal_is_not_tried_again() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": "no"}})

    with pytest.raises(Failed, match="404"):
        check_pace(EP, httpx.Client(transport=httpx.MockTransport(handler)), "key", 10)
    assert calls == [1]
