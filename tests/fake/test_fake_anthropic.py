"""The fake Anthropic API, exercised through the official SDK (sync and async) and raw HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fake_anthropic import (
    DEFAULT_API_KEY,
    ERROR_STATUS,
    AsyncFakeAnthropic,
    FakeAnthropic,
    FakeControl,
    FakeState,
    estimate_input_tokens,
    parse_failure,
    plan_reply,
    spawn_fake,
    stream_events,
)

MODEL = "claude-haiku-4-5"
MODEL_ID = "claude-haiku-4-5-20251001"
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "detailed": {"type": "boolean"},
        },
        "required": ["city", "days", "unit"],
    },
}
REQUEST_ID_RE = re.compile(r"^req_[0-9A-Za-z]{20,}$")


def user(text: str) -> Any:
    """A one-message conversation (typed Any: the SDK's TypedDicts are not the point here)."""
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_state(fake: FakeAnthropic) -> None:
    fake.state.reset()


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=DEFAULT_API_KEY, base_url=fake.url, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = anthropic.AsyncAnthropic(api_key=DEFAULT_API_KEY, base_url=fake.url, max_retries=0)
    yield c
    await c.close()


def raw(
    fake: FakeAnthropic,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    auth: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    sent = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if auth:
        sent["x-api-key"] = DEFAULT_API_KEY
    sent.update(headers or {})
    data = json.dumps(body) if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers={k: v for k, v in sent.items() if v})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def assert_error_shape(
    body: bytes | object, kind: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    data = json.loads(body) if isinstance(body, bytes) else body
    assert isinstance(data, dict)
    assert set(data) == {"type", "error", "request_id"}
    assert data["type"] == "error"
    assert set(data["error"]) == {"type", "message"}
    assert data["error"]["type"] == kind
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    assert REQUEST_ID_RE.match(data["request_id"])
    if headers is not None:
        assert headers["request-id"] == data["request_id"]
    return data


# --------------------------------------------------------------------------- messages


def test_create_returns_a_real_message(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    raw_resp = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=user("Hello there")
    )
    msg = raw_resp.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_01")
    assert msg.model == MODEL_ID  # aliases resolve to the dated id, as upstream
    assert [b.type for b in msg.content] == ["text"]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert len(msg.content[0].text.split()) == 10  # type: ignore[union-attr]
    assert msg.usage.output_tokens == 10
    assert msg.usage.input_tokens == estimate_input_tokens({"messages": user("Hello there")}) == 3
    headers = raw_resp.headers
    assert REQUEST_ID_RE.match(headers["request-id"])
    assert raw_resp.request_id == headers["request-id"] if hasattr(raw_resp, "request_id") else True
    for family in ("requests", "tokens", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert headers[f"anthropic-ratelimit-{family}-{part}"]
    assert int(headers["anthropic-ratelimit-requests-remaining"]) < int(
        headers["anthropic-ratelimit-requests-limit"]
    )
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_replies_are_deterministic_and_sized_on_request(client: anthropic.Anthropic) -> None:
    def text(prompt: str, max_tokens: int = 200, **kw: Any) -> anthropic.types.Message:
        msg: anthropic.types.Message = client.messages.create(
            model=MODEL, max_tokens=max_tokens, messages=user(prompt), **kw
        )
        return msg

    a, b, c = text("same words"), text("same words"), text("other words")
    assert a.content == b.content and a.content != c.content
    seven = text("please reply with 7 words")
    assert len(seven.content[0].text.split()) == 7 and seven.usage.output_tokens == 7  # type: ignore[union-attr]
    assert seven.content[0].text.endswith(".")  # type: ignore[union-attr]
    cut = text("please reply with 7 words", max_tokens=3)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    assert cut.content[0].text.split() == seven.content[0].text.split()[:3]  # type: ignore[union-attr]
    word = seven.content[0].text.split()[3]  # type: ignore[union-attr]
    stopped = text("please reply with 7 words", stop_sequences=[" " + word])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == " " + word
    assert stopped.content[0].text.split() == seven.content[0].text.split()[:3]  # type: ignore[union-attr]


def test_request_is_recorded_with_key_and_headers(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=16, messages=user("record me"), metadata={"user_id": "u1"})
    rec = fake.state.last_request("/v1/messages")
    assert rec is not None
    assert rec.method == "POST" and rec.query_string == ""
    assert rec.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"  # SDK 2.x sends Bearer
    assert rec.headers["anthropic-version"] == "2026-10-21"
    assert rec.headers["content-type"] == "application/json"
    assert all(k == k.lower() for k in rec.headers)
    assert rec.json == {
        "model": MODEL,
        "max_tokens": 16,
        "messages": user("record me"),
        "metadata": {"user_id": "u1"},
    }
    assert json.loads(rec.body) == rec.json
    assert abs(rec.time - time.time()) < 5


def test_x_api_key_header_is_accepted(fake: FakeAnthropic) -> None:
    status, headers, body = raw(
        fake, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": user("x")}
    )
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["usage"]["output_tokens"] == 5
    assert fake.state.requests[-1].headers["x-api-key"] == DEFAULT_API_KEY


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "x-api-key header is required"),
        ({"x-api-key": "sk-ant-wrong"}, "invalid x-api-key"),
        ({"authorization": "Bearer sk-ant-wrong"}, "Invalid bearer token"),
        ({"authorization": f"Basic {DEFAULT_API_KEY}"}, "Invalid bearer token"),
    ],
)
def test_missing_or_invalid_key_is_401(fake: FakeAnthropic, headers: dict[str, str], message: str) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": user("x")}
    status, resp_headers, data = raw(fake, "POST", "/v1/messages", body, headers, auth=False)
    assert status == 401
    assert assert_error_shape(data, "authentication_error", resp_headers)["error"]["message"] == message


