"""Pick the gateway's async stack by measurement.

A minimal pass-through proxy for ``POST /v1/messages`` (inject the upstream
key, relay the JSON answer or the SSE stream chunk by chunk) written twice:

  * aiohttp server + aiohttp client (one ClientSession, keep-alive pool);
  * Starlette on uvicorn + httpx.AsyncClient (StreamingResponse over aiter_raw);

each with the plain asyncio loop and with uvloop (for uvicorn: ``--loop
asyncio --http h11`` vs ``--loop uvloop --http httptools``, i.e. uvicorn vs
uvicorn[standard]). All of them forward to the fake Anthropic API (no latency,
no event delay, so the proxy is the cost) and are driven by wrk at 32
connections, non-streaming and streaming, in interleaved rounds.

Needs starlette, uvicorn, httpx, httpx2, uvloop, httptools and aiohttp: they
live in a throwaway venv, not the gateway's::

    python3 -m venv /work/venv-stackbench
    /work/venv-stackbench/bin/pip install -r bench/stack_requirements.txt
    /work/venv-stackbench/bin/python bench/stack_choice.py [--quick] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load

REPO = Path(__file__).resolve().parents[1]
MODEL = "claude-sonnet-4-6"
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
}
FORWARD = ("anthropic-version", "anthropic-beta", "content-type", "accept")


def _upstream_headers(incoming: Any, key: str) -> dict[str, str]:
    h = {k: incoming[k] for k in FORWARD if k in incoming}
    h["x-api-key"] = key
    return h


def _downstream_headers(items: Any) -> dict[str, str]:
    return {k: v for k, v in items if k.lower() not in HOP}


# --------------------------------------------------------------------------- the proxies


def serve_aiohttp(port: int, upstream: str, key: str, use_uvloop: bool) -> None:
    from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

    target = upstream.rstrip("/") + "/v1/messages"

    async def on_startup(app: web.Application) -> None:
        app["session"] = ClientSession(
            connector=TCPConnector(limit=int(os.environ.get("STACKBENCH_CONNECTIONS", "256")), keepalive_timeout=60),
            timeout=ClientTimeout(total=600, sock_connect=10),
            auto_decompress=False,
        )

    async def on_cleanup(app: web.Application) -> None:
        await app["session"].close()

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: ClientSession = request.app["session"]
        async with session.post(target, data=body, headers=_upstream_headers(request.headers, key)) as up:
            headers = _downstream_headers(up.headers.items())
            if up.headers.get("content-type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers=headers)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(status=up.status, body=await up.read(), headers=headers)

    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/v1/messages", messages)
    loop = None
    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


def serve_aiohttp_streams_upstream(port: int, upstream: str, key: str) -> None:
    """aiohttp's server, and upstream through asyncio streams: a measurement of what aiohttp's
    client costs a stream (bench/stream_memory.py --bare --bare-variant aiohttp+asyncio-up).

    Not a client to ship: one connection per request (``Connection: close``), plain HTTP, no
    timeouts; it reads a status line, headers and a chunked or sized body, and nothing else.
    """
    from aiohttp import web
    from yarl import URL

    up = URL(upstream)
    host, up_port = up.host or "127.0.0.1", up.port or 80

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        reader, writer = await asyncio.open_connection(host, up_port, limit=16 * 1024)
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in _upstream_headers(request.headers, key).items())
            writer.write(f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{head}"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            del body
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            headers = dict(line.split(": ", 1) for line in lines if line)
            chunked = headers.get("Transfer-Encoding", headers.get("transfer-encoding", "")) == "chunked"
            resp = web.StreamResponse(status=status, headers=_downstream_headers(headers.items()))
            del headers, lines
            await resp.prepare(request)
            if chunked:
                while size := int((await reader.readline()).split(b";")[0], 16):
                    await resp.write(await reader.readexactly(size))
                    await reader.readexactly(2)
            else:
                while chunk := await reader.read(16 * 1024):
                    await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            writer.close()

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_starlette(port: int, upstream: str, key: str, use_uvloop: bool, client_lib: str = "httpx") -> None:
    import importlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    httpx = importlib.import_module(client_lib)
    target = upstream.rstrip("/") + "/v1/messages"
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(600, connect=10),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )

    async def messages(request: Request) -> Response:
        body = await request.body()
        req = client.build_request(
            "POST", target, content=body, headers=_upstream_headers(request.headers, key)
        )
        up = await client.send(req, stream=True)
        headers = _downstream_headers(up.headers.items())
        if up.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(up.aiter_raw(), status_code=up.status_code, headers=headers,
                                     background=BackgroundTask(up.aclose))  # fmt: skip
        data = await up.aread()
        await up.aclose()
        return Response(data, status_code=up.status_code, headers=headers)

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop" if use_uvloop else "asyncio",
        http="httptools" if use_uvloop else "h11",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


VARIANTS = {
    "aiohttp": ("aiohttp", False),
    "aiohttp+uvloop": ("aiohttp", True),
    # A measurement only (see serve_aiohttp_streams_upstream): aiohttp's client left out.
    "aiohttp+asyncio-up": ("aiohttp-asyncio-up", False),
    "starlette/uvicorn+httpx": ("starlette", False),
    "starlette/uvicorn[std]+httpx": ("starlette", True),
    # httpx2: the maintained fork whose connection pool no longer rescans every
    # connection per request (httpx/httpcore slow down with queue depth)
    "starlette/uvicorn[std]+httpx2": ("starlette-httpx2", True),
}


# --------------------------------------------------------------------------- harness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, headers: dict[str, str], proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    body = _load.message_body(MODEL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}")
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
            with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310
                if json.loads(r.read()).get("type") == "message":
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def start_fake(python: str, key: str, procs: list[subprocess.Popen[bytes]]) -> str:
    real = REPO / "tests" / "support" / "fake_anthropic.py"
    if real.exists():
        cmd = [python, "-m", "tests.support.fake_anthropic", "--no-record"]
    else:
        cmd = [python, str(REPO / "bench" / "_standin_fake.py")]
    cmd += ["--listen", "127.0.0.1:0", "--api-key", key]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)  # fmt: skip
    procs.append(p)
    assert p.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stdout.readline().decode(errors="replace")
        if "listening on " in line:
            # keep draining its output so it never blocks on a full pipe
            import threading

            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # type: ignore[union-attr]
            return line.split("listening on ", 1)[1].strip()
        if not line and p.poll() is not None:
            break
    raise RuntimeError("fake did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="(internal) run one proxy variant")
    s.add_argument("variant", choices=list(VARIANTS))
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--upstream", required=True)
    s.add_argument("--key-env", default="STACKBENCH_UPSTREAM_KEY")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--seconds", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--fake-python", default="/work/venv/bin/python" if Path("/work/venv/bin/python").exists()
                   else sys.executable)  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    if args.cmd == "serve":
        kind, uv = VARIANTS[args.variant]
        key = os.environ[args.key_env]
        if kind == "aiohttp":
            serve_aiohttp(args.port, args.upstream, key, uv)
        elif kind == "aiohttp-asyncio-up":
            serve_aiohttp_streams_upstream(args.port, args.upstream, key)
        else:
            serve_starlette(
                args.port, args.upstream, key, uv, "httpx2" if kind.endswith("httpx2") else "httpx"
            )
        return 0

    if not _load.have_wrk():
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1 if args.quick else 5)
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    rss: dict[str, float] = {}
    t_start = time.monotonic()
    try:
        key = "sk-ant-stackbench"
        upstream = start_fake(args.fake_python, key, procs)
        servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for name in VARIANTS:
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, __file__, "serve", name, "--port", str(port), "--upstream", upstream],
                env=dict(os.environ, STACKBENCH_UPSTREAM_KEY=key), start_new_session=True,
            )  # fmt: skip
            procs.append(proc)
            url = f"http://127.0.0.1:{port}/v1/messages"
            wait_ready(url, _load.auth_headers("client-key"), proc)
            servers[name] = (url, proc)
            results[name] = {"json": [], "stream": []}
        headers = _load.auth_headers("client-key")
        names = list(VARIANTS)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                url, proc = servers[name]
                for mode in ("json", "stream"):
                    body = _load.message_body(MODEL, stream=mode == "stream")
                    c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    res = _load.wrk(url, headers, body, connections=args.concurrency, duration=seconds)
                    res["cpu_share"] = (cpu_seconds(proc.pid) - c0) / (time.perf_counter() - t0)
                    res["cpu_ms_per_req"] = (cpu_seconds(proc.pid) - c0) / max(res["requests"], 1) * 1e3
                    results[name][mode].append(res)
                    print(f"[round {r + 1}] {name:30s} {mode:6s} {res['rps']:7.0f} req/s  p99 {res['p99']:6.2f} ms  "
                          f"errors {res['errors']}  cpu {res['cpu_share'] * 100:3.0f}%", file=sys.stderr)  # fmt: skip
        time.sleep(1)
        rss = {name: rss_mb(proc.pid) for name, (_, proc) in servers.items()}
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    versions = {}
    for mod in ("aiohttp", "starlette", "uvicorn", "httpx", "httpx2", "uvloop", "httptools"):
        with contextlib.suppress(Exception):
            import importlib.metadata as md

            versions[mod] = md.version(mod)
    lines = [
        "| stack | non-streaming req/s | p99 (ms) | CPU ms/req | streaming req/s | p99 (ms) | CPU ms/req | idle RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for name in VARIANTS:
        j, st = results[name]["json"], results[name]["stream"]
        row = {
            "json_rps": med([x["rps"] for x in j]),
            "json_p99": med([x["p99"] for x in j]),
            "json_cpu_ms": med([x["cpu_ms_per_req"] for x in j]),
            "stream_rps": med([x["rps"] for x in st]),
            "stream_p99": med([x["p99"] for x in st]),
            "stream_cpu_ms": med([x["cpu_ms_per_req"] for x in st]),
            "errors": sum(x["errors"] for x in j + st),
            "rss_mb": rss.get(name, float("nan")),
        }
        summary[name] = row
        lines.append(
            f"| {name} | {row['json_rps']:.0f} | {row['json_p99']:.2f} | {row['json_cpu_ms']:.3f} | "
            f"{row['stream_rps']:.0f} | {row['stream_p99']:.2f} | {row['stream_cpu_ms']:.3f} | {row['rss_mb']:.1f} |"
        )
    cmd = f"cd {REPO} && {sys.executable} bench/stack_choice.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"\nstack choice — {time.strftime('%Y-%m-%d %H:%M:%S %z')}, nproc={os.cpu_count()}, "
          f"Python {platform.python_version()}, {rounds} round(s) x {seconds}s per cell, wrk -c{args.concurrency}, "
          f"median over rounds")  # fmt: skip
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("\n".join(lines))
    errs = {n: r["errors"] for n, r in summary.items() if r["errors"]}
    if errs:
        print(f"errors: {errs}")
    print(f"\nreproduce: {cmd}\n(took {time.monotonic() - t_start:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "raw": results, "versions": versions,
                                         "command": cmd}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
