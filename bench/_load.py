"""Load generation and measurement for the gateway benchmarks.

Three tools, used by ``gateway_bench.py`` and ``stack_choice.py`` and runnable
on their own:

* ``wrk``: the Debian ``wrk`` (C, epoll) driven by a generated Lua script, for
  throughput and latency. On 2 cores a Python client costs about as much CPU
  per request as the proxy under test and would cap the figure; wrk costs a
  fifth of that (see ``bench/README.md`` for the measured comparison).
* ``closed_loop``: N concurrent asyncio/aiohttp clients, each sending the next
  request as soon as the last one finished (optionally staggered, or paced to
  a fixed aggregate rate), for a duration or a request count; records every
  request's latency. The fallback when wrk is missing.
* ``stream_pairs`` / ``pair_report``: streamed requests, each paired with one
  sent straight to the upstream at the same instant; SSE events are
  timestamped at the client as their bytes arrive, which gives per-event added
  latency and detects batching (events that the upstream spaced by the event
  delay but that reach the client together). ``stream_probe`` /
  ``stream_report`` do the same against a median baseline (the CLI's
  ``--stream``).

CLI (from the repo root)::

    python bench/_load.py URL --key K [--concurrency 32] [--duration 5 | --requests N]
    python bench/_load.py URL --key K --wrk [--duration 5]
    python bench/_load.py URL --key K --stream [--streams 64] [--event-delay 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ANTHROPIC_VERSION = "2023-06-01"


# --------------------------------------------------------------------------- stats


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]. NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(lat_s: list[float]) -> dict[str, float]:
    """Latencies in seconds -> milliseconds summary."""
    return {
        "n": len(lat_s),
        "p50": percentile(lat_s, 50) * 1e3,
        "p90": percentile(lat_s, 90) * 1e3,
        "p99": percentile(lat_s, 99) * 1e3,
        "max": (max(lat_s) * 1e3) if lat_s else math.nan,
        "mean": (statistics.fmean(lat_s) * 1e3) if lat_s else math.nan,
    }


# --------------------------------------------------------------------------- requests


def message_body(model: str, *, stream: bool = False, max_tokens: int = 64) -> bytes:
    return json.dumps(
        {
            "model": model,
            "max_tokens": max_tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": "Say hello in a few words."}],
        },
        separators=(",", ":"),
    ).encode()


def auth_headers(key: str, *, bearer: bool = False) -> dict[str, str]:
    h = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
    if bearer:
        h["authorization"] = f"Bearer {key}"
    else:
        h["x-api-key"] = key
    return h


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else math.nan

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = summarize(self.latencies)
        d.update(rps=self.rps, errors=self.errors, elapsed=self.elapsed)
        if self.first_error:
            d["first_error"] = self.first_error
        return d


async def closed_loop(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    concurrency: int = 32,
    duration: float | None = 5.0,
    requests: int | None = None,
    warmup: float = 0.5,
    rate: float | None = None,
    stagger: float = 0.0,
    timeout: float = 30.0,
) -> LoadResult:
    """``concurrency`` clients on one keep-alive pool, each sending its next
    request when the last one is answered; stop after ``duration`` seconds or
    ``requests`` requests. Requests started in the first ``warmup`` seconds
    are not recorded.

    ``stagger``: client i starts i*stagger seconds late. Against an upstream
    with a fixed latency, clients that start together stay in lockstep and hit
    the proxy in bursts of ``concurrency`` requests; staggering by
    latency/concurrency spreads them out as independent clients would be.
    ``rate`` (requests/s in total): each client also waits for its next slot,
    so the load stays below saturation."""
    result = LoadResult()
    conn = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    to = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=to, auto_decompress=False) as session:

        async def one(record: bool) -> None:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                if record:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                return
            t1 = time.perf_counter()
            if not record:
                return
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(t1 - t0)
            else:
                result.errors += 1
                result.first_error = result.first_error or f"HTTP {status}"

        counter = {"left": requests if requests is not None else -1}
        origin = time.perf_counter()
        start = origin + max(warmup, stagger * concurrency)
        end = start + duration if duration is not None and requests is None else math.inf
        interval = concurrency / rate if rate else 0.0

        async def client(idx: int) -> None:
            if stagger:
                await asyncio.sleep(stagger * idx)
            nxt = time.perf_counter()
            while True:
                now = time.perf_counter()
                if counter["left"] == 0 or now >= end:
                    return
                record = now >= start
                if record and counter["left"] > 0:
                    counter["left"] -= 1
                if interval:
                    delay = nxt - now
                    if delay > 0:
                        await asyncio.sleep(delay)
                    nxt += interval
                await one(record)

        await asyncio.gather(*(client(i) for i in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- streaming probe


@dataclass
class StreamTrace:
    start: float
    names: list[str]
    times: list[float]  # perf_counter when the event's last byte arrived
    status: int = 200
    error: str = ""

    def offsets(self) -> list[float]:
        return [t - self.start for t in self.times]


def _event_name(raw: bytes) -> str:
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode("ascii", "replace")
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                return str(json.loads(line[5:]).get("type", "data"))
            except ValueError:
                return "data"
    return "?"


async def _one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, start: float | None = None
) -> StreamTrace:
    """One streamed request. Events are split on the blank line that ends them
    as the bytes come in (``iter_any``: one timestamp per socket read), so two
    events that arrive in one read get the same timestamp: that is what
    batching looks like."""
    tr = StreamTrace(start=time.perf_counter() if start is None else start, names=[], times=[])
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            tr.status = resp.status
            buf = b""
            async for chunk in resp.content.iter_any():
                now = time.perf_counter()
                buf += chunk.replace(b"\r\n", b"\n")
                while True:
                    cut = buf.find(b"\n\n")
                    if cut < 0:
                        break
                    raw, buf = buf[:cut], buf[cut + 2 :]
                    if raw.strip():
                        tr.names.append(_event_name(raw))
                        tr.times.append(now)
            if buf.strip():
                tr.names.append(_event_name(buf))
                tr.times.append(time.perf_counter())
    except (TimeoutError, aiohttp.ClientError) as exc:
        tr.error = repr(exc)
    return tr


async def stream_probe(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    concurrency: int = 16,
    streams: int = 64,
    warmup_streams: int = 4,
    timeout: float = 60.0,
) -> list[StreamTrace]:
    """Run ``streams`` streamed requests, ``concurrency`` at a time, and return
    a trace per stream: the arrival time of each SSE event at the client."""
    conn = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    to = aiohttp.ClientTimeout(total=timeout)
    traces: list[StreamTrace] = []
    async with aiohttp.ClientSession(connector=conn, timeout=to, auto_decompress=False) as session:
        for _ in range(warmup_streams):
            await _one_stream(session, url, headers, body)
        sem = asyncio.Semaphore(concurrency)

        async def limited() -> None:
            async with sem:
                traces.append(await _one_stream(session, url, headers, body))

        await asyncio.gather(*(limited() for _ in range(streams)))
    return traces


Req = tuple[str, dict[str, str], bytes]  # url, headers, body


async def stream_pairs(
    target: Req,
    reference: Req,
    *,
    concurrency: int = 16,
    pairs: int = 64,
    warmup: int = 2,
    stagger: float = 0.0,
    timeout: float = 60.0,
) -> list[tuple[StreamTrace, StreamTrace]]:
    """Streams in pairs: each pair sends one request through the target and one
    straight to the upstream at the same instant, sharing one start time.

    The upstream (one event loop) then emits both streams' events on the same
    timer ticks, so the reference stream is a clock of when each event left the
    upstream, under the same machine load: ``target time - reference time`` of
    the same event is what the target added to it, without the drift and noise
    that make separately measured runs hard to compare. ``concurrency`` pairs
    run at once; worker i starts ``i * stagger`` seconds late (streams that all
    start together stay in lockstep, and every event tick becomes a burst)."""
    to = aiohttp.ClientTimeout(total=timeout)
    c1 = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    c2 = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    out: list[tuple[StreamTrace, StreamTrace]] = []
    async with (
        aiohttp.ClientSession(connector=c1, timeout=to, auto_decompress=False) as s1,
        aiohttp.ClientSession(connector=c2, timeout=to, auto_decompress=False) as s2,
    ):

        async def pair() -> tuple[StreamTrace, StreamTrace]:
            start = time.perf_counter()
            a, b = await asyncio.gather(
                _one_stream(s1, *target, start=start), _one_stream(s2, *reference, start=start)
            )
            return a, b

        for _ in range(warmup):
            await pair()
        left = {"n": pairs}

        async def worker(idx: int) -> None:
            await asyncio.sleep(stagger * idx)
            while left["n"] > 0:
                left["n"] -= 1
                out.append(await pair())

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return out


def _align_names(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    if a == b:
        return [(i, i) for i in range(len(a))]
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [(blk.a + k, blk.b + k) for blk in sm.get_matching_blocks() for k in range(blk.size)]


def pair_report(
    pairs: list[tuple[StreamTrace, StreamTrace]], event_delay: float, threshold: float = 0.001
) -> dict[str, Any]:
    """Per-event added latency and batching from paired streams.

    * lag: arrival of event i through the target minus its arrival on the
      paired direct stream (ms); the first event's lag is the first-byte cost.
    * relay: the same after the first event, minus the first event's lag:
      what relaying one more event costs.
    * batched: gaps the reference shows as spaced (>= event_delay/2) that the
      target delivered less than ``threshold`` apart."""
    lag: list[float] = []
    relay: list[float] = []
    first: list[float] = []
    batched = checked = failed = other_shape = 0
    first_error = ""
    for tgt, ref in pairs:
        if tgt.error or tgt.status != 200 or not tgt.times or ref.error or ref.status != 200 or not ref.times:
            failed += 1
            first_error = first_error or tgt.error or ref.error or f"HTTP {tgt.status}/{ref.status}"
            continue
        if tgt.names != ref.names:
            other_shape += 1
        m = _align_names(tgt.names, ref.names)
        if not m:
            continue
        ti0, ri0 = m[0]
        lag0 = tgt.times[ti0] - ref.times[ri0]
        first.append(lag0)
        for ti, ri in m:
            d = tgt.times[ti] - ref.times[ri]
            lag.append(d)
            if ti != ti0:
                relay.append(d - lag0)
        for (ta, ra), (tb, rb) in itertools.pairwise(m):
            if tb != ta + 1 or rb != ra + 1:
                continue
            if ref.times[rb] - ref.times[ra] < event_delay / 2:
                continue
            checked += 1
            if tgt.times[tb] - tgt.times[ta] < threshold:
                batched += 1
    return {
        "pairs": len(pairs),
        "failed": failed,
        "shape_mismatch": other_shape,
        "events_compared": len(lag),
        "lag_p50": percentile(lag, 50) * 1e3,
        "lag_p99": percentile(lag, 99) * 1e3,
        "lag_max": (max(lag) * 1e3) if lag else math.nan,
        "relay_p50": percentile(relay, 50) * 1e3,
        "relay_p99": percentile(relay, 99) * 1e3,
        "ttfe_p50": percentile(first, 50) * 1e3,
        "batched": batched,
        "gaps_checked": checked,
        "first_error": first_error,
    }


@dataclass
class Baseline:
    """The typical stream of the direct path: event names and the median
    arrival offset (seconds since the request was sent) of each."""

    names: list[str]
    offsets: list[float]


def stream_baseline(traces: list[StreamTrace]) -> Baseline:
    good = [t for t in traces if t.status == 200 and not t.error and t.times]
    if not good:
        return Baseline([], [])
    shape = statistics.mode(tuple(t.names) for t in good)
    same = [t.offsets() for t in good if tuple(t.names) == shape]
    return Baseline(list(shape), [statistics.median(o[i] for o in same) for i in range(len(shape))])


def _align(trace: StreamTrace, base: Baseline) -> list[tuple[int, int]]:
    """Pairs (trace index, baseline index) of the same events. A proxy may drop
    or add an event (e.g. a ping): only the events both have are compared."""
    return _align_names(trace.names, base.names)


def stream_lags(traces: list[StreamTrace], base: Baseline) -> tuple[list[float], list[float]]:
    """Per-event lag behind the baseline, in seconds.

    Returns (from_start, from_first): ``from_start`` compares each event's
    arrival time since the request was sent, so it includes any first-byte
    overhead; ``from_first`` compares arrival time since the first event, so
    it is the relay delay alone (events after the first)."""
    from_start: list[float] = []
    from_first: list[float] = []
    for t in traces:
        if t.status != 200 or t.error or not t.times:
            continue
        off = t.offsets()
        pairs = _align(t, base)
        if not pairs:
            continue
        ti0, bi0 = pairs[0]
        for ti, bi in pairs:
            from_start.append(off[ti] - base.offsets[bi])
            if ti != ti0:
                from_first.append((off[ti] - off[ti0]) - (base.offsets[bi] - base.offsets[bi0]))
    return from_start, from_first


def batching(
    traces: list[StreamTrace], base: Baseline, event_delay: float, threshold: float = 0.001
) -> tuple[int, int]:
    """Count event gaps that the upstream spaced (baseline gap >= event_delay/2)
    but that reached the client less than ``threshold`` apart.
    Returns (batched, spaced_gaps_checked)."""
    batched = checked = 0
    for t in traces:
        if t.status != 200 or t.error or not t.times:
            continue
        pairs = _align(t, base)
        for (ta, ba), (tb, bb) in itertools.pairwise(pairs):
            if tb != ta + 1 or bb != ba + 1:
                continue
            if base.offsets[bb] - base.offsets[ba] < event_delay / 2:
                continue
            checked += 1
            if t.times[tb] - t.times[ta] < threshold:
                batched += 1
    return batched, checked


def stream_report(traces: list[StreamTrace], base: Baseline, event_delay: float) -> dict[str, Any]:
    """Summary of a probe against a baseline (usually the direct run's)."""
    ok = [t for t in traces if t.status == 200 and not t.error and t.times]
    bad = len(traces) - len(ok)
    shape_mismatch = sum(1 for t in ok if t.names != base.names)
    from_start, from_first = stream_lags(traces, base)
    b, checked = batching(traces, base, event_delay)
    ttfe = [t.times[0] - t.start for t in ok]
    first_err = next((t.error or f"HTTP {t.status}" for t in traces if t.error or t.status != 200), "")
    return {
        "streams": len(traces),
        "failed": bad,
        "shape_mismatch": shape_mismatch,
        "events_per_stream": len(base.names),
        "events_compared": len(from_start),
        "lag_p50": percentile(from_start, 50) * 1e3,
        "lag_p99": percentile(from_start, 99) * 1e3,
        "relay_p50": percentile(from_first, 50) * 1e3,
        "relay_p99": percentile(from_first, 99) * 1e3,
        "ttfe_p50": percentile(ttfe, 50) * 1e3,
        "ttfe_p99": percentile(ttfe, 99) * 1e3,
        "batched": b,
        "gaps_checked": checked,
        "first_error": first_err,
    }


# --------------------------------------------------------------------------- wrk

_WRK_LUA = r"""
wrk.method = "POST"
local f = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local k, v = string.match(line, "^([^:]+):%s*(.*)$")
  if k then wrk.headers[k] = v end
end
-- Optional stagger: connection i sends its first request i*stagger ms late,
-- so closed-loop clients against a fixed-latency upstream do not move in
-- lockstep. (One wrk thread: one Lua state sees every connection's first call.)
local conns = tonumber(os.getenv("BENCH_CONNS") or "0")
local stagger = tonumber(os.getenv("BENCH_STAGGER_MS") or "0")
local started = 0
if stagger > 0 then
  delay = function()
    if started < conns then
      started = started + 1
      return math.floor((started - 1) * stagger + 0.5)
    end
    return 0
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    connections: int = 32,
    duration: int = 5,
    threads: int = 1,
    cpu: str | None = None,
    timeout_s: int = 10,
    stagger_ms: float = 0.0,
) -> dict[str, Any]:
    """Run wrk against ``url`` (POST ``body``) and return req/s and latency (ms).
    ``cpu``: a taskset CPU list to pin wrk to. ``stagger_ms``: connection i
    starts i*stagger_ms late (needs threads=1)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp, "post.lua")
        script.write_text(_WRK_LUA)
        body_file = Path(tmp, "body.json")
        body_file.write_bytes(body)
        env = dict(
            os.environ,
            BENCH_BODY_FILE=str(body_file),
            BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()),
            BENCH_CONNS=str(connections),
            BENCH_STAGGER_MS=str(stagger_ms if threads == 1 else 0),
        )
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, int(duration))}s",
            "--timeout",
            f"{timeout_s}s",
            "-s",
            str(script),
            url,
        ]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    raw = json.loads(line[8:])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    secs = raw["duration_us"] / 1e6
    good = raw["requests"] - raw["status"]
    return {
        "rps": good / secs if secs else math.nan,
        "requests": raw["requests"],
        "errors": errors,
        "non2xx": raw["status"],
        "elapsed": secs,
        "p50": raw["p50_us"] / 1e3,
        "p90": raw["p90_us"] / 1e3,
        "p99": raw["p99_us"] / 1e3,
        "max": raw["max_us"] / 1e3,
        "mean": raw["mean_us"] / 1e3,
    }