def test_sdk_with_wrong_key_raises_authentication_error(fake: FakeAnthropic) -> None:
    bad = anthropic.Anthropic(api_key="sk-ant-nope", base_url=fake.url, max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError) as info:
        bad.models.list()
    assert info.value.status_code == 401 and info.value.type == "authentication_error"
    assert_error_shape(info.value.body, "authentication_error")
    assert info.value.request_id == info.value.response.headers["request-id"]


def test_extra_configured_keys_are_accepted(fake: FakeAnthropic) -> None:
    fake.state.configure(api_keys=["sk-ant-second"])
    with anthropic.Anthropic(api_key="sk-ant-second", base_url=fake.url, max_retries=0) as second:
        assert second.messages.count_tokens(model=MODEL, messages=user("abcd")).input_tokens == 1
    fake.state.reset()
    assert fake.state.api_keys == {DEFAULT_API_KEY}


def test_missing_anthropic_version_is_400(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": user("x")}
    status, headers, data = raw(fake, "POST", "/v1/messages", body, {"anthropic-version": ""})
    assert status == 400
    assert (
        "anthropic-version" in assert_error_shape(data, "invalid_request_error", headers)["error"]["message"]
    )


def test_unknown_path_and_wrong_method(fake: FakeAnthropic) -> None:
    status, headers, data = raw(fake, "GET", "/v1/nope")
    assert status == 404
    assert_error_shape(data, "not_found_error", headers)
    status, headers, data = raw(fake, "POST", "/v2/messages", {}, auth=False)
    assert status == 404
    status, headers, data = raw(fake, "GET", "/v1/messages")
    assert status == 405 and "POST" in headers["allow"]
    assert_error_shape(data, "invalid_request_error", headers)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "parsing the body"),
        ("", "empty"),
        ([], "valid dictionary"),
        ({"max_tokens": 5, "messages": user("x")}, "model: Field required"),
        ({"model": MODEL, "messages": user("x")}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 0, "messages": user("x")}, "greater than or equal to 1"),
        ({"model": MODEL, "max_tokens": "5", "messages": user("x")}, "valid integer"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "at least one message"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                        ],
                    }
                ],
            },
            "'text'",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}, "non-empty"),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            },
            "non-empty",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "does not match any of the expected tags",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="},
                            }
                        ],
                    }
                ],
            },
            "media_type",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": user("x"), "bogus": 1},
            "bogus: Extra inputs are not permitted",
        ),
        ({"model": MODEL, "max_tokens": 5, "messages": user("x"), "temperature": 2}, "temperature"),
        ({"model": MODEL, "max_tokens": 5, "messages": user("x"), "tools": [{"name": "t"}]}, "input_schema"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": user("x"), "tool_choice": {"type": "any"}},
            "tool_choice",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 2000,
                "messages": user("x"),
                "thinking": {"type": "enabled", "budget_tokens": 4000},
            },
            "budget_tokens",
        ),
        (
            {"model": MODEL, "max_tokens": 100_000, "messages": user("x")},
            "maximum allowed number of output tokens",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "tool_result",
        ),
    ],
)
def test_invalid_message_bodies_are_400(fake: FakeAnthropic, body: Any, fragment: str) -> None:
    payload = body if isinstance(body, str) else json.dumps(body)
    status, headers, data = raw(fake, "POST", "/v1/messages", payload)
    assert status == 400, data
    assert fragment in assert_error_shape(data, "invalid_request_error", headers)["error"]["message"]


