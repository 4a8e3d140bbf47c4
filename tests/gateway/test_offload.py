"""A 30 MB body is parsed and filtered off the event loop: other clients do not wait for it."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from pathlib import Path

import httpx

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import make_gateway

HDRS = {"anthropic-version": "2023-06-01"}


def _big_body(size: int) -> bytes:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "lorem", "ipsum", "dolor", "sit", "amet", "café"]
    text = " ".join(rng.choice(words) for _ in range(size // 5))[:size]
    blocks = [{"type": "text", "text": text[i : i + 100_000]} for i in range(0, len(text), 100_000)]
    # A secret at the very end: the default filter must read all 30 MB to
    # find it, and then blocks the request, so nothing reaches the fake.
    blocks.append({"type": "text", "text": "my key AKIAIOSFODNN7EXAMPLE"})
    return json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5,
                       "messages": [{"role": "user", "content": blocks}]}, ensure_ascii=False).encode()  # fmt: skip


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def test_small_requests_are_not_delayed_by_a_30mb_body(tmp_path: Path, fake: FakeAnthropic) -> None:
    gw = make_gateway(tmp_path / "gw", fake.url, fake.api_key)
    gw.start()
    try:
        key = gw.create_key("k", "--models", "claude-haiku-*")
        # A small request the gateway answers itself after auth, route, scope
        # and parse (a model outside the scope): it measures the gateway alone.
        small = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                            "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
        headers = {**HDRS, "x-api-key": key, "content-type": "application/json"}
        big = _big_body(30_000_000)
        with httpx.Client(base_url=gw.url, headers=headers, timeout=60) as client:

            def timed() -> float:
                t = time.perf_counter()
                r = client.post("/v1/messages", content=small)
                assert r.status_code == 403, r.text
                return time.perf_counter() - t

            for _ in range(20):
                timed()
            baseline = [timed() for _ in range(300)]
            big_status: list[int] = []
            big_time: list[float] = []

            def send_big() -> None:
                with httpx.Client(base_url=gw.url, headers=headers, timeout=120) as other:
                    t = time.perf_counter()
                    big_status.append(other.post("/v1/messages", content=big).status_code)
                    big_time.append(time.perf_counter() - t)

            sender = threading.Thread(target=send_big)
            sender.start()
            during: list[float] = []
            while sender.is_alive():
                during.append(timed())
            sender.join()
        assert big_status == [400], big_status
        assert fake.state.requests == []
        # The big body keeps the worker busy for seconds; inline, every small
        # request in that time would wait for all of it.
        assert big_time[0] > 0.5 and len(during) >= 10, (big_time, len(during))
        base_p99, during_p99 = _p99(baseline), _p99(during)
        print(f"p99 small request: {base_p99 * 1000:.1f} ms alone, {during_p99 * 1000:.1f} ms during a "
              f"{len(big) >> 20} MB body ({big_time[0]:.1f} s, {len(during)} requests)")  # fmt: skip
        # Ratios, not absolute times: the machine is shared and noisy.
        assert during_p99 < base_p99 * 3 + 0.015, (base_p99, during_p99, max(during))
    finally:
        gw.stop()
