"""Key lifecycle and limits against a running gateway process."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import anthropic
import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
HDRS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def ask(url: str, key: str, **body: object) -> httpx.Response:
    payload = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(url + "/v1/messages", headers={**HDRS, "x-api-key": key}, json=payload, timeout=20)


def test_create_use_list_rotate_revoke(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    out = gw.cli("keys", "create", "team-a", "--models", "claude-*", "--rpm", "100")
    key = out.stdout.strip().splitlines()[-1]
    assert out.stdout.strip() == key  # the key alone on stdout
    assert key.startswith("cgk_")
    assert ask(gw.url, key).status_code == 200

    listing = json.loads(gw.cli("keys", "list", "--json").stdout)
    assert listing[0]["name"] == "team-a" and listing[0]["state"] == "active"
    assert key not in json.dumps(listing)
    table = gw.cli("keys", "list").stdout
    assert "team-a" in table and key not in table

    new = gw.cli("keys", "rotate", "team-a", "--overlap", "1h").stdout.strip()
    assert new != key
    assert ask(gw.url, key).status_code == 200  # overlap: old still works
    assert ask(gw.url, new).status_code == 200

    gw.cli("keys", "revoke", "team-a")
    for k in (key, new):  # takes effect on the next request, no restart
        r = ask(gw.url, k)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_rotate_without_overlap_and_cli_errors(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    old = gw.create_key("svc")
    new = gw.cli("keys", "rotate", "svc").stdout.strip()
    assert ask(gw.url, old).status_code == 401
    assert ask(gw.url, new).status_code == 200
    bad = gw.cli("keys", "revoke", "nobody", check=False)
    assert bad.returncode == 3 and "no client named 'nobody'" in bad.stderr
    bad = gw.cli("keys", "rotate", "svc", "--overlap", "soon", check=False)
    assert bad.returncode == 2 and "duration" in bad.stderr


def test_expiry(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = gw.create_key("temp", "--expires", soon)
    assert ask(gw.url, key).status_code == 200
    time.sleep(2.2)
    assert ask(gw.url, key).status_code == 401
    past = gw.create_key("old", "--expires", "2020-01-01T00:00:00Z")
    assert ask(gw.url, past).status_code == 401


def test_scopes(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key(
        "narrow", "--models", "claude-haiku-*", "--endpoints", "/v1/messages", "--max-tokens", "100",
        "--no-stream", "--betas", "files-api-2025-04-14",
    )
    haiku = "claude-haiku-4-5"
    assert ask(gw.url, key, model=haiku).status_code == 200
    r = ask(gw.url, key)  # sonnet: not in the allowlist
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert ask(gw.url, key, model=haiku, max_tokens=101).status_code == 400
    r = ask(gw.url, key, model=haiku, stream=True)
    assert r.status_code == 403 and "stream" in r.json()["error"]["message"]
    r = httpx.get(gw.url + "/v1/models", headers={**HDRS, "x-api-key": key})
    assert r.status_code == 403
    r = httpx.post(
        gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key, "anthropic-beta": "some-other-beta"},
        json={"model": haiku, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 403 and "anthropic-beta" in r.json()["error"]["message"]
    # Batches are checked request by request.
    r = httpx.post(
        gw.url + "/v1/messages/batches", headers={**HDRS, "x-api-key": gw.create_key("b")},
        json={"requests": [{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 5, "stream": True,
                                                          "messages": [{"role": "user", "content": "x"}]}}]},
    )
    assert r.status_code == 400 and "requests.0.params.stream" in r.json()["error"]["message"]


async def _burst(url: str, key: str, n: int, **body: object) -> list[int]:
    payload = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **body}
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.post(url + "/v1/messages", json=payload, headers={**HDRS, "x-api-key": key}) as r:
                await r.read()
                if r.status == 429:
                    assert r.headers["retry-after"].isdigit()
                    assert (await r.json())["error"]["type"] == "rate_limit_error"
                return r.status
        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_rpm_under_concurrency_exactly_ten(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("burst", "--rpm", "10")
    fake.state.configure(latency=0.05)  # keep them all in flight together
    statuses = asyncio.run(_burst(gw.url, key, 50))
    assert statuses.count(200) == 10 and statuses.count(429) == 40


def test_tpm_reservations_hold_with_streams(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    # Each streamed request reserves its estimate + max_tokens (>= 1000), so at
    # most 5 of 20 parallel ones fit in 6000 tokens/minute, whatever they use.
    key = gw.create_key("tpm", "--tpm", "6000")
    fake.state.configure(event_delay=0.01)
    statuses = asyncio.run(_burst(gw.url, key, 20, max_tokens=1000, stream=True))
    assert 1 <= statuses.count(200) <= 5
    assert statuses.count(200) + statuses.count(429) == 20
    # After settling from the streams' real usage (a few dozen tokens each),
    # room is back without waiting for the minute to pass.
    assert ask(gw.url, key, max_tokens=1000).status_code == 200
    r = httpx.get(gw.internal_url + "/metrics")
    assert "claudegate_rate_limited_total" in r.text


def test_daily_budget_survives_restart(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("daily", "--daily-tokens", "400")
    # ~200 tokens used; a fresh process alone would admit the next request.
    first = ask(gw.url, key, max_tokens=300, messages=[{"role": "user", "content": "reply with 200 words"}])
    assert first.status_code == 200 and first.json()["usage"]["output_tokens"] == 200
    gw.stop()  # flushes usage to SQLite
    gw.start()
    used = ask(gw.url, key, max_tokens=300)
    assert used.status_code == 429 and "daily budget" in used.json()["error"]["message"]


def test_dead_and_slow_upstream(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    from tests.support.ports import free_port

    dead = gateway_factory(name="dead", upstream_url=f"http://127.0.0.1:{free_port()}")
    key = dead.create_key("k")
    r = ask(dead.url, key)
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    assert "Traceback" not in r.text

    slow = gateway_factory({"upstream": {"read_timeout": 1}}, name="slow")
    key = slow.create_key("k")
    fake.state.hang(seconds=5)
    t0 = time.monotonic()
    r = ask(slow.url, key)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
    assert time.monotonic() - t0 < 4
    client = anthropic.Anthropic(api_key=key, base_url=slow.url, max_retries=0)
    fake.state.hang(seconds=5)
    with pytest.raises(anthropic.GatewayTimeoutError):
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_health_ready_metrics_on_internal_listener_only(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    assert httpx.get(gw.internal_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gw.internal_url + "/readyz").status_code == 200
    key = gw.create_key("m")
    ask(gw.url, key)
    metrics = httpx.get(gw.internal_url + "/metrics").text
    assert 'claudegate_requests_total{endpoint="/v1/messages",status="200"} 1' in metrics
    # The public listener does not serve them.
    for path in ("/healthz", "/metrics", "/readyz"):
        assert httpx.get(gw.url + path, headers={"x-api-key": key}).status_code == 404


def test_trusted_proxy_real_ip(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    untrusted = gateway_factory(name="u")
    key = untrusted.create_key("k")
    r = httpx.post(untrusted.url + "/v1/messages", headers={**HDRS, "x-api-key": key, "x-real-ip": "6.6.6.6",
                   "x-forwarded-for": "6.6.6.6"}, json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text
    rec = untrusted.record(r.headers)
    assert rec["client_ip"] == "127.0.0.1"
    assert "x-forwarded-for" not in fake.state.requests[-1].headers
    assert "x-real-ip" not in fake.state.requests[-1].headers

    trusted = gateway_factory({"trusted_proxies": ["127.0.0.1/32"]}, name="t")
    key = trusted.create_key("k")
    r = httpx.post(trusted.url + "/v1/messages", headers={**HDRS, "x-api-key": key, "x-real-ip": "203.0.113.7"},
                   json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text
    rec = trusted.record(r.headers)
    assert rec["client_ip"] == "203.0.113.7"


def test_the_edge_request_id_is_audited_only_from_a_trusted_proxy(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    edge_id = "req_edge" + "0123456789abcdef" * 2
    doc = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    untrusted = gateway_factory(name="u")
    key = untrusted.create_key("k")
    r = httpx.post(untrusted.url + "/v1/messages", headers={**HDRS, "x-api-key": key,
                   "x-claudegate-edge-request-id": edge_id}, json=doc)  # fmt: skip
    assert r.status_code == 200, r.text
    assert untrusted.record(r.headers)["edge_request_id"] is None  # a client cannot pose as the edge
    assert "x-claudegate-edge-request-id" not in fake.state.requests[-1].headers  # never upstream

    trusted = gateway_factory({"trusted_proxies": ["127.0.0.1/32"]}, name="t")
    key = trusted.create_key("k")
    for sent, audited in ((edge_id, edge_id), ("req_edge" + "x" * 32, None), (edge_id + "0", None)):
        r = httpx.post(trusted.url + "/v1/messages", headers={**HDRS, "x-api-key": key,
                       "x-claudegate-edge-request-id": sent}, json=doc)  # fmt: skip
        assert r.status_code == 200, r.text
        assert trusted.record(r.headers)["edge_request_id"] == audited, sent
