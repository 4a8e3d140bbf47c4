"""A running stream holds nothing of its request (issue 17: streams cost little memory).

Once upstream has answered, the gateway drops its copy of the request body
and gives the body's bytes back to the key's bound (``max_body_bytes_per_key``):
a Claude Code request is tens or hundreds of KB, and a stream can run for
minutes. Checked on the real gateway process against the recording fake,
from outside: by the bound (more streams of large bodies than the bound
holds are served at once) and by the process's memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

HDRS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY_TEXT = 200_000  # characters of prompt in each request: under the 256 KiB offload threshold


def stream_body(tag: str) -> bytes:
    text = tag + " " + "lorem ipsum dolor sit amet " * (BODY_TEXT // 27)
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()  # fmt: skip


@contextlib.contextmanager
def open_streams(url: str, key: str, n: int) -> Iterator[list[httpx.Response]]:
    """n streams, each read up to its first event and then left open (the client still there)."""
    with contextlib.ExitStack() as stack:
        opened: list[httpx.Response] = []
        for i in range(n):
            client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
            r = stack.enter_context(
                client.stream("POST", "/v1/messages", content=stream_body(f"s{i}"), headers={**HDRS, "x-api-key": key})
            )
            if r.status_code != 200:
                r.read()
                raise AssertionError(f"stream {i}: {r.status_code} {r.text[:300]}")
            first = next(r.iter_raw())
            assert b"message_start" in first, first[:200]
            opened.append(r)
        yield opened


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_running_streams_hold_no_body_bytes_of_their_key(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    # Three ~200 KB requests are more than this bound; while being read each fits, and
    # once upstream answered its bytes are given back, so all three stream at once.
    gw = gateway_factory({"max_body_bytes_per_key": 500_000})
    key = gw.create_key("big-prompts")
    fake.state.event_delay = 1.0
    with open_streams(gw.url, key, 3) as streams:
        assert len(streams) == 3
        seen = [r for r in fake.state.requests if r.path == "/v1/messages"]
        assert len(seen) == 3 and all(len(r.body) > BODY_TEXT for r in seen)
        # The bound still holds for a body that is being read: one over it alone is a 413.
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            big = client.post("/v1/messages", content=b" " * 600_000, headers={**HDRS, "x-api-key": key})
            assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large", big.text


def test_a_streams_request_body_is_not_kept_while_it_runs(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    # 30 open streams of ~200 KB requests (the key's in-flight cap is 32): 6 MB if the gateway kept each body (it did, twice,
    # before: aiohttp's cached read and the handler's frames). Its resident memory may grow by
    # the streams' own cost (~30 KB each) and the allocator's slack, not by the bodies.
    gw = gateway_factory()
    key = gw.create_key("claude-code-like")
    fake.state.event_delay = 1.0
    assert gw.proc is not None
    with open_streams(gw.url, key, 2):  # warm: first-use allocations are not the streams' cost
        pass
    before = rss_kb(gw.proc.pid)
    with open_streams(gw.url, key, 30) as streams:
        grown = rss_kb(gw.proc.pid) - before
        assert len(streams) == 30
    assert grown < 30 * BODY_TEXT // 1024 // 2, f"the gateway grew {grown} KB with 30 streams open"
