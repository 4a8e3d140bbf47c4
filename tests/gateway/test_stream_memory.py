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
import resource
import socket
import subprocess
import sys
import time
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


def _stalled_stream(url: str, key: str) -> socket.socket:
    """A stream whose client takes in little and, after its first bytes, never reads again."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": "long reply please"}]}).encode()  # fmt: skip
    sock.sendall(
        f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 200 "), "the stream did not start"
    return sock


def test_a_client_that_stops_reading_holds_a_bounded_stream(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    # Upstream sends 12 MB per stream as fast as it may; each client reads its first bytes and
    # stops. Backpressure must reach upstream: the gateway holds its reader's bound (2 x 16 KiB,
    # plus one socket read) and its write bound (16 KiB) per stream, ~160 KB measured, not what
    # upstream sent (over 1 MB a stream before: aiohttp's 2 x 64 KiB reader bound was overrun by
    # whole socket reads while the stream waited, and the writer waited only every 64 KiB).
    gw = gateway_factory()
    key = gw.create_key("never-reads")
    assert gw.proc is not None
    piece = "x" * 16_000
    fake.state.script = [{"type": "text", "deltas": [piece] * 750}]
    for sock in [_stalled_stream(gw.url, key)]:  # warm: first-use allocations are not the streams' cost
        sock.close()
    before = rss_kb(gw.proc.pid)
    streams = [_stalled_stream(gw.url, key) for _ in range(8)]
    try:
        # No event says "every buffer is full": wait until the gateway stops growing.
        peak, still, deadline = rss_kb(gw.proc.pid), 0, time.monotonic() + 20
        while still < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
            now = rss_kb(gw.proc.pid)
            still = still + 1 if now <= peak else 0
            peak = max(peak, now)
        grown = peak - before
        assert grown < 8 * 512, f"the gateway grew {grown} KB with 8 stalled streams"
    finally:
        for sock in streams:
            sock.close()


def test_the_gateway_raises_its_open_files_limit_to_the_hard_limit() -> None:
    # Two descriptors a stream: at a soft limit of 1024 (a common default) the 510th stream fails.
    code = (
        "import resource\n"
        "from claudegate_gateway.app import raise_open_files\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_files(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    said, soft, hard = (int(v) for v in out)
    assert said == soft > 256
    assert soft == hard or hard == resource.RLIM_INFINITY
