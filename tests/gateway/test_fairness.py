"""One key's large bodies cannot slow another key's requests (issue 17, section 2).

The real gateway process against the recording fake: a key limited to 1
request a minute sends four 8 MB count_tokens bodies at once; another
key's 300 KB request (large enough to go to an inspection worker too) must
take about what it takes on an idle gateway. Then the same without the rate
limit (the workers' round robin alone), and the bound on the body bytes one
key may hold in the gateway.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time

import httpx
import pytest

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.fairqueue import BodyBytes, FairTurns
from claudegate_gateway.loopshare import LoopShare
from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

HDRS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
COUNT = "/v1/messages/count_tokens"


def _count_body(size: int, word: str) -> bytes:
    text = (word + " ") * (size // (len(word) + 1))
    blocks = [{"type": "text", "text": text[i : i + 100_000]} for i in range(0, len(text), 100_000)]
    return json.dumps(
        {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": blocks}]}
    ).encode()


def _timed_post(url: str, key: str, body: bytes) -> tuple[int, float]:
    with httpx.Client(base_url=url, headers={**HDRS, "x-api-key": key}, timeout=120) as client:
        t = time.perf_counter()
        status = client.post(COUNT, content=body).status_code
        return status, time.perf_counter() - t


def _medium_latencies(url: str, key: str, body: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        status, took = _timed_post(url, key, body)
        assert status == 200
        out.append(took)
    return out


def _flood(url: str, key: str, body: bytes, n: int) -> tuple[list[threading.Thread], list[tuple[int, float]]]:
    results: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: results.append(_timed_post(url, key, body))) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_a_1_rpm_key_s_8mb_bodies_do_not_delay_another_key(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    bulk = gw.create_key("bulk", "--rpm", "1")
    other = gw.create_key("other")
    big, medium = _count_body(8_000_000, "lorem"), _count_body(300_000, "ipsum")
    _medium_latencies(gw.url, other, medium, 3)  # warm: the workers start with the first large body
    idle = _medium_latencies(gw.url, other, medium, 7)
    threads, bulk_results = _flood(gw.url, bulk, big, 4)
    time.sleep(0.3)  # all four have arrived and one is being inspected
    during = _medium_latencies(gw.url, other, medium, 7)
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in bulk_results)
    # The rate is checked before a byte of the body is read: three are refused at once.
    assert statuses == [200, 429, 429, 429], statuses
    refused = [took for s, took in bulk_results if s == 429]
    admitted = [took for s, took in bulk_results if s == 200]
    added = max(during) - statistics.median(idle)
    print(f"300 KB request: idle median {statistics.median(idle) * 1000:.0f} ms, max beside four 8 MB bodies "
          f"{max(during) * 1000:.0f} ms; the admitted 8 MB body took {admitted[0]:.2f} s")  # fmt: skip
    assert max(refused) < admitted[0], (refused, admitted)
    # Before: 3-4 s (every body parsed in turn by one worker; the first request
    # behind them waits for all four). The bound is for a shared, noisy machine
    # (a pristine run beside three workers of deploys saw one request at 0.56 s,
    # the other six under 0.08 s) and still far below the queue it guards against.
    assert added < 1.0, (idle, during)
    # Upstream saw the one admitted 8 MB body and every medium one, nothing of the refused three.
    sizes = [len(r.body) for r in fake.state.requests_for(COUNT)]
    assert sum(size > 1_000_000 for size in sizes) == 1 and len(sizes) == 1 + 3 + 7 + 7, sizes


def test_turns_go_round_robin_so_a_flooding_key_holds_one_worker_at_most(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    bulk = gw.create_key("bulk")  # no rate limit: only the turns keep it fair
    other = gw.create_key("other")
    big, medium = _count_body(8_000_000, "lorem"), _count_body(300_000, "ipsum")
    _medium_latencies(gw.url, other, medium, 3)
    idle = _medium_latencies(gw.url, other, medium, 5)
    threads, bulk_results = _flood(gw.url, bulk, big, 4)
    time.sleep(0.3)
    during = _medium_latencies(gw.url, other, medium, 5)
    for t in threads:
        t.join()
    assert sorted(s for s, _ in bulk_results) == [200] * 4
    slowest_bulk = max(took for _, took in bulk_results)
    print(f"300 KB request beside four unlimited 8 MB bodies: max {max(during) * 1000:.0f} ms "
          f"(idle median {statistics.median(idle) * 1000:.0f} ms); the four took up to {slowest_bulk:.2f} s")  # fmt: skip
    # First come first served, the medium request would wait for all four
    # parses; with turns it waits for at most one, and with two or more
    # workers (one kept from the flooding key) for none.
    assert max(during) < slowest_bulk / 3, (during, slowest_bulk)


def _slow_sender(port: int, key: str, declared: int) -> socket.socket:
    """A request that declares `declared` body bytes and sends only a few: it stays in the gateway."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {COUNT} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"model": ')
    return sock


