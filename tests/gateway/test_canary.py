"""A canary upstream key and a canary client key never leak anywhere the gateway writes."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import make_gateway

CANARY_UPSTREAM = "sk-ant-api03-CANARYupstream" + "Q" * 60 + "-AAAA"


def test_canaries_never_leak(tmp_path: Path, fake: FakeAnthropic) -> None:
    fake.state.api_keys.add(CANARY_UPSTREAM)
    gw = make_gateway(tmp_path / "gw", fake.url, CANARY_UPSTREAM, {"filters": [{"name": "secrets", "detectors": ["all"], "action": "block"}]})
    gw.start()
    try:
        created = gw.cli("keys", "create", "canary")
        client_key = created.stdout.strip()
        seen: list[str] = [created.stderr]
        client = anthropic.Anthropic(api_key=client_key, base_url=gw.url, max_retries=0)
        msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        seen.append(msg.model_dump_json())
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "s"}]) as s:
            seen.append(s.get_final_message().model_dump_json())
        # Errors of every kind, including one whose body quotes the keys back.
        bodies = [
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": client_key}]},
            {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": CANARY_UPSTREAM}]},
            {"nonsense": True},
        ]
        for body in bodies:
            for headers in ({"x-api-key": client_key}, {"authorization": f"Bearer {client_key}"},
                            {"x-api-key": client_key[:-2] + "zz"}, {"x-api-key": CANARY_UPSTREAM}):
                r = httpx.post(gw.url + "/v1/messages", json=body, headers={**headers, "anthropic-version": "2023-06-01"})
                seen.append(r.text + json.dumps(dict(r.headers)))
        fake.state.fail(500, "api_error")
        with pytest.raises(anthropic.InternalServerError) as err:
            client.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        seen.append(str(err.value))
        seen.append(gw.cli("keys", "list", "--json").stdout + gw.cli("keys", "list").stdout)
        seen.append(gw.cli("keys", "rotate", "canary", "--overlap", "1m").stderr)
        seen.append(httpx.get(gw.internal_url + "/metrics").text)
    finally:
        gw.stop()

    assert len(gw.audit_path.read_text().splitlines()) >= 10
    places = {
        "audit log": gw.audit_path.read_bytes(),
        "server log": gw.log_path.read_bytes(),
        "responses and CLI output": "\n".join(seen).encode(),
    }
    for db in gw.workdir.glob("keys.db*"):
        places[db.name] = db.read_bytes()
    secret_part = client_key.split("_", 2)[2]
    for where, data in places.items():
        for canary in (CANARY_UPSTREAM, client_key, secret_part):
            assert canary.encode() not in data, f"a canary leaked into the {where}"
