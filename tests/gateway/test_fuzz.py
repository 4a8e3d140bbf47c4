"""Arbitrary bodies and headers: the gateway answers in Anthropic's shape, never a 500 or a traceback."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just("claude-sonnet-4-6"), st.text(max_size=20), st.integers()),
        "max_tokens": st.one_of(st.integers(min_value=-5, max_value=100_000), st.text(max_size=5), st.none()),
        "messages": st.one_of(
            st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]), "content": json_values}), max_size=3),
            json_values,
        ),
        "system": json_values,
        "stream": st.one_of(st.booleans(), json_values),
        "tools": json_values,
    },
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)


@pytest.fixture(scope="module")
def fuzz_key(module_gateway: GatewayProc) -> str:
    return module_gateway.create_key("fuzz")


def check(r: httpx.Response) -> None:
    assert r.status_code < 500 or r.status_code == 529, r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    if r.status_code >= 400:
        body = r.json()
        assert body["type"] == "error" and isinstance(body["error"]["message"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(message_like, json_values))
def test_json_bodies(body: Any, module_gateway: GatewayProc, fuzz_key: str, fake_anthropic: FakeAnthropic) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches"):
        r = httpx.post(module_gateway.url + path, content=json.dumps(body),
                       headers={"x-api-key": fuzz_key, "anthropic-version": "2023-06-01"}, timeout=10)
        check(r)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), key=header_text, beta=header_text, version=header_text, auth=header_text)
def test_raw_bodies_and_headers(
    raw: bytes, key: str, beta: str, version: str, auth: str, module_gateway: GatewayProc, fuzz_key: str,
    fake_anthropic: FakeAnthropic,
) -> None:
    for api_key in (key, fuzz_key):
        headers = {"x-api-key": api_key, "anthropic-beta": beta, "anthropic-version": version, "authorization": auth}
        check(httpx.post(module_gateway.url + "/v1/messages", content=raw, headers=headers, timeout=10))
