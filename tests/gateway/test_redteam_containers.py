"""Red team: a code execution container named by another client.

A container keeps what earlier requests put in it (files uploaded with
``container_upload``, code outputs), and every client of the gateway shares
one upstream workspace, where any request may reuse any container by id.
Found here (it failed before the fix): client B, given client A's container
id, ran code in it and read A's files. Now the container a request ran in
belongs to the client that made it (recorded from upstream's answer,
streamed or not), and a ``container`` naming one the caller does not own is
answered like a missing one, before upstream.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def body(container: Any = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": MODEL, "max_tokens": 20, "tools": [CODE],
                           "messages": [{"role": "user", "content": "run ls"}], **extra}  # fmt: skip
    if container is not None:
        doc["container"] = container
    return doc


def streamed_container(gw_url: str, key: str) -> str:
    with httpx.stream("POST", gw_url + "/v1/messages", headers=hdr(key), json=body(stream=True), timeout=30) as r:
        assert r.status_code == 200
        text = r.read().decode()
    deltas = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and "message_delta" in line]
    return str(deltas[-1]["delta"]["container"]["id"])


def test_a_container_is_its_makers_alone(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    alice, bob = gw.create_key("alice"), gw.create_key("bob")
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(alice), json=body(), timeout=30)
    assert r.status_code == 200, r.text
    theirs = r.json()["container"]["id"]
    streamed = streamed_container(gw.url, alice)
    fake.state.clear_requests()
    for named in (theirs, {"id": theirs}, streamed):
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            r = httpx.post(gw.url + path, headers=hdr(bob), json=body(named), timeout=30)
            assert r.status_code == 404, (path, named, r.text)
            assert r.json()["error"]["type"] == "not_found_error"
        batch = {"requests": [{"custom_id": "a", "params": body(named)}]}
        r = httpx.post(gw.url + "/v1/messages/batches", headers=hdr(bob), json=batch, timeout=30)
        assert r.status_code == 404, r.text
    assert fake.state.requests == []  # refused before upstream
    # A container made outside the gateway is nobody's; a well-formed stranger id is refused alike.
    fake.state.containers.add("container_011outside")
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(alice), json=body("container_011outside"), timeout=30)
    assert r.status_code == 404
    # The maker reuses both of its containers, by id or as an object; bob still gets his own new ones.
    for named in (theirs, {"id": streamed}):
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(alice), json=body(named), timeout=30)
        assert r.status_code == 200, r.text
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(bob), json=body(), timeout=30)
    assert r.status_code == 200 and r.json()["container"]["id"] not in (theirs, streamed)
    # A container object without an id asks for a new one: nothing to own.
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(bob), json=body({"skills": []}), timeout=30)
    assert r.status_code == 200, r.text


def test_a_container_value_of_another_shape_is_refused(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("shapes")
    for named in (["container_011x"], 7, {"id": 7}):
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=body(named), timeout=30)
        assert r.status_code == 400, (named, r.text)
    assert fake.state.requests_for("/v1/messages") == []


def test_a_custom_skill_is_nobodys(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    """A custom skill lives in the shared workspace (made outside the gateway: it serves no skills
    API) and runs its code in the container: as a file made outside it, it is no client's."""
    gw = gateway_factory()
    key = gw.create_key("skills")
    custom = {"skills": [{"type": "custom", "skill_id": "skill_01otherteam", "version": "latest"}]}
    for container in (custom, {"skills": [{"skill_id": "skill_01otherteam"}]}):
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=body(container), timeout=30)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", r.text
    assert fake.state.requests_for("/v1/messages") == []
    anthropic = {"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]}
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=body(anthropic), timeout=30)
    assert r.status_code == 200, r.text