def test_unknown_model_is_404_in_sdk(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-nonexistent-9", max_tokens=5, messages=user("x"))
    assert info.value.api_message == "model: claude-nonexistent-9"
    assert_error_shape(info.value.body, "not_found_error")


def test_accepted_content_blocks(client: anthropic.Anthropic) -> None:
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at this"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a doc"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 3 words"}],
        },
    ]
    msg = client.messages.create(model=MODEL, max_tokens=50, messages=messages, tools=[WEATHER_TOOL])
    # after a tool_result the fake answers in text (the loop terminates)
    assert msg.stop_reason == "end_turn" and msg.content[0].type == "text"
    assert msg.usage.input_tokens == estimate_input_tokens({"messages": messages, "tools": [WEATHER_TOOL]})
    assert msg.usage.input_tokens > 2 * 1000  # one image + one pdf


def test_count_tokens_matches_usage(client: anthropic.Anthropic) -> None:
    kw: Any = {
        "model": MODEL,
        "system": "You are terse.",
        "tools": [WEATHER_TOOL],
        "messages": user("What is the weather in Paris today?"),
    }
    counted = client.messages.count_tokens(**kw).input_tokens
    msg = client.messages.create(max_tokens=20, **kw)
    assert counted == msg.usage.input_tokens == estimate_input_tokens(kw)
    assert counted > client.messages.count_tokens(model=MODEL, messages=kw["messages"]).input_tokens
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model=MODEL, messages=user("x"), extra_body={"max_tokens": 5})
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=user("x"))


def test_tool_use_non_streaming(client: anthropic.Anthropic) -> None:
    forced = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("weather?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
    )
    assert forced.stop_reason == "tool_use"
    assert [b.type for b in forced.content] == ["tool_use"]
    block = forced.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_01") and block.name == "get_weather"
    assert block.input == {"city": "example", "days": 1, "unit": "celsius"}
    second: Any = {
        "name": "lookup",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    named = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("x"),
        tools=[WEATHER_TOOL, second],
        tool_choice={"type": "tool", "name": "lookup"},
    )
    assert (
        named.content[0].type == "tool_use"
        and named.content[0].name == "lookup"
        and named.content[0].input == {}
    )
    auto = client.messages.create(
        model=MODEL, max_tokens=100, messages=user("please use the tool"), tools=[WEATHER_TOOL]
    )
    assert [b.type for b in auto.content] == ["text", "tool_use"] and auto.stop_reason == "tool_use"
    plain = client.messages.create(
        model=MODEL, max_tokens=100, messages=user("just chat"), tools=[WEATHER_TOOL]
    )
    assert [b.type for b in plain.content] == ["text"]
    none = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("please use the tool"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "none"},
    )
    assert none.stop_reason == "end_turn"


def test_thinking_block(client: anthropic.Anthropic) -> None:
    kw: Any = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": user("think"),
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    msg = client.messages.create(**kw)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    with client.messages.stream(**kw) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and msg.content[0].type == "thinking"
    assert final.content[0].thinking == msg.content[0].thinking
    assert final.content[0].signature == msg.content[0].signature
    assert final.usage.output_tokens == msg.usage.output_tokens


