"""The official TypeScript/JavaScript SDK parses what the response filter makes of streams and messages.

The SDK is installed by .ci/run (``npm ci --prefix tests/support/sdk_js``,
pinned with integrity hashes in package-lock.json). Claude Code is not
covered here (see the report in docs/benchmarks.md / the branch notes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

SDK_DIR = Path(__file__).resolve().parents[1] / "support" / "sdk_js"
MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-api03-" + "Qm7Xr2Lp9Vt4Hs8Kd3Nw6Jb1Fz5Yc0Ga" * 2 + "-AbCd"
RULES = {"filters": [
    {"name": "secrets", "detectors": ["all"], "direction": "both", "action": "redact"},
    {"name": "codename", "pattern": r"project\s{1,3}falcon", "direction": "response", "action": "block"},
]}
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": "go"}]}
TOOL = {"name": "run", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    if shutil.which("node") is None or not (SDK_DIR / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        pytest.fail("the TypeScript SDK is not installed: run `npm ci --prefix tests/support/sdk_js` (.ci/run does)")
    proc = make_gateway(tmp_path_factory.mktemp("jsgw"), fake_anthropic.url, fake_anthropic.api_key, RULES)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProc) -> str:
    return gw.create_key("js")


def js(gw: GatewayProc, key: str, mode: str, body: dict[str, Any]) -> dict[str, Any]:
    r = subprocess.run(["node", str(SDK_DIR / "run.mjs"), gw.url, key, mode, json.dumps(body)],
                       capture_output=True, text=True, timeout=60, cwd=SDK_DIR)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_ts_sdk_parses_a_redacted_stream_split_one_char_per_event(gw: GatewayProc, key: str,
                                                                  fake: FakeAnthropic) -> None:
    text = f"Here: {KEY} — 中文 😀 end."
    fake.state.configure(script=[{"type": "thinking", "deltas": list(f"t {KEY}")},
                                 {"type": "text", "deltas": list(text)}])
    out = js(gw, key, "stream", BODY)
    assert out["ok"], out
    content = out["message"]["content"]
    assert content[0]["thinking"] == "t [REDACTED:secrets]"
    assert content[1]["text"] == "Here: [REDACTED:secrets] — 中文 😀 end."
    assert KEY not in json.dumps(out)


def test_ts_sdk_parses_a_redacted_tool_use_input(gw: GatewayProc, key: str, fake: FakeAnthropic) -> None:
    source = json.dumps({"cmd": f"curl -H 'x-api-key: {KEY}' https://x", "n": 4111111111111111}, ensure_ascii=True)
    fake.state.configure(script=[{"type": "tool_use", "name": "run", "deltas": list(source)}])
    body = {**BODY, "tools": [TOOL]}
    for mode in ("stream", "create"):
        out = js(gw, key, mode, body)
        assert out["ok"], out
        block = out["message"]["content"][0]
        assert block["type"] == "tool_use"
        assert block["input"] == {"cmd": "curl -H 'x-api-key: [REDACTED:secrets]' https://x",
                                  "n": "[REDACTED:secrets]"}


def test_ts_sdk_raises_the_block_error_event(gw: GatewayProc, key: str, fake: FakeAnthropic) -> None:
    fake.state.configure(script=[{"type": "text", "deltas": list("about project falcon " + "z" * 50)}])
    out = js(gw, key, "stream", BODY)
    assert not out["ok"] and "codename" in out["message"], out
