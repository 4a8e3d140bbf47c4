"""Memory of many concurrent streams through the gateway (issue 17: 10,000 streams <= 200 MB).

Starts the asyncio stand-in upstream (bench/_standin_fake.py: one coroutine
per stream, so it is not what gives out), a gateway in front of it, and a
client process that opens N streaming /v1/messages requests over raw
sockets and keeps reading them. Once every stream has had its first event
(the client says so; the gateway's /metrics gauge gives the count open),
the relay's RSS is sampled; the peak (VmHWM) and the cost per stream over
idle are printed as JSON.

    .venv/bin/python bench/stream_memory.py --streams 9000 [--response-rules] [--body-kb 32] [--bare]

``--body-kb`` makes each request that large (a Claude Code request is tens
of KB): what the gateway keeps of a request while its stream runs shows up
per stream. ``--bare`` measures the minimal aiohttp relay of
bench/stack_choice.py instead of the gateway: the floor of the stack itself.

One gateway process holds two sockets per stream (client and upstream):
the per-process descriptor limit (ulimit -Hn, 20,000 on the benchmark
machine) caps N below 10,000 there; the figure for 10,000 is the measured
idle RSS plus 10,000 times the measured cost per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])  # kB
    return out


def _active_streams(internal: str) -> int:
    text = urllib.request.urlopen(f"{internal}/metrics", timeout=30).read().decode()  # noqa: S310 (http://127.0.0.1)
    for line in text.splitlines():
        if line.startswith("claudegate_active_streams "):
            return int(float(line.split()[1]))
    return 0


def _census(out: Path, pid: int, streams: int) -> None:
    """The census gateway's snapshot, named by the streams open (bench/stream_census.py)."""
    (out / "tag").write_text(str(streams))
    os.kill(pid, signal.SIGUSR1)
    while not (out / f"{streams}.done").exists():
        time.sleep(0.2)
    print(f"census: {out / f'{streams}.snap'}", flush=True)


# ------------------------------------------------------------------ the client


async def _client(port: int, key: str, n: int, batch: int, body_kb: int, stall: bool) -> None:
    filler = ("lorem ipsum dolor sit amet " * (body_kb * 40))[: body_kb * 1024] or "hi"
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
                       "messages": [{"role": "user", "content": filler}]}).encode()  # fmt: skip
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = 0
    first = 0
    failed = 0

    async def one() -> None:
        nonlocal first, failed
        try:
            sock = socket.socket()
            if stall:  # and takes in little: the kernel holds little for it, the relay must
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                failed += 1
                said = await reader.read(400)
                print("refused:", head.split(b"\r\n", 1)[0].decode(), said[:300], file=sys.stderr, flush=True)
                return
            await reader.readuntil(b"\n\n")  # the first event
            first += 1
            if stall:  # a hostile client: it never reads again, and never leaves
                await asyncio.Event().wait()
            while await reader.read(65536):
                pass
            writer.close()
        except (OSError, asyncio.IncompleteReadError) as exc:
            failed += 1
            print("client error:", type(exc).__name__, exc, file=sys.stderr, flush=True)

    tasks = []
    while started < n:
        for _ in range(min(batch, n - started)):
            tasks.append(asyncio.create_task(one()))
            started += 1
        await asyncio.sleep(0.05)
    while first + failed < n:
        await asyncio.sleep(0.2)
    print(json.dumps({"streaming": first, "failed": failed}), flush=True)
    await asyncio.gather(*tasks)