# --------------------------------------------------------------------------- streaming


def read_sse(fake: FakeAnthropic, body: dict[str, Any]) -> tuple[int, dict[str, str], list[tuple[str, Any]]]:
    status, headers, data = raw(fake, "POST", "/v1/messages", {**body, "stream": True})
    text = data.decode()
    assert text.endswith("\n\n")
    events: list[tuple[str, Any]] = []
    for chunk in text.split("\n\n")[:-1]:
        lines = chunk.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        payload = json.loads(lines[1][6:])
        assert payload["type"] == lines[0][7:]
        events.append((lines[0][7:], payload))
    return status, headers, events


def test_stream_wire_format(fake: FakeAnthropic) -> None:
    body = {"model": MODEL, "max_tokens": 50, "messages": user("reply with 4 words")}
    status, headers, events = read_sse(fake, body)
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert REQUEST_ID_RE.match(headers["request-id"])
    assert "anthropic-ratelimit-requests-remaining" in headers
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] == 5
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta")
    assert all(p["delta"]["type"] == "text_delta" for n, p in events if n == "content_block_delta")
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 4
    non_stream = json.loads(raw(fake, "POST", "/v1/messages", body)[2])
    assert non_stream["content"][0]["text"] == text


def test_stream_tool_use_wire_format(fake: FakeAnthropic) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": user("x"),
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    _, _, events = read_sse(fake, body)
    start = events[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["input"] == {} and start["id"].startswith("toolu_")
    parts = [p["delta"] for n, p in events if n == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in parts) and len(parts) > 2
    assert parts[0]["partial_json"] == ""
    assert json.loads("".join(d["partial_json"] for d in parts)) == {
        "city": "example",
        "days": 1,
        "unit": "celsius",
    }
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_sdk_stream_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=user("reply with 6 words")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 6
    assert final.content[0].type == "text" and final.content[0].text == "".join(pieces)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6
    assert final.usage.input_tokens == estimate_input_tokens({"messages": user("reply with 6 words")})


def test_sdk_stream_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=user("Please use the tool for Oslo"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == {"city": "example", "days": 1, "unit": "celsius"}
    assert final.stop_reason == "tool_use"


def test_sdk_create_stream_true_raw_events(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model=MODEL, max_tokens=3, messages=user("reply with 9 words"), stream=True)
    )
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 3


async def test_async_client(aclient: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    msg = await aclient.messages.create(model=MODEL, max_tokens=32, messages=user("async hello"))
    assert msg.content[0].type == "text"
    async with aclient.messages.stream(model=MODEL, max_tokens=32, messages=user("async hello")) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == msg.content[0].type == "text"
    assert final.content[0].text == msg.content[0].text
    tool_kw: Any = {"tools": [WEATHER_TOOL], "tool_choice": {"type": "any"}}
    async with aclient.messages.stream(model=MODEL, max_tokens=32, messages=user("x"), **tool_kw) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "tool_use"
    assert fake.state.requests[-1].headers["x-stainless-async"].startswith("async")
    fake.state.fail(status=529)
    with pytest.raises(anthropic.OverloadedError):
        await aclient.models.list()
    assert (await aclient.messages.count_tokens(model=MODEL, messages=user("abcdefgh"))).input_tokens == 2


def test_events_arrive_spaced_not_batched(fake: FakeAnthropic) -> None:
    delay = 0.08
    fake.state.configure(event_delay=delay, latency=0.15)
    body = json.dumps(
        {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("reply with 3 words")}
    )
    conn = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    sent = time.monotonic()
    conn.request(
        "POST",
        "/v1/messages",
        body=body,
        headers={"x-api-key": DEFAULT_API_KEY, "anthropic-version": "2023-06-01"},
    )
    resp = conn.getresponse()
    arrivals: list[float] = []
    while line := resp.readline():
        if line.startswith(b"event: "):
            arrivals.append(time.monotonic())
    conn.close()
    assert len(arrivals) == 9
    assert arrivals[0] - sent >= 0.14  # first-byte latency
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= delay * 0.75, gaps
    assert arrivals[-1] - arrivals[0] >= delay * 8 * 0.9


# --------------------------------------------------------------------------- injected failures

ERROR_CASES = [
    (400, anthropic.BadRequestError),
    (401, anthropic.AuthenticationError),
    (403, anthropic.PermissionDeniedError),
    (404, anthropic.NotFoundError),
    (413, anthropic.ContentTooLargeError),
    (429, anthropic.RateLimitError),
    (500, anthropic.InternalServerError),
    (529, anthropic.OverloadedError),
]


@pytest.mark.parametrize(("status", "exc_class"), ERROR_CASES)
def test_injected_status_maps_to_sdk_exception(
    client: anthropic.Anthropic, fake: FakeAnthropic, status: int, exc_class: type[anthropic.APIStatusError]
) -> None:
    kind = next(k for k, s in ERROR_STATUS.items() if s == status)
    fake.state.fail(status=status, message=f"injected {status}")
    with pytest.raises(exc_class) as info:
        client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    err = info.value
    assert err.status_code == status and err.type == kind and err.api_message == f"injected {status}"
    assert_error_shape(err.body, kind)
    assert err.request_id and REQUEST_ID_RE.match(err.request_id)
    if status == 429:
        assert err.response.headers["retry-after"] == "1"
    assert "anthropic-ratelimit-requests-limit" in err.response.headers
    # consumed: the next request succeeds
    assert client.messages.create(model=MODEL, max_tokens=5, messages=user("x")).stop_reason


def test_failure_by_type_count_and_path(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.fail(type="rate_limit_error", count=2, path="/v1/messages", retry_after=7)
    assert client.models.list().data  # other paths are untouched
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        assert info.value.response.headers["retry-after"] == "7"
    client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    fake.state.fail(status=500, count=-1)
    for _ in range(3):
        with pytest.raises(anthropic.InternalServerError):
            client.models.list()
    assert fake.state.failures  # until reset
    fake.state.reset()
    assert client.models.list().data


def test_sdk_retries_on_injected_529(fake: FakeAnthropic) -> None:
    fake.state.fail(status=529, retry_after=0.01)
    with anthropic.Anthropic(api_key=DEFAULT_API_KEY, base_url=fake.url, max_retries=1) as retrying:
        msg = retrying.messages.create(model=MODEL, max_tokens=50, messages=user("x"))
    assert msg.stop_reason == "end_turn"
    attempts = [r.headers["x-stainless-retry-count"] for r in fake.state.requests_for("/v1/messages")]
    assert attempts == ["0", "1"]


def test_mid_stream_error_raises_in_sdk(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.fail_mid_stream(after=4, message="Overloaded mid-stream")
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:  # noqa: SIM117
        with client.messages.stream(
            model=MODEL, max_tokens=64, messages=user("reply with 8 words")
        ) as stream:
            seen.extend(event.type for event in stream)
    assert info.value.type == "overloaded_error"
    assert info.value.api_message == "Overloaded mid-stream"
    assert_error_shape(info.value.body, "overloaded_error")
    assert "message_start" in seen and "message_stop" not in seen
    # the non-streaming request is not affected by a mid-stream failure
    fake.state.fail_mid_stream(after=0)
    client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert len(fake.state.failures) == 1


def test_mid_stream_error_on_the_wire(fake: FakeAnthropic) -> None:
    fake.state.add_failure({"mid_stream_after": 3, "type": "api_error"})
    _, headers, events = read_sse(fake, {"model": MODEL, "max_tokens": 50, "messages": user("x")})
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert_error_shape(events[-1][1], "api_error")
    assert events[-1][1]["request_id"] == headers["request-id"]


def test_disconnect_mid_stream(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.disconnect_mid_stream(after=3)
    seen: list[str] = []
    with pytest.raises(Exception) as info:  # noqa: SIM117 - httpx's transport error surfaces as-is
        with client.messages.stream(
            model=MODEL, max_tokens=64, messages=user("reply with 8 words")
        ) as stream:
            seen.extend(event.type for event in stream)
    assert "message_stop" not in seen
    assert "incomplete" in str(info.value) or isinstance(info.value, anthropic.APIConnectionError)
    assert client.messages.create(model=MODEL, max_tokens=50, messages=user("x")).stop_reason == "end_turn"


def test_disconnect_before_answer(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.disconnect(path="/v1/messages")
    assert client.models.list().data  # path filter: untouched
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert not fake.state.failures


def test_oversized_body_is_413(fake: FakeAnthropic) -> None:
    fake.state.configure(max_message_bytes=1000)
    status, headers, data = raw(
        fake, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": user("x" * 2000)}
    )
    assert status == 413
    assert_error_shape(data, "request_too_large", headers)


def test_hang_times_out_and_bounded_hang_recovers(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.hang()
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert 0.25 < time.monotonic() - started < 2
    fake.state.hang(seconds=0.2)
    started = time.monotonic()
    assert client.messages.create(model=MODEL, max_tokens=50, messages=user("x")).stop_reason == "end_turn"
    assert time.monotonic() - started >= 0.2
    fake.state.hang(mid_stream_after=2, seconds=0.2)
    started = time.monotonic()
    with client.messages.stream(model=MODEL, max_tokens=64, messages=user("x")) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    assert time.monotonic() - started >= 0.2


def test_hang_for_one_body_marker_leaves_other_requests_fast(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.hang(seconds=0.5, count=-1, body_contains="slow-client")
    started = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=5, messages=user("fast-client says hi"))
    assert time.monotonic() - started < 0.4
    started = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=5, messages=user("slow-client says hi"))
    client.messages.create(model=MODEL, max_tokens=5, messages=user("slow-client again"))
    assert time.monotonic() - started >= 1.0  # count -1: every matching request, until reset
    assert parse_failure({"hang": True, "body_contains": "x"}).to_json()["body_contains"] == "x"
    with pytest.raises(ValueError, match="body_contains"):
        parse_failure({"hang": True, "body_contains": ""})


# --------------------------------------------------------------------------- models, batches, files


def test_models_list_and_retrieve(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    everything = list(client.models.list(limit=3))  # auto-pagination over pages of 3
    ids = [m.id for m in everything]
    assert ids == [m.id for m in fake.state.models]
    assert {"claude-opus-4-1-20250805", "claude-sonnet-4-5-20250929", MODEL_ID} <= set(ids)
    page = client.models.list(limit=2)
    assert page.has_more is True and page.first_id == ids[0] and page.last_id == ids[1]
    after = client.models.list(limit=2, after_id=ids[1])
    assert [m.id for m in after.data] == ids[2:4]
    before = client.models.list(limit=2, before_id=ids[3])
    assert [m.id for m in before.data] == ids[1:3] and before.has_more is True
    last = client.models.list(limit=1000, after_id=ids[-2])
    assert [m.id for m in last.data] == ids[-1:] and last.has_more is False
    info = client.models.retrieve("claude-opus-4-1")
    assert (
        info.id == "claude-opus-4-1-20250805"
        and info.type == "model"
        and info.display_name == "Claude Opus 4.1"
    )
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-unknown")
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(limit=0)
    status, _, body = raw(fake, "GET", "/v1/models?limit=2")
    assert status == 200 and set(json.loads(body)) == {"data", "has_more", "first_id", "last_id"}


def test_batches_lifecycle(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "ok-1",
                "params": {"model": MODEL, "max_tokens": 20, "messages": user("reply with 2 words")},
            },
            {
                "custom_id": "bad-model",
                "params": {"model": "claude-nope", "max_tokens": 20, "messages": user("x")},
            },
        ]
    )
    assert batch.id.startswith("msgbatch_01") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 2
    assert batch.results_url is None
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended" and done.ended_at is not None
    assert done.request_counts.succeeded == 1 and done.request_counts.errored == 1
    assert done.results_url == f"{fake.url}/v1/messages/batches/{batch.id}/results"
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    ok = results["ok-1"]
    assert ok.type == "succeeded" and ok.message.content[0].type == "text"
    assert len(ok.message.content[0].text.split()) == 2
    assert results["bad-model"].type == "errored"
    assert results["bad-model"].error.error.type == "not_found_error"
    assert [b.id for b in client.messages.batches.list()] == [batch.id]
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.BadRequestError):
        bad_params: Any = {"model": MODEL, "messages": []}
        client.messages.batches.create(requests=[{"custom_id": "a", "params": bad_params}])


def test_batch_cancel(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.configure(batch_processing_seconds=3600)
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": f"r{i}", "params": {"model": MODEL, "max_tokens": 5, "messages": user("x")}}
            for i in range(3)
        ]
    )
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 3
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}


def test_files_lifecycle(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    meta = client.files.upload(file=("notes.txt", b"hello file", "text/plain"))
    assert meta.type == "file" and meta.id.startswith("file_")
    assert meta.filename == "notes.txt" and meta.mime_type == "text/plain" and meta.size_bytes == 10
    rec = fake.state.last_request("/v1/files")
    assert (
        rec is not None and rec.headers["content-type"].startswith("multipart/form-data") and rec.json is None
    )
    second = client.files.upload(file=("data.json", b"{}"))
    assert second.mime_type == "application/json"
    listed = client.files.list(limit=1)
    assert [f.id for f in listed.data] == [second.id] and listed.next_page
    assert [f.id for f in client.files.list()] == [second.id, meta.id]
    assert [f.id for f in client.files.list(limit=1)] == [second.id, meta.id]  # auto-pagination via next_page
    assert client.files.retrieve_metadata(meta.id).filename == "notes.txt"
    assert client.files.download(meta.id).read() == b"hello file"
    assert client.files.delete(meta.id).type == "file_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.files.retrieve_metadata(meta.id)


# --------------------------------------------------------------------------- control plane


def test_control_endpoints_over_http(client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    ctl = FakeControl(fake.url)
    assert ctl.health()
    client.messages.create(model=MODEL, max_tokens=5, messages=user("over http"))
    recorded = ctl.requests(path="/v1/messages")
    assert len(recorded) == 1
    assert recorded[0]["headers"]["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert json.loads(recorded[0]["body"])["messages"] == user("over http")
    assert recorded[0]["json"]["max_tokens"] == 5
    added = ctl.fail(status=529, type="overloaded_error", message="busy", count=1)
    assert added["pending"] == 1
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    ctl.fail(mid_stream_after=2, type="overloaded_error")
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(model=MODEL, max_tokens=5, messages=user("x")) as stream,
    ):
        stream.get_final_message()
    ctl.fail(hang=True, seconds=0.1)
    assert client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    config = ctl.config(latency=0.05, event_delay=0.01)
    assert config["latency"] == 0.05 and fake.state.event_delay == 0.01
    assert ctl.config()["api_keys"] == [DEFAULT_API_KEY]
    ctl.reset()
    assert fake.state.latency == 0.0 and ctl.requests() == []
    with pytest.raises(Exception, match="400"):
        ctl.fail(status=200)
    with pytest.raises(Exception, match="400"):
        ctl.config(latency=-1)


def test_recording_is_capped(fake: FakeAnthropic) -> None:
    fake.state.configure(max_recorded=20)
    for _ in range(60):
        raw(fake, "GET", "/v1/models")
    assert 20 <= len(fake.state.requests) <= 23
    fake.state.configure(record_requests=False)
    fake.state.clear_requests()
    raw(fake, "GET", "/v1/models")
    assert fake.state.requests == []


def test_parse_failure_validation() -> None:
    assert parse_failure({}).status == 529
    assert parse_failure({"type": "rate_limit_error"}).status == 429
    assert parse_failure({"status": 500}).error_type == "api_error"
    assert parse_failure({"mid_stream_after": 2}).kind == "mid_stream"
    assert parse_failure({"hang": True}).streaming_only is False
    assert parse_failure({"hang": True, "mid_stream_after": 1}).streaming_only is True
    for bad in ({"status": 200}, {"type": "bogus"}, {"count": 0}, {"mid_stream_after": -1}):
        with pytest.raises(ValueError):
            parse_failure(bad)


async def test_async_fake_on_the_running_loop() -> None:
    async with AsyncFakeAnthropic(FakeState(api_keys={"k"})) as server:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/v1/models", headers=headers) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["data"]
        assert server.state.requests[-1].path == "/v1/models"


def test_cli_subprocess() -> None:
    with spawn_fake(api_keys=["sk-ant-cli"], event_delay=0.0) as proc:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", proc.url) and not proc.url.endswith(":0")
        with anthropic.Anthropic(api_key="sk-ant-cli", base_url=proc.url, max_retries=0) as cli_client:
            assert (
                cli_client.messages.create(model=MODEL, max_tokens=5, messages=user("x")).usage.output_tokens
                == 5
            )
            proc.control.fail(status=429)
            with pytest.raises(anthropic.RateLimitError):
                cli_client.models.list()
        assert proc.control.requests()[0]["headers"]["authorization"] == "Bearer sk-ant-cli"
    assert proc.proc.returncode == 0


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=1, max_size=80).filter(lambda s: s.strip() != ""),
    words=st.integers(min_value=0, max_value=40),
    max_tokens=st.integers(min_value=1, max_value=50),
)
def test_reply_properties(text: str, words: int, max_tokens: int) -> None:
    body = {"model": MODEL, "max_tokens": max_tokens, "messages": user(f"{text} reply with {words} words")}
    reply = plan_reply(body)
    again = plan_reply(body)
    assert reply.content == again.content
    produced = sum(len(b["text"].split()) for b in reply.content if b["type"] == "text")
    assert produced == min(words, max_tokens)
    assert reply.output_tokens == max(produced, 1)
    assert reply.stop_reason == ("max_tokens" if words > max_tokens else "end_turn")
    assert reply.input_tokens == estimate_input_tokens(body)
    streamed = "".join(
        json.loads(chunk.split(b"data: ", 1)[1])["delta"].get("text", "")
        for chunk in stream_events(reply, MODEL_ID)
        if chunk.startswith(b"event: content_block_delta")
    )
    assert streamed == "".join(b["text"] for b in reply.content if b["type"] == "text")


def test_state_defaults() -> None:
    state = FakeState()
    assert state.api_keys == {DEFAULT_API_KEY}
    assert state.latency == 0.0 and state.event_delay == 0.0 and state.failures == [] and state.requests == []
    assert state.resolve_model("claude-sonnet-4-5") is not None
    assert state.resolve_model("claude-opus-4-1") is not None
    assert state.resolve_model("claude-haiku-4-5-20251001") is not None


def test_the_fake_bills_referenced_files_and_urls_and_shows_its_ledger() -> None:
    import httpx

    from tests.support.fake_anthropic import FakeAnthropic, FakeControl

    with FakeAnthropic() as fake:
        h = {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"}
        r = httpx.post(fake.url + "/v1/files", headers=h, files={"file": ("a.txt", b"x" * 4_000, "text/plain")})
        file_id = r.json()["id"]
        content = [{"type": "document", "source": {"type": "file", "file_id": file_id}},
                   {"type": "image", "source": {"type": "url", "url": "https://example.com/i.png"}},
                   {"type": "text", "text": "hi"}]  # fmt: skip
        body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
        counted = httpx.post(fake.url + "/v1/messages/count_tokens", headers=h,
                             json={k: v for k, v in body.items() if k != "max_tokens"}).json()["input_tokens"]
        assert counted == 1 + 1_000 + 5_000  # "hi", the file's 4,000 characters, one URL source
        usage = httpx.post(fake.url + "/v1/messages", headers=h, json=body).json()["usage"]
        assert usage["input_tokens"] == counted
        ledger = FakeControl(fake.url).billed()
        assert [(b["path"], b["input_tokens"]) for b in ledger] == [("/v1/messages", counted)]  # count_tokens is free
        FakeControl(fake.url).config(url_source_tokens=7)
        assert httpx.post(fake.url + "/v1/messages/count_tokens", headers=h,
                          json={k: v for k, v in body.items() if k != "max_tokens"}).json()["input_tokens"] == 1_008
