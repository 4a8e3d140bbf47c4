"""A gateway told to stop (SIGTERM: a deploy replacing it) lets open streams finish for drain_seconds."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

HDRS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 200, "stream": True,
        "messages": [{"role": "user", "content": "reply with 20 words"}]}  # fmt: skip


def _stream_then_stop(gw: GatewayProc, key: str) -> tuple[bytes, float]:
    """Open a stream, SIGTERM the gateway once its first event arrived; what the client got, and when it ended."""
    received = bytearray()
    started = threading.Event()
    with httpx.stream("POST", gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key}, json=BODY,
                      timeout=30) as response:  # fmt: skip
        assert response.status_code == 200
        try:
            for chunk in response.iter_raw():
                received += chunk
                if not started.is_set():
                    started.set()
                    assert gw.proc is not None
                    gw.proc.terminate()
        except httpx.HTTPError:
            pass  # cut off: what arrived is the answer
    return bytes(received), time.monotonic()


@pytest.mark.parametrize(("drain", "finishes"), [(15, True), (1, False)])
def test_open_streams_get_drain_seconds_after_sigterm(
    gateway_factory: GatewayFactory, fake: FakeAnthropic, drain: int, finishes: bool
) -> None:
    fake.state.configure(event_delay=0.15)  # ~20 words: about 3.5 s of stream
    gw = gateway_factory({"drain_seconds": drain})
    key = gw.create_key("streamer")
    stopped_at = time.monotonic()
    received, ended = _stream_then_stop(gw, key)
    assert (b"event: message_stop" in received) is finishes, received[-300:]
    if not finishes:
        assert ended - stopped_at < 4  # cut at the drain limit, not at the stream's end
    assert gw.proc is not None and gw.proc.wait(drain + 10) is not None  # and the process is gone once the stream is
