"""The TypeScript SDK and Claude Code parse what the response filter makes of streams and messages.

Both come from npm, pinned by tests/gateway/node/package-lock.json and
installed by .ci/run into ``.venv-tools/node`` (or ``$CLAUDEGATE_NODE_CLIENTS``),
as for tests/gateway/test_node_clients.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(os.environ.get("CLAUDEGATE_NODE_CLIENTS", ROOT / ".venv-tools" / "node"))
NODE = shutil.which("node")
SCRIPT = Path(__file__).parent / "node" / "filter_check.mjs"

pytestmark = pytest.mark.skipif(
    NODE is None or not (CLIENTS / "node_modules" / "@anthropic-ai" / "sdk").is_dir(),
    reason=f"node or the npm clients are not installed in {CLIENTS}; .ci/run installs them",
)
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
    proc = make_gateway(tmp_path_factory.mktemp("jsgw"), fake_anthropic.url, fake_anthropic.api_key, RULES)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProc) -> str:
    return gw.create_key("js")


@pytest.fixture(scope="module")
def script_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # ESM resolves packages next to the script: a copy beside the install's node_modules.
    where = tmp_path_factory.mktemp("js")
    (where / "node_modules").symlink_to(CLIENTS / "node_modules")
    shutil.copy(SCRIPT, where / SCRIPT.name)
    return where


def js(gw: GatewayProc, key: str, mode: str, body: dict[str, Any], where: Path) -> dict[str, Any]:
    r = subprocess.run([str(NODE), str(where / SCRIPT.name), gw.url, key, mode, json.dumps(body)],
                       capture_output=True, text=True, timeout=60, cwd=where, env={"PATH": os.environ["PATH"], "HOME": str(where)})
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_ts_sdk_parses_a_redacted_stream_split_one_char_per_event(gw: GatewayProc, key: str, fake: FakeAnthropic,
                                                                  script_dir: Path) -> None:
    text = f"Here: {KEY} — 中文 😀 end."
    fake.state.configure(script=[{"type": "thinking", "deltas": list(f"t {KEY}")},
                                 {"type": "text", "deltas": list(text)}])
    out = js(gw, key, "stream", BODY, script_dir)
    assert out["ok"], out
    content = out["message"]["content"]
    assert content[0]["thinking"] == "t [REDACTED:secrets]"
    assert content[1]["text"] == "Here: [REDACTED:secrets] — 中文 😀 end."
    assert KEY not in json.dumps(out)


def test_ts_sdk_parses_a_redacted_tool_use_input(gw: GatewayProc, key: str, fake: FakeAnthropic,
                                                 script_dir: Path) -> None:
    source = json.dumps({"cmd": f"curl -H 'x-api-key: {KEY}' https://x", "n": 4111111111111111}, ensure_ascii=True)
    fake.state.configure(script=[{"type": "tool_use", "name": "run", "deltas": list(source)}])
    body = {**BODY, "tools": [TOOL]}
    for mode in ("stream", "create"):
        out = js(gw, key, mode, body, script_dir)
        assert out["ok"], out
        block = out["message"]["content"][0]
        assert block["type"] == "tool_use"
        assert block["input"] == {"cmd": "curl -H 'x-api-key: [REDACTED:secrets]' https://x",
                                  "n": "[REDACTED:secrets]"}


def test_ts_sdk_raises_the_block_error_event(gw: GatewayProc, key: str, fake: FakeAnthropic,
                                            script_dir: Path) -> None:
    fake.state.configure(script=[{"type": "text", "deltas": list("about project falcon " + "z" * 50)}])
    out = js(gw, key, "stream", BODY, script_dir)
    assert not out["ok"] and "codename" in out["message"], out


def test_claude_code_prints_a_redacted_streamed_answer(gw: GatewayProc, fake: FakeAnthropic, tmp_path: Path) -> None:
    key = gw.create_key("claude-code-filtered", "--max-tokens", "64000")
    answer = f"Your key is {KEY} and that is all."
    fake.state.configure(script=[{"type": "text", "deltas": list(answer)}])
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gw.url, "ANTHROPIC_AUTH_TOKEN": key,
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    }  # fmt: skip
    out = subprocess.run(
        # The launcher that finds the platform binary: installed with --ignore-scripts,
        # .bin/claude is only a placeholder that postinstall would replace.
        [str(NODE), str(CLIENTS / "node_modules" / "@anthropic-ai" / "claude-code" / "cli-wrapper.cjs"),
         "-p", "hi", "--model", MODEL],
        env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    assert "Your key is [REDACTED:secrets] and that is all." in out.stdout
    assert "Qm7Xr2Lp9Vt4" not in out.stdout + out.stderr
