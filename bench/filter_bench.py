"""Benchmark the response filter: per-event cost on streams, and its effect on time to first token.

Two parts, both on loopback against the fake Anthropic API:

1. In process, per streamed event: a Claude-like reply (words of 1-3 tokens
   per ``text_delta``, one SSE event per TCP chunk, plus a tool_use input in
   16-character ``input_json_delta`` pieces) goes through
   ``StreamFilter.feed`` event by event. Reported: p50/p99 of the wall time
   each event spends in the filter, and CPU time per event (process time /
   events), for: no response rules (the relay writes the chunk as is: the
   cost is one ``is None`` test, measured as the bare loop), the secret
   detectors (``detectors: [all]``), the detectors plus e-mail/phone, and
   20 regex rules.
2. End to end: the real gateway process, the fake streaming a scripted reply
   with ``--event-delay`` between events; the client measures the time from
   sending the request to the first text byte (TTFT) and to the end, per
   configuration, interleaved over rounds.

Usage (repo root, the worktree's venv):

    .venv/bin/python bench/filter_bench.py              # ~1 min
    .venv/bin/python bench/filter_bench.py --quick      # a few seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from claudegate_gateway.filters import FilterPolicy  # noqa: E402
from claudegate_gateway.filters.response import ResponseFilter  # noqa: E402
from claudegate_gateway.filters.sse import StreamFilter  # noqa: E402
from tests.support.fake_anthropic import FakeAnthropic  # noqa: E402
from tests.support.gateway_proc import make_gateway  # noqa: E402

PROSE = ("The gateway forwards each event as soon as it arrives, and the window holds back only what "
         "could still become a match: a key prefix, a run of digits, an address. Numbers like 42 or "
         "2026-11-30 and words such as skill, task-list or ghost pass at once.")
WORDS = PROSE.split(" ")

REGEX_RULES = [
    {"name": f"r{i:02d}", "pattern": p, "direction": "response", "action": "redact"}
    for i, p in enumerate([
        r"project\s{1,3}falcon", r"\bcodename-[a-z]{3,12}\b", r"internal\.example\.com", r"\bTICKET-\d{3,8}\b",
        r"password\s{0,2}[:=]\s{0,2}\S{4,40}", r"\bsecret-[a-z0-9]{8}\b", r"\bemp\d{6}\b", r"confidential",
        r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", r"\bacct_[A-Za-z0-9]{12}\b", r"do not share", r"salary\s{1,3}\d{2,7}",
        r"\bBUILD-[0-9a-f]{7}\b", r"\bproj-x[0-9]{2}\b", r"private\s{1,2}roadmap", r"\bssn\s{0,2}\d{3}-\d{2}-\d{4}",
        r"\bINV-\d{5,9}\b", r"bearer\s{1,2}[A-Za-z0-9._-]{16,64}", r"\bcustomer-\d{4,10}\b", r"launch\s{1,3}date",
    ])
]
CONFIGS: dict[str, list[dict[str, Any]]] = {
    "no response rules": [{"name": "secrets", "detectors": ["all"], "direction": "request", "action": "block"}],
    "secret detectors": [{"name": "secrets", "detectors": ["all"], "direction": "both", "action": "redact"}],
    "detectors + e-mail/phone": [
        {"name": "secrets", "detectors": ["all"], "direction": "both", "action": "redact"},
        {"name": "pii", "detectors": ["email", "phone"], "direction": "response", "action": "redact"},
    ],
    "20 regex rules": REGEX_RULES,
}


def deltas(n_events: int) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n_events:
        out.append(WORDS[i % len(WORDS)] + " ")
        i += 1
    return out


def sse_events(text_deltas: list[str], tool_json: str) -> list[bytes]:
    def ev(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    events = [ev("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
              ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    events += [ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}})
               for d in text_deltas]
    events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(ev("content_block_start", {"type": "content_block_start", "index": 1,
                                             "content_block": {"type": "tool_use", "id": "t", "name": "x", "input": {}}}))
    events += [ev("content_block_delta", {"type": "content_block_delta", "index": 1,
                                          "delta": {"type": "input_json_delta", "partial_json": tool_json[i:i + 16]}})
               for i in range(0, len(tool_json), 16)]
    events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 1}))
    events.append(ev("message_delta", {"type": "message_delta", "usage": {"output_tokens": 100}}))
    events.append(ev("message_stop", {"type": "message_stop"}))
    return events


def per_event(rules: list[dict[str, Any]], events: list[bytes], repeat: int) -> dict[str, float]:
    rf = ResponseFilter.from_policy(FilterPolicy.from_config(rules))
    samples: list[int] = []
    cpu_samples: list[int] = []
    cpu0 = time.process_time()
    out_bytes = 0
    for _ in range(repeat):
        sf = StreamFilter(rf, "req") if rf is not None else None
        for chunk in events:
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            out = chunk if sf is None else sf.feed(chunk)
            samples.append(time.perf_counter_ns() - t0)
            cpu_samples.append(time.thread_time_ns() - c0)
            out_bytes += len(out)
        if sf is not None:
            out_bytes += len(sf.close())
    cpu = time.process_time() - cpu0
    samples.sort()
    cpu_samples.sort()
    n = len(samples)
    return {
        "p50_us": samples[n // 2] / 1000,
        "p99_us": samples[int(n * 0.99)] / 1000,
        # CPU time of this thread per event: what the filter costs, without
        # the time the (shared) machine spent running something else.
        "cpu_p50_us": cpu_samples[n // 2] / 1000,
        "cpu_p99_us": cpu_samples[int(n * 0.99)] / 1000,
        "cpu_us_per_event": cpu / n * 1e6,
        "window": float(rf.window if rf is not None else 0),
    }


# The hold's worst case: a reply that opens with one long token of address
# characters (a hash, an identifier) may still become an e-mail address, so
# the e-mail rule holds up to its 224-character window.
DENSE = ["a1b2c3d4e5"[i % 10] * 5 for i in range(60)] + [" done."]


def ttft(rounds: int, n_events: int, event_delay: float, reply: list[str] | None = None) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {name: {"ttft": [], "total": []} for name in CONFIGS}
    with FakeAnthropic() as fake:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            gws = {}
            keys = {}
            for i, (name, rules) in enumerate(CONFIGS.items()):
                gw = make_gateway(Path(tmp) / f"gw{i}", fake.url, fake.api_key, {"filters": rules})
                gw.start()
                gws[name] = gw
                keys[name] = gw.create_key("bench")
            try:
                fake.state.configure(event_delay=event_delay,
                                     script=[{"type": "text", "deltas": reply or deltas(n_events)}])
                body = {"model": "claude-sonnet-4-6", "max_tokens": 1000, "stream": True,
                        "messages": [{"role": "user", "content": "go"}]}
                with httpx.Client(timeout=60) as client:
                    for _ in range(rounds):
                        for name, gw in gws.items():
                            t0 = time.perf_counter()
                            first = None
                            with client.stream("POST", gw.url + "/v1/messages", json=body,
                                               headers={"x-api-key": keys[name], "anthropic-version": "2023-06-01"}) as r:
                                for line in r.iter_lines():
                                    if first is None and '"text_delta"' in line:
                                        first = time.perf_counter() - t0
                            results[name]["ttft"].append((first or 0) * 1000)
                            results[name]["total"].append((time.perf_counter() - t0) * 1000)
            finally:
                for gw in gws.values():
                    gw.stop()
    return {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--events", type=int, default=400, help="text deltas per streamed reply")
    ap.add_argument("--event-delay", type=float, default=0.01, help="seconds between events from the fake")
    args = ap.parse_args()
    repeat, rounds = (3, 2) if args.quick else (25, 7)
    tool_json = json.dumps({"command": "ls -la /srv/app && cat README.md", "args": list(range(20)),
                            "note": "nothing to hide here, just a longer tool input for the benchmark " * 4})
    events = sse_events(deltas(args.events), tool_json)
    print(f"per event ({len(events)} events x {repeat}):")
    print(f"{'config':28} {'window':>7} {'wall p50':>9} {'wall p99':>9} {'CPU p50':>8} {'CPU p99':>8} {'CPU mean':>9}  (us)")
    for name, rules in CONFIGS.items():
        r = per_event(rules, events, repeat)
        print(f"{name:28} {r['window']:7.0f} {r['p50_us']:9.1f} {r['p99_us']:9.1f} {r['cpu_p50_us']:8.1f}"
              f" {r['cpu_p99_us']:8.1f} {r['cpu_us_per_event']:9.1f}")
    print(f"\nend to end ({args.events} deltas, {args.event_delay * 1000:.0f} ms apart, median of {rounds}):")
    print(f"{'config':28} {'TTFT ms':>8} {'total ms':>9}")
    for label, reply in (("prose", None), ("one 300-character token first", DENSE)):
        print(f"-- {label}")
        for name, r in ttft(rounds, 40 if args.quick else 100, args.event_delay, reply).items():
            print(f"{name:28} {r['ttft']:8.1f} {r['total']:9.1f}")


if __name__ == "__main__":
    main()
