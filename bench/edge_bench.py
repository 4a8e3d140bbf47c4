"""Benchmark the NGINX edge: nginx+gateway vs the gateway alone vs the fake
Anthropic API alone, in one run, plus nginx's TLS handshake rate.

What runs (all on loopback, each in its own process):

  * the fake Anthropic API (``tests/support/fake_anthropic.py``),
  * the gateway in front of it (``claudegate-gateway serve``),
  * nginx rendered by ``claudegate.edge.render_edge`` in front of the gateway,
    with the abuse limits raised out of the way (the figures are about cost,
    not about the limits), TLS 1.3 with a P-256 ECDSA certificate, HTTP/1.1
    keep-alive to the client as the SDK uses it.

What is measured, in interleaved rounds so machine noise hits every target alike:

  * throughput: wrk, N keep-alive connections, non-streaming /v1/messages;
  * latency at one connection (pure overhead): wrk -c1, p50/p99; "added" is a
    target's figure minus the layer below it;
  * streaming: paired streams (``bench/_load.stream_pairs``): each stream
    through the target starts at the same instant as one straight to the fake,
    so the per-event lag is what the target added to that event; batched
    events (spaced by the fake, delivered together) are counted;
  * TLS handshakes: wrk with ``Connection: close`` (a full TLS 1.3 handshake
    per request, answered by nginx itself with its JSON 404), and
    ``openssl s_time -new`` for TLS 1.2 and 1.3 (one client, sequential).

Usage, from the repo root with the main venv:

    /work/venv/bin/python bench/edge_bench.py              # ~2 min
    /work/venv/bin/python bench/edge_bench.py --quick      # ~30 s smoke
    /work/venv/bin/python bench/edge_bench.py --markdown bench/edge_results.md --json /tmp/edge.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# The test PKI is made before anything imports aiohttp: aiohttp builds its
# default TLS context once, at import, from OpenSSL's default paths, and the
# stream probes must trust the test root through SSL_CERT_FILE.
from tests.edge.certs import make_pki  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="edge-bench-"))
PKI = make_pki(WORK / "pki")
os.environ["SSL_CERT_FILE"] = str(PKI.root_ca)

import _load  # noqa: E402

from tests.support.fake_anthropic import FakeControl, spawn_fake  # noqa: E402
from tests.support.gateway_proc import make_gateway  # noqa: E402
from tests.support.nginx_runner import NginxProcess, local_settings  # noqa: E402

MODEL = "claude-haiku-4-5"
TARGETS = ("fake", "gateway", "nginx+gateway")


def fake_config(url: str, **changes: Any) -> None:
    FakeControl(url).config(**changes)


def s_time(port: int, version: str, seconds: int) -> float:
    """Full handshakes per second by one sequential ``openssl s_time`` client."""
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", f"-{version}", "-time", str(seconds)],
        capture_output=True, text=True, timeout=seconds + 30, check=False,
    )  # fmt: skip
    match = re.search(r"(\d+) connections in ([\d.]+)s", out.stdout)
    if match is None:
        raise RuntimeError(f"openssl s_time: {out.stdout[-400:]} {out.stderr[-400:]}")
    return int(match.group(1)) / float(match.group(2))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    work, pki = WORK, PKI

    fake = spawn_fake(api_keys=["sk-bench-upstream"])
    gateway = make_gateway(
        work / "gateway", fake.url, "sk-bench-upstream", {"trusted_proxies": ["127.0.0.1/32"]}
    )
    nginx_dir = work / "nginx"
    nginx_dir.mkdir()
    nginx = NginxProcess(
        local_settings(
            nginx_dir,
            cert_path=str(pki.fullchain),
            key_path=str(pki.key),
            chain_path=str(pki.chain),
            upstream=f"127.0.0.1:{gateway.port}",
            per_ip={"rate": "100000r/s", "burst": 100000},
            per_key={"rate": "100000r/s", "burst": 100000},
            conn_per_ip=65535,
            error_log_level="error",
            worker_processes=1,
        ),
        nginx_dir,
    )
    try:
        gateway.start()
        key = gateway.create_key("bench", "--rpm", "10000000", "--tpm", "10000000000")
        nginx.start()
        return measure(args, fake.url, gateway, nginx, key)
    finally:
        nginx.stop()
        gateway.stop()
        fake.stop()


def measure(
    args: argparse.Namespace, fake_url: str, gateway: Any, nginx: NginxProcess, key: str
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    urls = {
        "fake": (f"{fake_url}/v1/messages", "sk-bench-upstream"),
        "gateway": (f"{gateway.url}/v1/messages", key),
        "nginx+gateway": (f"{nginx.https_url}/v1/messages", key),
    }
    body = _load.message_body(MODEL)
    results: dict[str, Any] = {"throughput": {}, "latency1": {}, "stream": {}, "tls": {}}
    # --- non-streaming: throughput and single-connection latency ----------
    tput: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
    lat: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
    for _ in range(args.rounds):
        for target in TARGETS:
            url, k = urls[target]
            tput[target].append(
                _load.wrk(
                    url, _load.auth_headers(k), body, connections=args.connections, duration=args.seconds
                )
            )
            lat[target].append(
                _load.wrk(url, _load.auth_headers(k), body, connections=1, duration=args.seconds)
            )
    for target in TARGETS:
        results["throughput"][target] = {
            "rps": median([r["rps"] for r in tput[target]]),
            "p50": median([r["p50"] for r in tput[target]]),
            "p99": median([r["p99"] for r in tput[target]]),
            "errors": sum(r["errors"] + r["non2xx"] for r in tput[target]),
        }
        results["latency1"][target] = {
            "p50": median([r["p50"] for r in lat[target]]),
            "p99": median([r["p99"] for r in lat[target]]),
            "errors": sum(r["errors"] + r["non2xx"] for r in lat[target]),
        }

    # --- streaming: per-event lag against paired direct streams ----------
    fake_config(fake_url, event_delay=args.event_delay)
    stream_body = _load.message_body(MODEL, stream=True, max_tokens=256)
    ref = (urls["fake"][0], _load.auth_headers("sk-bench-upstream"), stream_body)
    for target in ("gateway", "nginx+gateway"):
        url, k = urls[target]
        for concurrency, count in ((1, max(8, args.streams // 4)), (args.stream_concurrency, args.streams)):
            pairs = asyncio.run(
                _load.stream_pairs(
                    (url, _load.auth_headers(k), stream_body),
                    ref,
                    concurrency=concurrency,
                    pairs=count,
                    warmup=2,
                    stagger=args.event_delay / concurrency,
                )
            )
            results["stream"][f"{target}@{concurrency}"] = _load.pair_report(pairs, args.event_delay)
    fake_config(fake_url, event_delay=0.0)

    # --- TLS handshakes --------------------------------------------------
    port = nginx.settings.https_port
    closing = _load.wrk(
        f"{nginx.https_url}/edge-handshake",
        {"Connection": "close"},
        b"",
        connections=args.connections,
        duration=args.seconds,
    )
    results["tls"] = {
        "wrk_close_hps": closing["requests"] / closing["elapsed"],
        "wrk_connections": args.connections,
        "s_time_tls1_3": s_time(port, "tls1_3", args.seconds),
        "s_time_tls1_2": s_time(port, "tls1_2", args.seconds),
    }
    results["meta"] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip(),
        "openssl": subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connections": args.connections,
        "streams": args.streams,
        "stream_concurrency": args.stream_concurrency,
        "event_delay": args.event_delay,
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    return results


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    t, l1, st, tls = r["throughput"], r["latency1"], r["stream"], r["tls"]

    def added(table: dict[str, Any], field: str, upper: str, lower: str) -> str:
        return f"{table[upper][field] - table[lower][field]:+.2f}"

    lines = [
        "## The NGINX edge (nginx -> gateway -> fake)",
        "",
        f"{m['date']}, {m['cpus']} CPUs ({m['machine']}), {m['nginx']}, {m['openssl']}, Python {m['python']}. "
        f"Everything on one machine over loopback; wrk with one thread; medians of {m['rounds']} interleaved "
        f"rounds of {m['seconds']} s. nginx: one worker, TLS 1.3, P-256 ECDSA leaf + intermediate, HTTP/1.1 "
        "keep-alive from the client and to the gateway, abuse limits raised out of the way. "
        f"1-minute load average {m['load'][0]} before and {m['load'][1]} after the run (other work on the "
        "machine shows up as noise, mostly in the p99 columns).",
        "",
        "### Non-streaming /v1/messages",
        "",
        f"| target | req/s ({m['connections']} conns) | p50 ms | p99 ms | p50 ms (1 conn) | p99 ms (1 conn) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target in TARGETS:
        lines.append(
            f"| {target} | {t[target]['rps']:.0f} | {t[target]['p50']:.2f} | {t[target]['p99']:.2f} "
            f"| {l1[target]['p50']:.2f} | {l1[target]['p99']:.2f} "
            f"| {t[target]['errors'] + l1[target]['errors']} |"
        )
    lines += [
        "",
        f"Added by nginx (nginx+gateway minus gateway), one connection: p50 {added(l1, 'p50', 'nginx+gateway', 'gateway')} ms, "
        f"p99 {added(l1, 'p99', 'nginx+gateway', 'gateway')} ms; by the gateway (gateway minus fake): "
        f"p50 {added(l1, 'p50', 'gateway', 'fake')} ms, p99 {added(l1, 'p99', 'gateway', 'fake')} ms. "
        f"Throughput through nginx is {t['nginx+gateway']['rps'] / t['gateway']['rps']:.0%} of the gateway's alone "
        "(on 2 cores nginx, the gateway, the fake and wrk share the CPUs: the figure is the cost of one more "
        "process on the path, not nginx's ceiling).",
        "",
        f"### Streaming (events {m['event_delay'] * 1000:.0f} ms apart)",
        "",
        "Each stream is paired with one started at the same instant straight to the fake; lag is the arrival "
        "of the same event through the target minus on the direct stream; relay is that lag after the first "
        "event, minus the first event's (what passing one more event costs); batched counts events the fake "
        "spaced that reached the client less than 1 ms apart. The probe client is one Python process: through "
        "nginx it also decrypts TLS, on the same 2 CPUs, so the nginx rows include that client cost.",
        "",
        "| target | streams at once | streams | first event lag p50 ms | event lag p50 ms | p99 ms "
        "| relay p50 ms | relay p99 ms | batched / gaps | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in st.items():
        target, _, concurrency = name.partition("@")
        lines.append(
            f"| {target} | {concurrency} | {s['pairs']} | {s['ttfe_p50']:.2f} | {s['lag_p50']:.2f} "
            f"| {s['lag_p99']:.2f} | {s['relay_p50']:.2f} | {s['relay_p99']:.2f} "
            f"| {s['batched']} / {s['gaps_checked']} | {s['failed']} |"
        )
    lines += [
        "",
        "### TLS handshakes (nginx, P-256 ECDSA)",
        "",
        "| client | handshakes/s |",
        "| --- | ---: |",
        f"| wrk, {tls['wrk_connections']} connections, `Connection: close` (TLS 1.3, full handshake per request) "
        f"| {tls['wrk_close_hps']:.0f} |",
        f"| `openssl s_time -new`, one sequential client, TLS 1.3 | {tls['s_time_tls1_3']:.0f} |",
        f"| `openssl s_time -new`, one sequential client, TLS 1.2 | {tls['s_time_tls1_2']:.0f} |",
        "",
        "Reproduce: `/work/venv/bin/python bench/edge_bench.py --markdown bench/edge_results.md` (needs Debian "
        "`nginx`, `libnginx-mod-http-set-misc`, `wrk`, `openssl`).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, 16 streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--stream-concurrency", type=int, default=16)
    parser.add_argument("--event-delay", type=float, default=0.02)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--markdown", type=Path, help="write the results section here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.streams = 1, 3, 16
    results = run(args)
    text = markdown(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