# ------------------------------------------------------------------ the run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=9000)
    p.add_argument("--batch", type=int, default=100, help="connections opened per 50 ms")
    p.add_argument("--event-delay", type=float, default=0.5, help="seconds between the upstream's events")
    p.add_argument(
        "--response-rules", action="store_true", help="add a response rule: every stream is filtered"
    )
    p.add_argument("--body-kb", type=int, default=0, help="request body size (a filler text), KB")
    p.add_argument("--stall", action="store_true",
                   help="hostile clients: each reads the first event, then never reads again (upstream sends "
                   "--deltas x --delta-chars as fast as it may): what the relay buffers per stream")
    p.add_argument("--deltas", type=int, default=400, help="upstream's text deltas per stream")
    p.add_argument("--delta-chars", type=int, default=0, help="characters per delta (0: one word)")
    p.add_argument("--bare", action="store_true", help="the minimal aiohttp relay instead of the gateway")
    p.add_argument("--bare-variant", default="aiohttp", choices=["aiohttp", "aiohttp+uvloop", "aiohttp+asyncio-up"])
    p.add_argument(
        "--census", metavar="DIR", type=Path,
        help="run the gateway under tracemalloc (bench/stream_census.py); snapshot at N streams, open N more, "
        "snapshot again; then: bench/stream_census.py diff DIR/N.snap DIR/2N.snap",
    )
    p.add_argument("--client", nargs=3, metavar=("PORT", "KEY", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    _raise_nofile()
    if args.client:
        asyncio.run(_client(int(args.client[0]), args.client[1], int(args.client[2]), args.batch, args.body_kb,
                            args.stall))
        return 0
    n = args.streams
    room = 2 * n if args.census else n  # the census opens n more
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        try:
            upstream_key = "sk-ant-fake-" + secrets.token_hex(8)
            fake = subprocess.Popen(
                [PY, str(REPO / "bench" / "_standin_fake.py"), "--listen", "127.0.0.1:0", "--api-key", upstream_key,
                 "--event-delay", str(args.event_delay), "--deltas", str(args.deltas), "--delta-chars", str(args.delta_chars)],
                stdout=subprocess.PIPE, preexec_fn=_raise_nofile,
            )  # fmt: skip
            procs.append(fake)
            assert fake.stdout is not None
            upstream = fake.stdout.readline().decode().split()[-1]
            (d / "up").write_text(upstream_key)
            (d / "pepper").write_text(secrets.token_urlsafe(32))
            os.chmod(d / "up", 0o600)
            os.chmod(d / "pepper", 0o600)
            port, internal = _free_port(), _free_port()
            rules = (
                "filters: [{name: secrets, detectors: [all], action: redact, direction: both}]\n"
                if args.response_rules else ""
            )  # fmt: skip
            (d / "gw.yaml").write_text(
                f"listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\n"
                f"upstream: {{base_url: '{upstream}', api_key_file: '{d / 'up'}', max_connections: {2 * room + 2}, "
                f"connect_timeout: 60}}\n"
                f"max_in_flight_per_key: {room + 1}\nkeystore: '{d / 'keys.db'}'\npepper_file: '{d / 'pepper'}'\n"
                f"audit_log: '{d / 'audit.jsonl'}'\n" + rules
            )
            gw = [PY, "-m", "claudegate_gateway"]
            internal_url = f"http://127.0.0.1:{internal}"
            if args.bare:
                key = "unused"
                gateway = subprocess.Popen(
                    [PY, str(REPO / "bench" / "stack_choice.py"), "serve", args.bare_variant, "--port", str(port),
                     "--upstream", upstream],
                    env=dict(os.environ, STACKBENCH_UPSTREAM_KEY=upstream_key, STACKBENCH_CONNECTIONS=str(2 * n + 2)),
                    preexec_fn=_raise_nofile,
                )  # fmt: skip
                procs.append(gateway)
                for _ in range(600):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.1)
            else:
                key = subprocess.run([*gw, "keys", "create", "bench", "--config", str(d / "gw.yaml")],
                                     capture_output=True, text=True, check=True).stdout.split()[-1]  # fmt: skip
                # GATEWAY_CMD: another way to run the gateway (a profiler); it gets "serve --config FILE".
                run = os.environ.get("GATEWAY_CMD", "").split() or gw
                env = dict(os.environ)
                if args.census:
                    args.census.mkdir(parents=True, exist_ok=True)
                    run, env["CENSUS_DIR"] = [PY, str(REPO / "bench" / "stream_census.py")], str(args.census)
                gateway = subprocess.Popen(
                    [*run, "serve", "--config", str(d / "gw.yaml")], preexec_fn=_raise_nofile, env=env
                )
                procs.append(gateway)
                for _ in range(600):
                    try:
                        _active_streams(internal_url)
                        break
                    except OSError:
                        time.sleep(0.1)
            # Warm: one stream, so that imports and first-use caches are in the idle figure.
            warm = subprocess.Popen([PY, __file__, "--client", str(port), key, "1"], stdout=subprocess.PIPE)
            assert warm.stdout is not None
            warm.stdout.readline()  # it streams
            warm.terminate()
            warm.wait()
            time.sleep(1)
            idle = _status(gateway.pid)["VmRSS"]
            fake_idle = _status(fake.pid)["VmRSS"]
            client = subprocess.Popen([PY, __file__, "--client", str(port), key, str(n), "--batch", str(args.batch),
                                       "--body-kb", str(args.body_kb)] + (["--stall"] if args.stall else []), stdout=subprocess.PIPE)  # fmt: skip
            procs.append(client)
            assert client.stdout is not None
            # The client's line comes once every stream has had its first event (or failed).
            opened = json.loads(client.stdout.readline() or b'{"streaming": 0}')
            peak_active = opened["streaming"] if args.bare else _active_streams(internal_url)
            time.sleep(2)  # a few events on every stream
            samples = []
            for _ in range(5):
                samples.append(_status(gateway.pid))
                time.sleep(0.2)
            rss = max(s["VmRSS"] for s in samples)
            hwm = max(s["VmHWM"] for s in samples)
            fake_rss = _status(fake.pid)["VmRSS"]
            per_stream = (hwm - idle) / max(1, peak_active)
            result = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
                "streams": peak_active,
                "relay": f"bare {args.bare_variant}" if args.bare else "gateway",
                "body_kb": args.body_kb,
                "response_rules": args.response_rules,
                "idle_rss_mb": round(idle / 1024, 1),
                "rss_mb": round(rss / 1024, 1),
                "peak_rss_mb": round(hwm / 1024, 1),
                "per_stream_kb": round(per_stream, 1),
                "at_10000_mb": round((idle + 10_000 * per_stream) / 1024, 1),
                # The stand-in upstream is an aiohttp server and a handler that writes events:
                # what the server side of aiohttp costs a stream, for comparison.
                "upstream_per_stream_kb": round((fake_rss - fake_idle) / max(1, peak_active), 1),
            }
            print(json.dumps(result, indent=2))
            if args.census:
                _census(args.census, gateway.pid, peak_active)
                more = subprocess.Popen([PY, __file__, "--client", str(port), key, str(n), "--batch",
                                         str(args.batch), "--body-kb", str(args.body_kb)] + (["--stall"] if args.stall else []), stdout=subprocess.PIPE)  # fmt: skip
                procs.append(more)
                assert more.stdout is not None
                opened_more = json.loads(more.stdout.readline() or b'{"streaming": 0}')
                time.sleep(2)
                _census(args.census, gateway.pid, peak_active + opened_more["streaming"])
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