def test_the_body_bytes_one_key_holds_are_bounded(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory({"max_body_bytes_per_key": 1_000_000})
    a, b = gw.create_key("a"), gw.create_key("b")
    holding = _slow_sender(gw.port, a, 700_000)
    try:
        time.sleep(0.3)
        # The declared length is claimed before reading: a second body of the
        # same key does not fit, another key's does.
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            second = client.post(COUNT, content=_count_body(400_000, "x"), headers={**HDRS, "x-api-key": a})
            assert second.status_code == 429, second.text
            err = second.json()
            assert err["type"] == "error" and err["error"]["type"] == "rate_limit_error"
            assert second.headers["retry-after"] == "1"
            assert (
                client.post(
                    COUNT, content=_count_body(400_000, "x"), headers={**HDRS, "x-api-key": b}
                ).status_code
                == 200
            )
            # One body over the per-key bound alone: a 413, before it is read.
            alone = client.post(COUNT, content=_count_body(1_100_000, "x"), headers={**HDRS, "x-api-key": b})
            assert alone.status_code == 413 and alone.json()["error"]["type"] == "request_too_large"
    finally:
        holding.close()
    # The held request ended (client gone): its bytes are given back.
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        for _ in range(50):
            r = client.post(COUNT, content=_count_body(400_000, "x"), headers={**HDRS, "x-api-key": a})
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
    # A lying Content-Length cannot get around it: a chunked body declares
    # nothing and is claimed from its real size once read.
    holding = _slow_sender(gw.port, a, 700_000)
    try:
        time.sleep(0.3)

        def chunks() -> object:
            body = _count_body(400_000, "x")
            for i in range(0, len(body), 65536):
                yield body[i : i + 65536]

        with httpx.Client(base_url=gw.url, timeout=30) as client:
            r = client.post(COUNT, content=chunks(), headers={**HDRS, "x-api-key": a})  # type: ignore[arg-type]
            assert r.status_code == 429, r.text
    finally:
        holding.close()


# -- the two mechanisms on their own -------------------------------------------


async def test_fair_turns_serve_keys_round_robin_and_keep_a_worker_for_others() -> None:
    turns = FairTurns(2)
    order: list[str] = []
    gate = asyncio.Event()

    async def job(name: str) -> str:
        order.append(name)
        await gate.wait()
        return name

    def start(key: str, i: int) -> asyncio.Task[str]:
        return asyncio.create_task(turns.run(key, lambda: job(f"{key}{i}")))

    tasks = [start("a", i) for i in range(4)]
    await asyncio.sleep(0)
    tasks += [start("b", i) for i in range(2)]
    tasks.append(start("c", 0))
    await asyncio.sleep(0.01)
    # Key a came first with four jobs but holds one of the two workers: b got the other.
    assert order == ["a0", "b0"] and turns.held("a") == 1 and turns.busy == 2
    gate.set()
    await asyncio.gather(*tasks)
    # Then the keys in turn, each key's oldest job first: never a's three in
    # a row while b and c wait, though a queued them first.
    assert order == ["a0", "b0", "a1", "b1", "c0", "a2", "a3"], order
    assert turns.busy == 0 and turns.waiting() == 0


async def test_a_waiter_that_gives_up_leaves_no_turn_behind() -> None:
    turns = FairTurns(1)
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    first = asyncio.create_task(turns.run("a", hold))
    await asyncio.sleep(0)
    second = asyncio.create_task(turns.run("b", hold))
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    gate.set()
    await first
    assert turns.busy == 0 and turns.waiting() == 0
    assert await turns.run("c", lambda: asyncio.sleep(0, "ok")) == "ok"


def test_body_bytes_claims_grow_and_are_given_back() -> None:
    bound = BodyBytes(1000)
    one = bound.claim("k", 600)
    with pytest.raises(GatewayError) as busy:
        bound.claim("k", 500)
    assert busy.value.status == 429
    with pytest.raises(GatewayError) as alone:
        bound.claim("other", 1001)
    assert alone.value.status == 413
    other = bound.claim("other", 1000)  # per key: another key's room is its own
    with pytest.raises(GatewayError):
        one.grow(1001)
    one.grow(900)
    assert bound.held("k") == 900
    one.release()
    one.release()  # twice is harmless
    other.release()
    assert bound.held("k") == 0 and bound.held("other") == 0


def test_loop_share_pauses_a_key_over_its_share_and_forgets_idle_keys() -> None:
    share = LoopShare(share=0.25, burst=0.004)
    assert share.charge("k", 0.002, now=100.0) == 0.0  # under the burst: no pause
    pause = share.charge("k", 0.010, now=100.0)  # 12 ms of loop at once: 8 ms over, at 25 %
    assert pause == pytest.approx(0.032)
    assert share.charge("other", 0.001, now=100.0) == 0.0  # another key's account is its own
    # The account drains at the share: 48 ms later it is back to nothing.
    assert share.debt("k", now=100.048) == pytest.approx(0.0, abs=1e-9)
    assert share.charge("k", 0.001, now=100.2) == 0.0
    share.forget_idle(now=200.0)
    assert share.debt("k", now=200.0) == 0.0 and not share._debt
    assert share.charge("k", 1.0, now=300.0) == pytest.approx(
        0.05
    )  # one pause is capped; the next charge rechecks
