"""The demo's echo upstream (``claudegate try``), spoken to by the official SDK as the gateway
would: plain and streamed messages with usage, count_tokens, models, Anthropic's error shape,
and only the demo's own upstream key accepted. Plus the demo's pieces that need no Docker:
its config is a valid deploy.yaml and its container is built as data (labelled, nothing
published)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
import yaml

from claudegate.config import load_config
from claudegate.demo import (
    DEMO_KEY_PREFIX,
    UPSTREAM_CONTAINER,
    Demo,
    base_image_build_argv,
    demo_document,
    upstream_run_argv,
)
from claudegate.session.scripted import ScriptedInteraction
from tests.support.ports import free_port

DEMO_KEY = DEMO_KEY_PREFIX + "0123456789abcdef"


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "claudegate_gateway.demo_upstream", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/v1/models", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def sdk(url: str, key: str = DEMO_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def test_a_message_echoes_the_last_user_text_with_usage(echo_url: str) -> None:
    reply = sdk(echo_url).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        system="be brief",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        ],
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "echo: Hello there"
    assert reply.model == "claude-sonnet-4-6" and reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens == 5  # "echo: Hello there" / 4


def test_a_clients_system_reminders_are_not_echoed_the_prompt_is(echo_url: str) -> None:
    # Claude Code's shape: reminders as text blocks ahead of what the person typed.
    content = [{"type": "text", "text": "<system-reminder>\n# Environment\n" + "x" * 3000 + "</system-reminder>"},
               {"type": "text", "text": "  <system-reminder>more</system-reminder>"},
               {"type": "text", "text": "Hello from Claude Code"}]  # fmt: skip
    reply = sdk(echo_url).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": content}]  # type: ignore[list-item]
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "echo: Hello from Claude Code"
    only = [{"type": "text", "text": "<system-reminder>all there is</system-reminder>"}]
    reply = sdk(echo_url).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": only}]  # type: ignore[list-item]
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "echo: <system-reminder>all there is</system-reminder>"


def test_max_tokens_cuts_the_answer(echo_url: str) -> None:
    reply = sdk(echo_url).messages.create(
        model="claude-haiku-4-5", max_tokens=2, messages=[{"role": "user", "content": "a long sentence here"}]
    )
    assert reply.content[0].type == "text" and reply.content[0].text == "echo: a "  # 2 tokens of 4 characters
    assert reply.stop_reason == "max_tokens"


def test_a_stream_is_sse_with_usage_in_start_and_delta(echo_url: str) -> None:
    with sdk(echo_url).messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "one two three four five"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("content_block_delta") >= 2  # several events: a stream, not one block
    assert final.content[0].type == "text" and final.content[0].text == "echo: one two three four five"
    assert final.usage.output_tokens == 8


def test_count_tokens_and_models(echo_url: str) -> None:
    count = sdk(echo_url).messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "x" * 40}]
    )
    assert count.input_tokens == 10
    ids = [m.id for m in sdk(echo_url).models.list()]
    assert "claude-sonnet-4-6" in ids and "claude-haiku-4-5" in ids
    assert sdk(echo_url).models.retrieve("claude-haiku-4-5").display_name.endswith("(demo echo)")
    with pytest.raises(anthropic.NotFoundError):
        sdk(echo_url).models.retrieve("gpt-4")


@pytest.mark.parametrize("key", ["sk-ant-api03-a-real-looking-key", "", "sk-ant-demo"])
def test_only_the_demo_key_is_accepted(echo_url: str, key: str) -> None:
    response = httpx.get(echo_url + "/v1/models", headers={"x-api-key": key})
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert body["request_id"].startswith("req_")


def test_bad_requests_get_anthropic_errors(echo_url: str) -> None:
    headers = {"x-api-key": DEMO_KEY, "content-type": "application/json"}
    for body in (b"{not json", b"[]", b'{"model": "m", "messages": []}', b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'):
        r = httpx.post(echo_url + "/v1/messages", content=body, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (body, r.text)


def test_the_demo_config_is_a_valid_local_deploy_pointing_at_the_echo(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text(DEMO_KEY + "\n")
    key_file.chmod(0o600)
    doc = demo_document(base_image="claudegate/debian-base:bookworm", upstream_key_file=key_file,
                        state_dir=tmp_path / "state", sudo=False)  # fmt: skip
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    assert cfg.target.is_local and cfg.domain == "localhost" and cfg.tls.mode == "internal-ca"
    assert cfg.upstream.base_url == f"http://{UPSTREAM_CONTAINER}:8080"
    assert (cfg.ports.http, cfg.ports.https) == (8080, 8443)
    assert [c.name for c in cfg.clients] == ["demo"]


def test_the_echo_container_is_labelled_and_publishes_nothing() -> None:
    argv = upstream_run_argv("claudegate/gateway:abc", "claudegate-demo-egress")
    assert argv[:3] == ["docker", "run", "--detach"]
    assert argv[argv.index("--name") + 1] == UPSTREAM_CONTAINER
    assert "org.claudegate.demo=echo-upstream" in argv
    assert argv[argv.index("--network") + 1] == "claudegate-demo-egress"
    assert not {"-p", "--publish", "--publish-all", "-P"} & set(argv)
    assert argv[argv.index("--entrypoint") + 2 :] == [
        "claudegate/gateway:abc", "-m", "claudegate_gateway.demo_upstream", "--listen", "0.0.0.0:8080",
    ]  # fmt: skip


def test_the_base_image_build_uses_the_shipped_recipe(tmp_path: Path) -> None:
    argv = base_image_build_argv("claudegate/debian-base:bookworm", tmp_path)
    script = Path(argv[-1])
    assert script.is_file() and "debootstrap --variant=minbase" in script.read_text()
    assert "CLAUDEGATE_BASE_IMAGE=claudegate/debian-base:bookworm" in argv
    assert f"CLAUDEGATE_TEST_CACHE={tmp_path}" in argv


def test_a_base_image_build_needs_a_yes(tmp_path: Path) -> None:
    from claudegate.errors import Declined

    demo = Demo(ScriptedInteraction(consent_answers=False), directory=tmp_path, say=lambda _: None)
    with pytest.raises(Declined) as info:
        demo.build_base_image("claudegate/debian-base:bookworm")
    assert "debootstrap" in str(info.value) and info.value.flag == "--yes"
