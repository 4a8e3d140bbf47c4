"""The bytes of downloads the gateway holds while it filters them are bounded for the whole process.

A download is held before its status line (its first MiB; a compressed
file, archive or PDF whole, up to 64 MiB, plus its filtered copy), so many
parallel downloads could exhaust the gateway's memory. ``max_held_download_bytes``
(deploy.yaml ``limits.held_downloads_mib``) bounds them all together: a
download that would go past it is refused with Anthropic's 529
``overloaded_error`` and a ``retry-after``, and everything a download held
is given back however it ends. One key may hold at most
``max_held_download_bytes_per_key`` of them (deploy.yaml
``limits.held_downloads_per_key_mib``), a 429 past it: a key holding its
share leaves the rest for the others.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.fairqueue import HeldBytes
from tests.conftest import GatewayFactory
from tests.gateway.test_download_filters import AWS, RULES, V, download, model_made
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

MIB = 1 << 20


def test_claims_are_bounded_in_all_and_given_back() -> None:
    held = HeldBytes(10, "things")
    a, b = held.claim(), held.claim()
    a.resize(6)
    with pytest.raises(GatewayError) as refused:
        b.resize(5)
    assert refused.value.error_type == "overloaded_error" and refused.value.headers == {"retry-after": "2"}
    assert held.held == 6 and b.size == 0  # a refused claim takes nothing
    b.resize(4)
    a.resize(2)  # less: given back
    assert held.held == 6
    b.resize(8)
    a.release()
    b.release()
    b.release()
    assert held.held == 0


def test_one_key_takes_at_most_its_share() -> None:
    held = HeldBytes(10, "things", per_key=6)
    a1, a2, b = held.claim("a"), held.claim("a"), held.claim("b")
    a1.resize(4)
    with pytest.raises(GatewayError) as refused:
        a2.resize(3)  # 7 > a's 6, though the process has room
    assert refused.value.error_type == "rate_limit_error" and refused.value.headers == {"retry-after": "2"}
    assert held.held_by("a") == 4 and a2.size == 0
    a2.resize(2)  # a at its share
    b.resize(4)  # b still fits beside it
    with pytest.raises(GatewayError) as full:
        b.resize(5)  # within b's share, past the process's bound
    assert full.value.error_type == "overloaded_error"
    a1.release()
    a2.resize(1)
    b.release()
    a2.release()
    assert held.held == 0 and held.held_by("a") == held.held_by("b") == 0
    assert HeldBytes(10, "things", per_key=99).per_key == 10  # a share is at most the whole


def _held(gw: GatewayProc) -> int:
    text = httpx.get(gw.internal_url + "/metrics", timeout=10).text
    found = re.search(r"^claudegate_held_download_bytes (\d+)$", text, re.M)
    assert found is not None
    return int(found.group(1))


_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")


def _noise_gzip(size: int) -> bytes:
    """A gzip of at least ``size`` bytes no rule matches, inside or as bytes (random letters, stored:
    compressed bytes could spell a match by chance, and be redacted)."""
    inside = os.urandom(size // 2).hex().translate(_LETTERS).encode()
    data = gzip.compress(inside, compresslevel=0)
    assert len(data) >= size
    return data


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> GatewayProc:
    return gateway_factory({**RULES, "max_held_download_bytes": 8 * MIB})


def test_a_download_past_the_bound_is_refused_and_smaller_ones_pass(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("team")
    # Held whole (a gzip): its bytes, their filtered copy and the joined copy: about 12 MiB > 8 MiB.
    big = model_made(gw, fake, key, _noise_gzip(4 * MIB))
    r = download(gw, key, big)
    assert r.status_code == 529, r.content[:200]
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert r.headers["retry-after"] == "2" and body["request_id"]
    assert _held(gw) == 0
    # Within the bound: a gzip held whole (6 MiB), a plain file past the held first MiB (it streams on).
    small = _noise_gzip(2 * MIB)
    plain = (b"quarterly report\n" * (3 * MIB // 17))[: 3 * MIB]
    for data in (small, plain):
        r = download(gw, key, model_made(gw, fake, key, data))
        assert r.status_code == 200 and r.content == data
    # A download blocked by a rule while held gives its bytes back too.
    r = download(gw, key, model_made(gw, fake, key, gzip.compress(f"project falcon {AWS}\n".encode() * 1000)))
    assert r.status_code == 400, r.text
    assert _held(gw) == 0


def test_parallel_downloads_stay_within_the_bound(gw: GatewayProc, fake: FakeAnthropic) -> None:
    """Eight 2 MiB gzips at once (6 MiB held each while inspected): never more than 8 MiB held, so
    those that would go past it are refused, and the rest are served whole."""
    key = gw.create_key("team")
    data = _noise_gzip(2 * MIB)
    ids = [model_made(gw, fake, key, data) for _ in range(8)]

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return list(await asyncio.gather(*(
                client.get(f"{gw.url}/v1/files/{i}/content", headers={**V, "x-api-key": key}) for i in ids
            )))  # fmt: skip

    answers = asyncio.run(all_at_once())
    for r in answers:
        if r.status_code == 529:
            assert r.json()["error"]["type"] == "overloaded_error"
        else:
            assert r.status_code == 200 and r.content == data
    assert any(r.status_code == 200 for r in answers)
    assert _held(gw) == 0


def _wait_held(gw: GatewayProc, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (now := _held(gw)) < at_least:
        assert time.monotonic() < deadline, f"the gateway holds {now} bytes, waited for {at_least}"
        time.sleep(0.05)
    return now


def test_a_key_holding_its_share_leaves_room_for_another_key(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    """A key's gzip downloads stall upstream mid-way (held whole while inspected: 4.5 MiB held for
    2.25 MiB sent); its second one would take it past its 8 MiB share and is refused with 429, so
    another key's 6 MiB still fits in the 12 MiB bound. Without the share the hog held 9 MiB
    and the other key got 529."""
    gw = gateway_factory({**RULES, "max_held_download_bytes": 12 * MIB, "max_held_download_bytes_per_key": 8 * MIB})
    hog, other = gw.create_key("hog"), gw.create_key("other")
    resume = threading.Event()
    stalled = _noise_gzip(5 * MIB // 2)  # 7.5 MiB held at its end: within the share
    hog_ids = [model_made(gw, fake, hog, stalled) for _ in range(2)]
    for file_id in hog_ids:
        fake.state.files[file_id].stall_after, fake.state.files[file_id].resume = 9 * MIB // 4, resume
    small = _noise_gzip(2 * MIB)
    other_id = model_made(gw, fake, other, small)
    with ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(download, gw, hog, hog_ids[0])
            # Stalled at upstream's 2.25 MiB, held twice (less the filter's window, still unsent).
            assert _wait_held(gw, 9 * MIB // 2 - 64 * 1024) <= 9 * MIB // 2
            second = pool.submit(download, gw, hog, hog_ids[1])
            refused = second.result(timeout=30)
            assert refused.status_code == 429, refused.content[:200]
            assert refused.json()["error"]["type"] == "rate_limit_error" and refused.headers["retry-after"] == "2"
            assert _held(gw) <= 9 * MIB // 2  # the refused one gave back what it took
            r = download(gw, other, other_id)  # 6 MiB held while inspected, beside the hog's
            assert r.status_code == 200, r.content[:200]
            assert r.content == small
        finally:
            resume.set()
        assert first.result(timeout=30).content == stalled
    assert _held(gw) == 0