# --------------------------------------------------------------------------- CLI


def _fmt(d: dict[str, Any]) -> str:
    keys = ["n", "requests", "rps", "p50", "p90", "p99", "max", "errors"]
    parts = []
    for k in keys:
        if k in d:
            v = d[k]
            parts.append(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}")
    if d.get("first_error"):
        parts.append(f"first_error={d['first_error']}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Load generator for POST /v1/messages (Anthropic-style).")
    p.add_argument("url", help="full URL, e.g. http://127.0.0.1:8080/v1/messages")
    p.add_argument("--key", required=True, help="sent as x-api-key (or Bearer with --bearer)")
    p.add_argument("--bearer", action="store_true")
    p.add_argument("--model", default="claude-sonnet-4-6")
    p.add_argument("--concurrency", "-c", type=int, default=32)
    p.add_argument("--duration", "-d", type=float, default=5.0)
    p.add_argument("--requests", "-n", type=int, default=None)
    p.add_argument("--rate", type=float, default=None, help="pace to this many req/s in total")
    p.add_argument("--wrk", action="store_true", help="use wrk (throughput) instead of the Python client")
    p.add_argument("--stream", action="store_true", help="streaming probe")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--event-delay", type=float, default=0.02, help="the gap the upstream puts between events")
    args = p.parse_args(argv)
    headers = auth_headers(args.key, bearer=args.bearer)
    if args.stream:
        traces = asyncio.run(
            stream_probe(
                args.url,
                headers,
                message_body(args.model, stream=True),
                concurrency=args.concurrency,
                streams=args.streams,
            )
        )
        base = stream_baseline(traces)
        rep = stream_report(traces, base, args.event_delay)
        # against its own median: this is the jitter floor of the path
        print(json.dumps(rep, indent=2))
        gaps = [b - a for a, b in zip(base.offsets, base.offsets[1:], strict=False)]
        print("median gaps (ms):", " ".join(f"{g * 1e3:.1f}" for g in gaps))
        return 0
    body = message_body(args.model)
    if args.wrk:
        if not have_wrk():
            print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
            return 2
        print(_fmt(wrk(args.url, headers, body, connections=args.concurrency, duration=int(args.duration))))
        return 0
    res = asyncio.run(
        closed_loop(
            args.url,
            headers,
            body,
            concurrency=args.concurrency,
            duration=args.duration,
            requests=args.requests,
            rate=args.rate,
        )
    )
    print(_fmt(res.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
