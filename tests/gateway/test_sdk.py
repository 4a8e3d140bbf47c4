"""The official anthropic SDK, sync and async, against the running gateway."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

MODEL = "claude-sonnet-4-6"
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def key(module_gateway: GatewayProc) -> str:
    return module_gateway.create_key("sdk-tests")


@pytest.fixture
def client(module_gateway: GatewayProc, key: str, fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=module_gateway.url, max_retries=0, timeout=20)


@pytest.fixture
def aclient(module_gateway: GatewayProc, key: str, fake: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=module_gateway.url, max_retries=0, timeout=20)


def test_create(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    msg = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hello"}])
    assert msg.type == "message" and msg.content[0].type == "text" and msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    seen = fake.state.last_request("/v1/messages")
    assert seen is not None and seen.headers["x-api-key"] == fake.api_key


def test_upstream_never_sees_client_key(client: anthropic.Anthropic, fake: FakeAnthropic, key: str) -> None:
    client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    client.with_options(default_headers={"x-api-key": key}).models.list()
    assert fake.state.requests
    for rec in fake.state.requests:
        flat = json.dumps(rec.headers) + rec.text
        assert key not in flat
        assert key.split("_")[1] not in flat  # not even the public prefix
        assert "authorization" not in rec.headers
        assert rec.headers["x-api-key"] == fake.api_key


def test_version_and_beta_headers_pass_through(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07", "anthropic-version": "2023-06-01"},
    )
    rec = fake.state.last_request("/v1/messages")
    assert rec is not None
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_stream_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "reply with 12 words"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 12
    assert "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens >= 12 and final.stop_reason == "end_turn"


def test_stream_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=200, tools=[TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"}, messages=[{"role": "user", "content": "weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather" and "city" in block.input  # type: ignore[operator]
    assert final.stop_reason == "tool_use"


def test_count_tokens_and_models(client: anthropic.Anthropic) -> None:
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "count me please"}])
    assert count.input_tokens > 0
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL


async def test_async_client(aclient: anthropic.AsyncAnthropic) -> None:
    msg = await aclient.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hey"}])
    assert msg.content[0].type == "text"
    async with aclient.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "reply with 5 words"}]
    ) as stream:
        texts = [t async for t in stream.text_stream]
    assert len(texts) >= 5
    count = await aclient.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert count.input_tokens > 0
    page = await aclient.models.list()
    assert page.data


def test_legacy_x_api_key_and_old_version(module_gateway: GatewayProc, key: str, fake: FakeAnthropic) -> None:
    r = httpx.post(
        module_gateway.url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    assert r.headers["request-id"].startswith("req_")
    assert r.headers["x-claudegate-request-id"].startswith("req_gw")
    assert r.headers["server"] == "claudegate"


def _gw_error(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert body["request_id"].startswith("req_") and r.headers["request-id"] == body["request_id"]
    assert r.headers["content-type"].startswith("application/json")
    return body


def test_gateway_errors_have_anthropic_shape(module_gateway: GatewayProc, key: str) -> None:
    url = module_gateway.url
    base = {"anthropic-version": "2023-06-01"}
    _gw_error(httpx.post(url + "/v1/messages", headers=base, json={}), 401, "authentication_error")
    _gw_error(httpx.post(url + "/v1/messages", headers={**base, "x-api-key": "cgk_nope"}, json={}), 401, "authentication_error")
    auth = {**base, "x-api-key": key}
    _gw_error(httpx.post(url + "/v1/messages", headers=auth, content=b"{not json"), 400, "invalid_request_error")
    _gw_error(httpx.post(url + "/v1/messages", headers=auth, content=b"[1,2]"), 400, "invalid_request_error")
    _gw_error(httpx.post(url + "/v1/messages", headers=auth, json={"max_tokens": 5}), 400, "invalid_request_error")
    _gw_error(httpx.get(url + "/admin", headers=auth), 404, "not_found_error")
    _gw_error(httpx.get(url + "/v1/models/../../secret", headers=auth), 404, "not_found_error")
    _gw_error(httpx.get(url + "/v1/models/%2e%2e/x", headers=auth), 404, "not_found_error")


@pytest.mark.parametrize(
    ("exc", "setup"),
    [
        (anthropic.AuthenticationError, "badkey"),
        (anthropic.PermissionDeniedError, "model"),
        (anthropic.BadRequestError, "max_tokens"),
        (anthropic.NotFoundError, "upstream404"),
        (anthropic.ContentTooLargeError, "size"),
        (anthropic.RateLimitError, "upstream429"),
        (anthropic.InternalServerError, "upstream500"),
        (anthropic.OverloadedError, "upstream529"),
    ],
)
def test_errors_map_to_sdk_exceptions(
    exc: type[Exception], setup: str, module_gateway: GatewayProc, key: str, fake: FakeAnthropic
) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    api_key = key
    if setup == "badkey":
        api_key = "cgk_AAAAAAAAAA_" + "b" * 40
    elif setup == "model":
        kwargs["model"] = "claude-secret-model"
        api_key = module_gateway.create_key(f"scoped-{setup}", "--models", "claude-haiku-*")
    elif setup == "max_tokens":
        api_key = module_gateway.create_key(f"capped-{setup}", "--max-tokens", "5")
    elif setup == "size":
        kwargs["messages"] = [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]
    else:
        status = int(setup.removeprefix("upstream"))
        kinds = {404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
        fake.state.fail(status, kinds[status])
    client = anthropic.Anthropic(api_key=api_key, base_url=module_gateway.url, max_retries=0, timeout=30)
    with pytest.raises(exc) as info:
        client.messages.create(**kwargs)
    assert isinstance(info.value, anthropic.APIStatusError)
    assert info.value.body["type"] == "error"  # type: ignore[index]


def test_mid_stream_upstream_error_reaches_sdk(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.fail_mid_stream(after=4, type="overloaded_error")
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "reply with 20 words"}]
    ) as stream:
        for _ in stream.text_stream:
            pass


def test_no_compression_asked_upstream(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    client.messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"accept-encoding": "gzip"},
    )
    rec = fake.state.last_request("/v1/messages")
    assert rec is not None and "accept-encoding" not in rec.headers


def test_files_through_the_route_table(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    uploaded = client.files.upload(file=("notes.txt", b"some notes", "text/plain"))
    assert uploaded.id.startswith("file_")
    assert uploaded.id in [f.id for f in client.files.list(limit=5).data]
    assert client.files.retrieve_metadata(uploaded.id).filename == "notes.txt"
    assert client.files.download(uploaded.id).read() == b"some notes"
    beta = client.beta.files
    assert uploaded.id in [f.id for f in beta.list()]
    assert beta.retrieve_metadata(uploaded.id).size_bytes == 10
    client.files.delete(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        client.files.retrieve_metadata(uploaded.id)
    paths = {(r.method, r.raw_path) for r in fake.state.requests}
    assert ("GET", f"/v1/files/{uploaded.id}/content") in paths and ("DELETE", f"/v1/files/{uploaded.id}") in paths


def test_batches_through_the_route_table(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    requests = [{"custom_id": f"r{i}", "params": {"model": MODEL, "max_tokens": 5,
                 "messages": [{"role": "user", "content": f"hi {i}"}]}} for i in range(2)]  # fmt: skip
    fake.state.configure(batch_processing_seconds=60)  # still running: it can be cancelled
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert batch.id in [b.id for b in client.messages.batches.list(limit=10)]
    cancelled = client.messages.batches.cancel(batch.id)
    assert cancelled.id == batch.id
    beta_batch = client.beta.messages.batches.retrieve(batch.id)
    assert beta_batch.id == batch.id
    fake.state.configure(batch_processing_seconds=0)
    done = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert client.messages.batches.retrieve(done.id).processing_status == "ended"
    results = list(client.messages.batches.results(done.id))
    assert sorted(r.custom_id for r in results) == ["r0", "r1"]
    client.messages.batches.delete(done.id)
    paths = [(r.method, r.raw_path) for r in fake.state.requests]
    assert ("GET", f"/v1/messages/batches/{done.id}/results") in paths
    assert ("POST", f"/v1/messages/batches/{batch.id}/cancel") in paths
