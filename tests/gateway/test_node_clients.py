"""The TypeScript SDK and Claude Code, unchanged, through the gateway.

Both come from npm, pinned, installed by .ci/run into ``.venv-tools/node``
(or ``$CLAUDEGATE_NODE_CLIENTS``). Claude Code is what sends
``POST /v1/messages?beta=true`` with a long ``anthropic-beta`` list and
~50-90 KB bodies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from claudegate_gateway import routes
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(os.environ.get("CLAUDEGATE_NODE_CLIENTS", ROOT / ".venv-tools" / "node"))
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (CLIENTS / "node_modules" / "@anthropic-ai" / "sdk").is_dir(),
    reason=f"node or the npm clients are not installed in {CLIENTS}; .ci/run installs them",
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("node"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


def test_typescript_sdk_uses_every_operation_through_the_gateway(
    gw: GatewayProc, fake: FakeAnthropic, tmp_path: Path
) -> None:
    key = gw.create_key("ts", "--models", "claude-sonnet-*")
    # ESM resolves packages next to the script: run a copy beside the install's node_modules.
    (tmp_path / "node_modules").symlink_to(CLIENTS / "node_modules")
    script = tmp_path / "sdk_check.mjs"
    shutil.copy(Path(__file__).parent / "node" / "sdk_check.mjs", script)
    env = {"PATH": os.environ["PATH"], "GATEWAY_URL": gw.url, "GATEWAY_KEY": key, "HOME": str(tmp_path)}
    out = subprocess.run([str(NODE), str(script)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["text"] and seen["stream_pieces"] >= 5 and seen["stream_output_tokens"] >= 5
    assert seen["beta_text"] and seen["count"] > 0 and seen["beta_count"] > 0
    assert len(seen["models"]) >= 3 and seen["model"] == "claude-sonnet-4-6" and seen["beta_models"] > 0
    assert seen["file_listed"] and seen["file_name"] == "ts.txt" and seen["file_content"] == "ts notes"
    assert seen["batch_get"] and seen["batch_listed"]
    assert seen["batch_results"] == seen["beta_batch_results"] == ["t0", "t1"]
    assert seen["refused"] == {"status": 403, "type": "permission_error"}
    # Every operation of the route table was used, each at its canonical path.
    used = set()
    for r in fake.state.requests:
        used.add(routes.match(r.method, r.raw_path, r.raw_query).op.name)
    # Lists are answered by the gateway from its own index (seen["*_listed"] above), never upstream.
    lists = {op.name for op in routes.OPERATIONS if op.owner_action == "list"}
    assert used == {op.name for op in routes.OPERATIONS if not op.local} - {"batches.cancel"} - lists, used


def test_claude_code_print_mode_through_the_gateway(gw: GatewayProc, fake: FakeAnthropic, tmp_path: Path) -> None:
    key = gw.create_key("claude-code", "--models", "claude-sonnet-*", "--max-tokens", "64000")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gw.url, "ANTHROPIC_AUTH_TOKEN": key,
        # No telemetry, update checks or other traffic that is not the API.
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    }  # fmt: skip
    # The launcher that finds the platform binary: installed with --ignore-scripts,
    # .bin/claude is only a placeholder that postinstall would replace.
    claude = CLIENTS / "node_modules" / "@anthropic-ai" / "claude-code" / "cli-wrapper.cjs"
    out = subprocess.run(
        ["node", str(claude), "-p", "hi", "--model", "claude-sonnet-4-6"],
        env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    assert out.stdout.strip(), out.stderr[-2000:]
    sent = fake.state.requests_for("/v1/messages", "POST")
    assert sent, [(r.method, r.raw_path) for r in fake.state.requests]
    first = sent[0]
    assert first.raw_query == "beta=true" and len(first.body) > 20_000
    assert "claude-code-20250219" in first.headers["anthropic-beta"]
    assert first.headers["x-api-key"] == fake.api_key and "authorization" not in first.headers
    records = [r for r in gw.audit(at_least=1) if r["key_name"] == "claude-code"]
    assert records and all(r["status"] == 200 and r["operation"] == "messages.create" for r in records), records
    assert sum(r["output_tokens"] for r in records) > 0
