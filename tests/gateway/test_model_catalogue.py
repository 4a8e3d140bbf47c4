"""Upstream's model catalogue is read once for every key for a short while (catalogue.py).

The cache itself in-process (a clock the test moves, reads the test
releases), then through a real gateway against the recording fake: many
list calls from several keys make one upstream read within the TTL, a new
one after it, 50 calls at once make one read even with nothing kept, an
upstream error is never kept as a catalogue, and every call still counts
against its key's rpm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from claudegate_gateway.catalogue import Catalogue, CatalogueCache, UpstreamAnswer
from tests.support.fake_anthropic import DEFAULT_MODELS, FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

HDRS = {"anthropic-version": "2023-06-01"}
ALL = [m.id for m in DEFAULT_MODELS if m.lifecycle in ("active", "deprecated")]
OPUS = [m for m in ALL if m.startswith("claude-opus-")]
SEL = ((), ("2023-06-01", ""))


def _catalogue(*ids: str) -> Catalogue:
    return Catalogue(tuple({"id": i} for i in ids), (("content-type", "application/json"),), "req_1")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the cache alone ---------------------------------------------------------------------------


def test_a_catalogue_is_kept_for_the_ttl_and_read_again_after() -> None:
    clock = _Clock()
    cache = CatalogueCache(30, clock=clock)
    reads: list[int] = []

    async def read() -> Catalogue:
        reads.append(1)
        return _catalogue(f"m-{len(reads)}")

    async def run() -> None:
        first, shared = await cache.get(SEL, read)
        assert not shared and [e["id"] for e in first.entries] == ["m-1"]  # type: ignore[union-attr]
        clock.now += 29.9
        again, shared = await cache.get(SEL, read)
        assert shared and again is first
        clock.now += 0.2  # past the TTL
        fresh, _ = await cache.get(SEL, read)
        assert [e["id"] for e in fresh.entries] == ["m-2"]  # type: ignore[union-attr]

    asyncio.run(run())
    assert len(reads) == 2


def test_concurrent_calls_share_one_read_even_with_nothing_kept() -> None:
    cache = CatalogueCache(0)
    started = 0

    async def run() -> None:
        nonlocal started
        release = asyncio.Event()

        async def read() -> Catalogue:
            nonlocal started
            started += 1
            await release.wait()
            return _catalogue("m")

        calls = [asyncio.ensure_future(cache.get(SEL, read)) for _ in range(50)]
        while started == 0:
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)  # every call is waiting on the one read
        release.set()
        answers = await asyncio.gather(*calls)
        assert len({id(a) for a, _ in answers}) == 1
        assert sum(not shared for _, shared in answers) == 1
        assert len(cache) == 0  # ttl 0: nothing kept once the read is done

    asyncio.run(run())
    assert started == 1 and cache.reads == 1


def test_a_caller_that_leaves_does_not_cancel_the_read_for_the_others() -> None:
    cache = CatalogueCache(30)

    async def run() -> None:
        release = asyncio.Event()

        async def read() -> Catalogue:
            await release.wait()
            return _catalogue("m")

        leaver = asyncio.ensure_future(cache.get(SEL, read))
        stayer = asyncio.ensure_future(cache.get(SEL, read))
        await asyncio.sleep(0)
        leaver.cancel()
        release.set()
        answer, _ = await stayer
        assert isinstance(answer, Catalogue)
        assert leaver.cancelled()

    asyncio.run(run())
    assert cache.reads == 1 and len(cache) == 1


def test_an_upstream_error_reaches_its_waiters_and_is_not_kept() -> None:
    cache = CatalogueCache(30)
    answers: list[Catalogue | UpstreamAnswer | Exception] = [
        UpstreamAnswer(529, b"{}", (), None), RuntimeError("unreachable"), _catalogue("m"),
    ]

    async def read() -> Catalogue | UpstreamAnswer:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def run() -> None:
        first, _ = await cache.get(SEL, read)
        assert isinstance(first, UpstreamAnswer) and len(cache) == 0
        with pytest.raises(RuntimeError):
            await cache.get(SEL, read)
        assert len(cache) == 0
        third, _ = await cache.get(SEL, read)
        assert isinstance(third, Catalogue) and len(cache) == 1
        kept, shared = await cache.get(SEL, read)
        assert kept is third and shared

    asyncio.run(run())
    assert cache.reads == 3


def test_the_selections_kept_are_bounded_least_recently_used_first() -> None:
    cache = CatalogueCache(30, max_selections=3)
    reads: list[str] = []

    def reader(name: str):  # type: ignore[no-untyped-def]
        async def read() -> Catalogue:
            reads.append(name)
            return _catalogue(name)

        return read

    def sel(n: int) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        return ((("beta", str(n)),), ("2023-06-01", ""))

    async def run() -> None:
        for n in range(3):
            await cache.get(sel(n), reader(str(n)))
        await cache.get(sel(0), reader("again-0"))  # kept; now the most recently used
        for n in range(3, 40):  # a client varying its query
            await cache.get(sel(n), reader(str(n)))
        assert len(cache) == 3
        await cache.get(sel(39), reader("again-39"))  # still kept
        await cache.get(sel(0), reader("again-0"))  # long gone

    asyncio.run(run())
    assert "again-39" not in reads and reads[-1] == "again-0"


# -- through a gateway ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(
        tmp_path_factory.mktemp("catalogue"), fake_anthropic.url, fake_anthropic.api_key, {"models_cache_seconds": 1}
    )
    proc.start()
    yield proc
    proc.stop()


def _list(gw: GatewayProc, key: str, query: str = "", **headers: str) -> httpx.Response:
    return httpx.get(gw.url + "/v1/models" + query, headers={**HDRS, "x-api-key": key, **headers}, timeout=30)


def _reads(gw: GatewayProc) -> int:
    """This gateway's upstream reads of the catalogue (its own counter: the fake is shared with other
    gateways of the session, and one of them may read /v1/models while this test runs)."""
    text = httpx.get(gw.internal_url + "/metrics", timeout=10).text
    (line,) = [x for x in text.splitlines() if x.startswith("claudegate_model_catalogue_reads_total ")]
    return int(line.split()[1])


def test_list_calls_from_every_key_share_one_read_within_the_ttl_and_read_again_after(
    gw: GatewayProc, fake: FakeAnthropic
) -> None:
    opus = gw.create_key("cat-opus", "--models", "claude-opus-*")
    full = gw.create_key("cat-full")
    base = _reads(gw)
    start = time.monotonic()
    r = _list(gw, opus, "?limit=1000")
    assert [m["id"] for m in r.json()["data"]] == OPUS
    assert r.headers["request-id"].startswith("req_")  # the call that made the read: upstream's id
    r = _list(gw, full, "?limit=1000")
    assert [m["id"] for m in r.json()["data"]] == ALL  # another key, another scope
    if (_reads(gw) - base) == 1:  # served from the kept catalogue: upstream's request id was the first call's
        assert "request-id" not in r.headers and r.headers["x-claudegate-request-id"]
    assert [m["id"] for m in _list(gw, opus, "?limit=2").json()["data"]] == OPUS[:2]
    if time.monotonic() - start < 0.9:  # the three calls came within the TTL (1 s): one read served them
        assert (_reads(gw) - base) == 1
    # After the TTL, a new read: the call that makes it ends no sooner than the TTL after the first
    # read (which began after `start`). Its end, not its start: on a loaded machine a call sent just
    # before the TTL reaches the gateway after it (a CI run saw one sent 0.74 s in, read at 1.01 s).
    while (_reads(gw) - base) < 2:
        assert _list(gw, opus).status_code == 200
        done = time.monotonic()
        assert done - start < 20, "the catalogue was never read again"
    assert done - start >= 1.0 - 0.05
    # A different selection (a beta header upstream sees) is a read of its own.
    before = _reads(gw)
    assert _list(gw, full, **{"anthropic-beta": "some-beta-2099-01-01"}).status_code == 200
    assert _reads(gw) == before + 1
    assert fake.state.requests[-1].headers.get("anthropic-beta") == "some-beta-2099-01-01"


def test_an_upstream_error_is_passed_on_and_not_kept(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("cat-error", "--models", "claude-opus-*")
    base = _reads(gw)
    fake.state.fail(529, "overloaded_error", "Overloaded", path="/v1/models")
    sel = "?lifecycle[]=deprecated"  # a selection no other test has kept
    r = _list(gw, key, sel.replace("[]", "%5B%5D"))
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error", r.text
    r = _list(gw, key, sel.replace("[]", "%5B%5D"))
    assert r.status_code == 200, r.text
    assert _reads(gw) - base == 2


def test_every_list_call_counts_against_rpm_though_upstream_is_not_asked(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("cat-rpm", "--rpm", "3")
    base = _reads(gw)
    answers = [_list(gw, key).status_code for _ in range(4)]
    assert answers[:3] == [200, 200, 200] and answers[3] == 429, answers
    assert _reads(gw) - base <= 3  # (the TTL may end between two calls on a slow machine)


def test_fifty_list_calls_at_once_make_one_upstream_read(
    tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic, fake: FakeAnthropic
) -> None:
    """Nothing kept (ttl 0): the read the first call starts is shared by the calls that come while it runs."""
    proc = make_gateway(
        tmp_path_factory.mktemp("catalogue0"), fake_anthropic.url, fake_anthropic.api_key,
        {"models_cache_seconds": 0, "max_in_flight_per_key": 64},  # 50 open calls from one key are allowed
    )
    proc.start()
    try:
        key = proc.create_key("cat-fifty")
        # Upstream takes 5 s on the first read (an honest margin for 50 calls to arrive on a loaded machine).
        fake.state.hang(seconds=5, path="/v1/models")

        async def fifty() -> list[int]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as client:
                calls = [client.get(proc.url + "/v1/models", headers={**HDRS, "x-api-key": key}) for _ in range(50)]
                return [r.status_code for r in await asyncio.gather(*calls)]

        assert asyncio.run(fifty()) == [200] * 50
        assert _reads(proc) == 1
        # And with nothing kept, the next call reads again.
        assert _list(proc, key).status_code == 200
        assert _reads(proc) == 2
    finally:
        proc.stop()
