"""What the route table and the worker hand-off cost, measured in one run.

* matching: ``routes.match`` (canonical-path regex, row lookup, query
  allowlist) on the requests real clients send, against the check it
  replaced (prefix and segment tests on the raw path, query passed as is);
* strict parsing: ``jsonbody.parse_object`` (duplicate keys, depth) against
  plain ``json.loads`` on a body shaped like Claude Code's;
* hand-off: inspecting a JSON body inline on the event loop against the same
  inspection in the worker process (pickling the body there, the result
  back), for bodies around the threshold (``offload.INLINE_MAX``) and larger.

Usage (from the repo root, main venv)::

    .venv/bin/python bench/route_cost.py [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from claudegate_gateway import offload, routes
from claudegate_gateway.jsonbody import parse_object
from claudegate_gateway.keystore import Scopes

REQUESTS = [
    ("POST", "/v1/messages", ""),
    ("POST", "/v1/messages", "beta=true"),
    ("POST", "/v1/messages/count_tokens", ""),
    ("GET", "/v1/models", "limit=20"),
    ("GET", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results", ""),
    ("GET", "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w", ""),
]


def old_check(raw_path: str, raw_query: str) -> str:
    """The path check this table replaced (proxy.py before the route table)."""
    if not raw_path.startswith("/v1/"):
        raise ValueError("not found")
    lowered = raw_path.lower()
    segments = raw_path.split("/")
    if ".." in segments or "." in segments or "" in segments[1:-1] or any(
        b in lowered for b in ("%2e", "%2f", "%5c", "\\")
    ):
        raise ValueError("bad path")
    return raw_path + ("?" + raw_query if raw_query else "")


def per_call_us(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of 5: the machine is shared
        t = time.perf_counter()
        for _ in range(n):
            for method, path, query in REQUESTS:
                fn(method, path, query)
        best = min(best, (time.perf_counter() - t) / (n * len(REQUESTS)))
    return best * 1e6


def claude_code_like() -> bytes:
    """~58 KB: a long system prompt, 20 tools with schemas, 50 turns (the shape Claude Code sends)."""
    tools = [{"name": f"t{i}", "description": "d" * 200, "input_schema": {"type": "object", "properties": {
        f"p{j}": {"type": "string", "description": "x" * 50} for j in range(10)}}} for i in range(20)]
    turns = [{"role": "user", "content": [{"type": "text", "text": "hi" * 100}]} for _ in range(50)]
    return json.dumps({"model": "m", "max_tokens": 5, "system": "s" * 20000, "tools": tools,
                       "messages": turns}).encode()  # fmt: skip


def parse_ms(fn: Any, body: bytes) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(50):
            fn(body)
        best = min(best, (time.perf_counter() - t) / 50)
    return best * 1000


def body_of(size: int) -> bytes:
    words = ["alpha", "beta", "gamma", "delta", "lorem", "ipsum", "dolor", "sit", "amet", "vista"]
    text = " ".join(words[i % len(words)] + str(i % 97) for i in range(size // 8))[:size]
    blocks = [{"type": "text", "text": text[i : i + 50_000]} for i in range(0, len(text), 50_000)]
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64,
                       "messages": [{"role": "user", "content": blocks}]}).encode()  # fmt: skip


async def handoff(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    policy = offload.build_policy(None, "bench")
    pool = offload.Offload(policy, None, "bench", inline_max=0)  # every body to the worker
    inline = offload.Offload(policy, None, "bench", inline_max=1 << 40)  # never
    scopes = Scopes()
    out: list[dict[str, Any]] = []
    try:
        t = time.perf_counter()
        await pool.inspect("message", body_of(1000), scopes)  # the first large body starts the worker
        out.append({"worker_start_ms": round((time.perf_counter() - t) * 1000, 1)})
        for size in sizes:
            body = body_of(size)
            times: dict[str, list[float]] = {"inline": [], "worker": []}
            for _ in range(repeats):
                for name, runner in (("inline", inline), ("worker", pool)):
                    t = time.perf_counter()
                    found = await runner.inspect("message", body, scopes)
                    times[name].append(time.perf_counter() - t)
                    assert found.error is None, found.error
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}
            out.append({"body_bytes": len(body), "inline_ms": round(med["inline"], 2),
                        "worker_ms": round(med["worker"], 2),
                        "handoff_ms": round(med["worker"] - med["inline"], 2),
                        "ratio": round(med["worker"] / med["inline"], 2)})  # fmt: skip
    finally:
        pool.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    n = 20_000

    def new(method: str, path: str, query: str) -> str:
        return routes.match(method, path, query).target

    def old(method: str, path: str, query: str) -> str:
        return old_check(path, query)

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "match_us": round(per_call_us(new, n), 2),
        "old_check_us": round(per_call_us(old, n), 2),
    }
    result["match_ratio"] = round(result["match_us"] / result["old_check_us"], 1)
    sample = claude_code_like()
    result["parse_body_bytes"] = len(sample)
    result["strict_parse_ms"] = round(parse_ms(parse_object, sample), 3)
    result["json_loads_ms"] = round(parse_ms(json.loads, sample), 3)
    result["handoff"] = asyncio.run(handoff([offload.INLINE_MAX, 1 << 20, 8 << 20], 7))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
