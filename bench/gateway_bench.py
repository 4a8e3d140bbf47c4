"""Benchmark the claudegate gateway against direct calls and LiteLLM's proxy.

One run starts the fake Anthropic API (twice: one with no server latency, one
with --latency for the 32-client latency figure), the gateway in front of
each, and LiteLLM's proxy (one process, routing by model name), then measures
every target in interleaved rounds so that the machine's noise hits all of
them alike:

  * non-streaming throughput: wrk, 32 keep-alive connections, closed loop,
    upstream with no latency; plus the CPU each proxy burns per request;
  * added latency at 1 client (pure overhead) and at 32 concurrent clients
    (upstream answering in 50 ms, so the load is below saturation and the
    figure is latency, not queueing): p50/p99 of the target minus direct;
  * streaming: each SSE event is timestamped at the client; its lag behind
    the direct path's median arrival time of the same event gives per-event
    added latency, and events that the fake spaced by --event-delay but that
    arrive < 1 ms apart are counted as batched;
  * idle RSS of the gateway and of LiteLLM (VmRSS after warm-up and load,
    then idle).

Usage (from the repo root, main venv):

    /work/venv/bin/python bench/gateway_bench.py            # full run, ~3-4 min
    /work/venv/bin/python bench/gateway_bench.py --quick    # smoke: a few seconds, no LiteLLM

See bench/README.md for the options and the method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load

REPO = Path(__file__).resolve().parents[1]
MODEL = "claude-sonnet-4-6"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets for the gateway (the brief's), printed as pass/fail.
TARGETS = {
    "added_p50_ms": 1.0,
    "added_p99_ms": 5.0,
    "rps": 1500.0,
    "stream_added_p99_ms": 2.0,
    "idle_rss_mb": 80.0,
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime
    return total / CLK_TCK


def runq_wait_seconds(pids: list[int]) -> float:
    """Time the processes' threads spent runnable but waiting for a CPU
    (/proc/PID/task/TID/schedstat, 2nd field): how much a busy machine
    delayed them, whatever they did themselves."""
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    listening: threading.Event = field(default_factory=threading.Event)
    announced: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss(self) -> float:
        return rss_mb(self.pids())

    def runq_wait(self) -> float:
        return runq_wait_seconds(self.pids())

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Stack(contextlib.ExitStack):
    """Owns the temporary directory and every process the run started."""

    def __init__(self, keep: bool = False) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="claudegate-bench-"))
        self.services: list[Service] = []
        if not keep:
            self.callback(shutil.rmtree, self.tmp, True)

    def spawn(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pin: str | None = None,
        watch_for: str | None = None,
    ) -> Service:
        if pin is not None:
            cmd = ["taskset", "-c", pin, *cmd]
        log_path = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        svc = Service(name, proc, "", log_path)
        self.services.append(svc)
        self.callback(self._stop, svc)

        def pump() -> None:
            assert proc.stdout is not None
            with log_path.open("wb") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if watch_for and not svc.listening.is_set():
                        text = line.decode(errors="replace")
                        if watch_for in text:
                            svc.announced = text.split(watch_for, 1)[1].strip().split()[0]
                            svc.listening.set()

        threading.Thread(target=pump, daemon=True).start()
        return svc

    @staticmethod
    def _stop(svc: Service) -> None:
        if svc.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(svc.proc.pid, signal.SIGTERM)  # the group this run created for it
        try:
            svc.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait(5)


def wait_http(svc: Service, url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log_tail()}")
        try:
            req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http://127.0.0.1 only)
            with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{svc.name} not ready at {url} after {timeout:.0f}s:\n{svc.log_tail()}")


# --------------------------------------------------------------------------- the three stacks


def fake_command(kind: str) -> tuple[list[str], str]:
    real = REPO / "tests" / "support" / "fake_anthropic.py"
    if kind == "auto":
        kind = "real" if real.exists() else "standin"
    if kind == "real":
        if not real.exists():
            raise SystemExit(f"--fake real: {real} does not exist")
        return [sys.executable, "-m", "tests.support.fake_anthropic"], "real"
    return [sys.executable, str(REPO / "bench" / "_standin_fake.py")], "standin"


def start_fake(
    stack: Stack, name: str, kind: str, key: str, latency: float, event_delay: float, pin: str | None
) -> Service:
    base, resolved = fake_command(kind)
    cmd = [*base, "--listen", "127.0.0.1:0", "--api-key", key]
    if resolved == "real":
        cmd.append("--no-record")  # a benchmark sends far more requests than tests want to inspect
    if latency:
        cmd += ["--latency", str(latency)]
    if event_delay:
        cmd += ["--event-delay", str(event_delay)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    svc = stack.spawn(name, cmd, env=env, cwd=REPO, pin=pin, watch_for="listening on ")
    if not svc.listening.wait(30):
        raise RuntimeError(f"{name} did not print 'listening on': {svc.log_tail()}")
    svc.base_url = svc.announced.rstrip("/")
    return svc


def gateway_bin(given: str | None) -> list[str] | None:
    if given:
        return shlex.split(given)
    here = Path(sys.executable).with_name("claudegate-gateway")
    if here.exists():
        return [str(here)]
    found = shutil.which("claudegate-gateway")
    return [found] if found else None


def _secret(path: Path, value: str) -> None:
    path.touch(mode=0o600)
    path.write_text(value + "\n")


def start_gateway(
    stack: Stack, name: str, gw: list[str], upstream: str, upstream_key: str, pin: str | None
) -> tuple[Service, str]:
    d = stack.tmp / name
    d.mkdir()
    _secret(d / "upstream_key", upstream_key)
    _secret(d / "pepper", secrets.token_urlsafe(32))
    port, internal = free_port(), free_port()
    cfg = d / "gateway.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"internal_listen: 127.0.0.1:{internal}\n"
        f"upstream: {{base_url: '{upstream}', api_key_file: '{d / 'upstream_key'}'}}\n"
        f"keystore: '{d / 'keys.db'}'\n"
        f"pepper_file: '{d / 'pepper'}'\n"
        f"audit_log: '{d / 'audit.jsonl'}'\n"
    )
    out = subprocess.run(
        [*gw, "keys", "create", "bench", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"keys create failed ({out.returncode}): {out.stdout}{out.stderr}")
    key = out.stdout.strip().splitlines()[-1].strip()
    svc = stack.spawn(name, [*gw, "serve", "--config", str(cfg)], pin=pin)
    svc.base_url = f"http://127.0.0.1:{port}"
    wait_http(svc, f"http://127.0.0.1:{internal}/healthz", 30)
    return svc, key


def start_bare(stack: Stack, name: str, upstream: str, upstream_key: str, pin: str | None) -> Service:
    """The minimal aiohttp relay of stack_choice.py, run with this interpreter
    (it needs only aiohttp): what relaying alone costs on this stack."""
    port = free_port()
    env = dict(os.environ, STACKBENCH_UPSTREAM_KEY=upstream_key)
    cmd = [sys.executable, str(REPO / "bench" / "stack_choice.py"), "serve", "aiohttp", "--port", str(port),
           "--upstream", upstream]  # fmt: skip
    svc = stack.spawn(name, cmd, env=env, pin=pin)
    svc.base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {svc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return svc
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port}")


def litellm_version(exe: Path) -> str:
    py = exe.with_name("python")
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout.strip() or "?"


def start_litellm(
    stack: Stack, exe: Path, fast: Service, slow: Service, upstream_key: str, pin: str | None
) -> tuple[Service, str]:
    master = "sk-bench-" + secrets.token_hex(12)
    port = free_port()
    env = dict(
        os.environ,
        CLAUDEGATE_BENCH_UPSTREAM=fast.base_url,
        CLAUDEGATE_BENCH_UPSTREAM_SLOW=slow.base_url,
        CLAUDEGATE_BENCH_UPSTREAM_KEY=upstream_key,
        LITELLM_MASTER_KEY=master,
        # the Anthropic pass-through (/anthropic/...) forwards here, with this key
        ANTHROPIC_API_BASE=fast.base_url,
        ANTHROPIC_API_KEY=upstream_key,
        # no network: nothing may phone home or it stalls
        LITELLM_TELEMETRY="False",
        LITELLM_TELEMETRY_DISABLED="True",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        DISABLE_SCHEMA_UPDATE="True",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    for var in (
        "DATABASE_URL",
        "REDIS_HOST",
        "REDIS_URL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ):
        env.pop(var, None)
    cmd = [
        str(exe),
        "--config",
        str(REPO / "bench" / "litellm" / "config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    svc = stack.spawn("litellm", cmd, env=env, cwd=stack.tmp, pin=pin)
    svc.base_url = f"http://127.0.0.1:{port}"
    wait_http(svc, svc.base_url + "/health/liveliness", 180)
    return svc, master


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    url: str  # full /v1/messages URL, fast upstream
    url_slow: str | None  # same path on the slow upstream (None: not measured)
    headers: dict[str, str]
    model: str
    model_slow: str
    service: Service  # the process whose CPU and RSS are the target's
    headers_slow: dict[str, str] | None = None  # when the slow upstream's proxy wants another key
    service_slow: Service | None = None  # the process serving url_slow, when not ``service``
    note: str = ""
    failed: str = ""


def sanity(t: Target) -> str:
    """One non-streamed and one streamed request; '' if fine, else why not."""
    body = _load.message_body(t.model)
    try:
        req = urllib.request.Request(t.url, data=body, headers=t.headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            data = json.loads(r.read())
        if data.get("type") != "message":
            return f"non-streamed answer is not a message: {str(data)[:200]}"
        traces = asyncio.run(
            _load.stream_probe(
                t.url,
                t.headers,
                _load.message_body(t.model, stream=True),
                concurrency=1,
                streams=1,
                warmup_streams=0,
            )
        )
        tr = traces[0]
        if tr.error or tr.status != 200 or "message_stop" not in tr.names:
            return f"stream broken: status={tr.status} error={tr.error} events={tr.names}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300]!r}"
    except OSError as exc:
        return repr(exc)
    return ""


# --------------------------------------------------------------------------- measuring


@dataclass
class Plan:
    rounds: int
    wrk_seconds: int
    lat1_seconds: float
    lat32_seconds: float
    streams: int
    stream_concurrency: int
    streams1: int
    warmup: bool
    concurrency: int
    upstream_latency: float
    event_delay: float
    idle_seconds: float
    load_cpu: str | None


def _throughput(t: Target, plan: Plan, fake_fast: Service) -> dict[str, Any]:
    body = _load.message_body(t.model)
    c0, f0, w0 = t.service.cpu(), fake_fast.cpu(), t.service.runq_wait()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if _load.have_wrk():
        res = _load.wrk(t.url, t.headers, body, connections=plan.concurrency, duration=plan.wrk_seconds,
                        cpu=plan.load_cpu)  # fmt: skip
    else:
        lr = asyncio.run(_load.closed_loop(t.url, t.headers, body, concurrency=plan.concurrency,
                                           duration=plan.wrk_seconds, warmup=0.2))  # fmt: skip
        res = lr.summary()
        res["requests"] = len(lr.latencies) + lr.errors
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu_s"] = t.service.cpu() - c0
    res["runq_s"] = t.service.runq_wait() - w0
    res["fake_cpu_s"] = fake_fast.cpu() - f0
    res["loadgen_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res["wall"] = wall
    return res


@dataclass
class Latency:
    """Latency figures of one run (ms), from wrk's histogram or the Python client."""

    summary: dict[str, float]
    requests: int
    errors: int

    @property
    def latencies(self) -> list[float]:  # only the count is used with wrk
        return [0.0] * self.requests


def _latency(url: str, headers: dict[str, str], body: bytes, conns: int, seconds: float, stagger: float,
             plan: Plan, svc: Service | None = None) -> tuple[Latency, float, float]:  # fmt: skip
    """Closed-loop latency with ``conns`` clients started ``stagger`` s apart.
    wrk when available (its cost per request is a fifth of the Python client's,
    which matters when the machine is the bottleneck), after a 1 s warm-up run
    that fills the proxy's upstream pool; else the Python client. Also returns
    ``svc``'s CPU seconds and run-queue wait seconds during the measured run."""
    if _load.have_wrk():
        if plan.warmup:
            _load.wrk(url, headers, body, connections=conns, duration=1, cpu=plan.load_cpu,
                      stagger_ms=stagger * 1e3)  # fmt: skip
        c0, w0 = (svc.cpu(), svc.runq_wait()) if svc else (0.0, 0.0)
        r = _load.wrk(url, headers, body, connections=conns, duration=max(1, round(seconds)), cpu=plan.load_cpu,
                      stagger_ms=stagger * 1e3)  # fmt: skip
        c1, w1 = (svc.cpu(), svc.runq_wait()) if svc else (0.0, 0.0)
        summ = {k: r[k] for k in ("p50", "p90", "p99", "max", "mean")}
        summ["n"] = r["requests"] - r["non2xx"]
        return Latency(summ, r["requests"] - r["non2xx"], r["errors"]), c1 - c0, w1 - w0
    c0, w0 = (svc.cpu(), svc.runq_wait()) if svc else (0.0, 0.0)
    lr = asyncio.run(_load.closed_loop(url, headers, body, concurrency=conns, duration=seconds, warmup=0.3,
                                       stagger=stagger))  # fmt: skip
    c1, w1 = (svc.cpu(), svc.runq_wait()) if svc else (0.0, 0.0)
    return Latency(_load.summarize(lr.latencies), len(lr.latencies), lr.errors), c1 - c0, w1 - w0


def measure(targets: list[Target], plan: Plan, fake_fast: Service, log: Any) -> dict[str, Any]:
    """Every figure, per round. Within a round each kind of measurement runs
    for all targets back to back (rotating which goes first), so a target and
    the direct path it is compared with are measured seconds apart."""
    names = [t.name for t in targets]
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(plan.rounds):
        k = r % len(targets)
        order = targets[k:] + targets[:k]
        log(f"round {r + 1}/{plan.rounds}: order {', '.join(t.name for t in order)}")
        rd: dict[str, dict[str, Any]] = {n: {} for n in names}
        for t in order:  # non-streaming throughput
            res = _throughput(t, plan, fake_fast)
            rd[t.name]["thr"] = res
            log(f"  {t.name:11s} throughput {res['rps']:8.0f} req/s  errors={res['errors']}  "
                f"cpu={res['cpu_s'] / max(res['wall'], 1e-9) * 100:3.0f}%")  # fmt: skip
        log(f"  latency (1 client, then {plan.concurrency} clients)")
        for t in order:  # latency, 1 client, upstream without latency
            rd[t.name]["lat1"], _, _ = _latency(t.url, t.headers, _load.message_body(t.model), 1,
                                                plan.lat1_seconds, 0.0, plan)  # fmt: skip
        for t in order:  # latency, 32 clients, upstream with latency
            if t.url_slow:
                lr, cpu, wait = _latency(t.url_slow, t.headers_slow or t.headers, _load.message_body(t.model_slow),
                                         plan.concurrency, plan.lat32_seconds, plan.upstream_latency / plan.concurrency,
                                         plan, t.service_slow or t.service)  # fmt: skip
                rd[t.name]["lat32"] = lr
                n = max(lr.requests + lr.errors, 1)
                rd[t.name]["lat32_runq_ms"] = wait / n * 1e3
                rd[t.name]["lat32_cpu_ms"] = cpu / n * 1e3
        ref = targets[0]
        assert ref.name == "direct"
        ref_req = (ref.url, ref.headers, _load.message_body(ref.model, stream=True))
        stagger = plan.event_delay / plan.stream_concurrency
        log("  streams (paired with direct ones)")
        for t in order:  # streams one pair at a time: the pure per-event cost
            req = (t.url, t.headers, _load.message_body(t.model, stream=True))
            rd[t.name]["stream1"] = asyncio.run(
                _load.stream_pairs(req, ref_req, concurrency=1, pairs=plan.streams1, warmup=1)
            )
        for t in order:  # concurrent streams
            req = (t.url, t.headers, _load.message_body(t.model, stream=True))
            rd[t.name]["streamN"] = asyncio.run(
                _load.stream_pairs(
                    req,
                    ref_req,
                    concurrency=plan.stream_concurrency,
                    pairs=plan.streams,
                    warmup=2,
                    stagger=stagger,
                )
            )
        rounds.append(rd)
    # idle RSS, after warm-up and load, once everything has been idle a while
    time.sleep(plan.idle_seconds)
    rss = {t.name: t.service.rss() for t in targets}
    return {"rounds": rounds, "rss": rss, "wrk": _load.have_wrk()}


def median(xs: list[float]) -> float:
    xs = sorted(x for x in xs if not (isinstance(x, float) and math.isnan(x)))
    if not xs:
        return math.nan
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def analyse(
    targets: list[Target], raw: dict[str, Any], plan: Plan, rss_start: dict[str, float]
) -> dict[str, Any]:
    """Per-round figures, then the median over rounds. Every "added" figure is
    (target - direct) within the same round, so the machine's noise between
    rounds cancels; the median drops a round that a noisy neighbour spoiled."""
    rounds = raw["rounds"]
    out: dict[str, Any] = {}
    per_round: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for rd in rounds:
        d = rd["direct"]
        for t in targets:
            x = rd[t.name]
            thr = x["thr"]
            f: dict[str, Any] = {
                "rps": thr["rps"],
                "rps_vs_direct": thr["rps"] / d["thr"]["rps"] if d["thr"]["rps"] else math.nan,
                "errors": thr["errors"],
                "requests": thr["requests"],
                "cpu_s": thr["cpu_s"],
                "fake_cpu_s": thr["fake_cpu_s"],
                "loadgen_cpu_s": thr["loadgen_cpu_s"],
                "wall": thr["wall"],
                "lat1": x["lat1"].summary,
                "lat32": x["lat32"].summary if "lat32" in x else None,
                "lat32_runq_ms": x.get("lat32_runq_ms"),
                "lat32_cpu_ms": x.get("lat32_cpu_ms"),
                "runq_s": thr.get("runq_s", math.nan),
                "lat_errors": x["lat1"].errors + (x["lat32"].errors if "lat32" in x else 0),
                "stream1": _load.pair_report(x["stream1"], plan.event_delay),
                "streamN": _load.pair_report(x["streamN"], plan.event_delay),
            }
            per_round[t.name].append(f)
    for t in targets:
        pr, dr = per_round[t.name], per_round["direct"]

        def added(get: Any, pr: list[dict[str, Any]] = pr, dr: list[dict[str, Any]] = dr) -> float:
            vals = []
            for a, b in zip(pr, dr, strict=True):
                va, vb = get(a), get(b)
                if va is not None and vb is not None:
                    vals.append(va - vb)
            return median(vals)

        def med(get: Any, pr: list[dict[str, Any]] = pr) -> float:
            return median([v for v in (get(a) for a in pr) if v is not None])

        reqs = sum(a["requests"] for a in pr)
        cpu = sum(a["cpu_s"] for a in pr)
        wall = sum(a["wall"] for a in pr)
        o: dict[str, Any] = {
            "rps": med(lambda a: a["rps"]),
            "rps_rounds": [a["rps"] for a in pr],
            "rps_vs_direct": med(lambda a: a["rps_vs_direct"]),
            "errors": sum(a["errors"] for a in pr) + sum(a["lat_errors"] for a in pr),
            "cpu_ms_per_req": cpu / reqs * 1e3 if reqs else math.nan,
            "cpu_share": cpu / wall if wall else math.nan,
            "fake_cpu_share": sum(a["fake_cpu_s"] for a in pr) / wall if wall else math.nan,
            "loadgen_cpu_share": sum(a["loadgen_cpu_s"] for a in pr) / wall if wall else math.nan,
            "lat1_p50": med(lambda a: a["lat1"]["p50"]),
            "lat1_p99": med(lambda a: a["lat1"]["p99"]),
            "lat32_p50": med(lambda a: a["lat32"]["p50"] if a["lat32"] else None),
            "lat32_p99": med(lambda a: a["lat32"]["p99"] if a["lat32"] else None),
            "lat32_runq_ms_per_req": med(lambda a: a["lat32_runq_ms"]),
            "lat32_cpu_ms_per_req": med(lambda a: a["lat32_cpu_ms"]),
            "runq_ms_per_req": sum(a["runq_s"] for a in pr) / reqs * 1e3 if reqs else math.nan,
            "added1_p50": added(lambda a: a["lat1"]["p50"]),
            "added1_p99": added(lambda a: a["lat1"]["p99"]),
            "added32_p50": added(lambda a: a["lat32"]["p50"] if a["lat32"] else None),
            "added32_p99": added(lambda a: a["lat32"]["p99"] if a["lat32"] else None),
            "rss_idle_mb": raw["rss"][t.name],
            "rss_start_mb": rss_start.get(t.name, math.nan),
            "per_round": pr,
        }
        for tag in ("stream1", "streamN"):
            # paired against a direct stream: these are already "added" figures
            o[f"{tag}_added_p50"] = med(lambda a, tag=tag: a[tag]["lag_p50"])
            o[f"{tag}_added_p99"] = med(lambda a, tag=tag: a[tag]["lag_p99"])
            o[f"{tag}_added_max"] = max(a[tag]["lag_max"] for a in pr)
            o[f"{tag}_relay_added_p99"] = med(lambda a, tag=tag: a[tag]["relay_p99"])
            o[f"{tag}_ttfe_added_p50"] = med(lambda a, tag=tag: a[tag]["ttfe_p50"])
            o[f"{tag}_batched"] = sum(a[tag]["batched"] for a in pr)
            o[f"{tag}_gaps"] = sum(a[tag]["gaps_checked"] for a in pr)
            o[f"{tag}_failed"] = sum(a[tag]["failed"] for a in pr)
            o[f"{tag}_shape_mismatch"] = sum(a[tag]["shape_mismatch"] for a in pr)
            o[f"{tag}_first_error"] = next((a[tag]["first_error"] for a in pr if a[tag]["first_error"]), "")
        out[t.name] = o
    return out


# --------------------------------------------------------------------------- report


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return fmt.format(v)


# (label, key, format, higher is better, target key, key shown in parentheses in the direct column)
ROWS: list[tuple[str, str, str, bool, str | None, str | None]] = [
    ("non-streaming req/s (32 conns)", "rps", "{:.0f}", True, "rps", "rps"),
    ("  req/s vs direct (same round)", "rps_vs_direct", "{:.2f}", True, None, None),
    ("  proxy CPU ms per request", "cpu_ms_per_req", "{:.3f}", False, None, None),
    ("added latency p50, 1 client (ms)", "added1_p50", "{:+.2f}", False, "added_p50_ms", "lat1_p50"),
    ("added latency p99, 1 client (ms)", "added1_p99", "{:+.2f}", False, "added_p99_ms", "lat1_p99"),
    ("added latency p50, 32 clients (ms)", "added32_p50", "{:+.2f}", False, "added_p50_ms", "lat32_p50"),
    ("added latency p99, 32 clients (ms)", "added32_p99", "{:+.2f}", False, "added_p99_ms", "lat32_p99"),
    ("stream x1: per-event added p50 (ms)", "stream1_added_p50", "{:+.2f}", False, None, "stream1_added_p50"),
    ("stream x1: per-event added p99 (ms)", "stream1_added_p99", "{:+.2f}", False, "stream_added_p99_ms",
     "stream1_added_p99"),
    ("stream x1: relay-only added p99 (ms)", "stream1_relay_added_p99", "{:+.2f}", False, None,
     "stream1_relay_added_p99"),
    ("stream x1: first event added p50 (ms)", "stream1_ttfe_added_p50", "{:+.2f}", False, None,
     "stream1_ttfe_added_p50"),
    ("stream x1: batched event gaps", "stream1_batched", "{:d}", False, "batched", "stream1_gaps"),
    ("stream x16: per-event added p50 (ms)", "streamN_added_p50", "{:+.2f}", False, None, "streamN_added_p50"),
    ("stream x16: per-event added p99 (ms)", "streamN_added_p99", "{:+.2f}", False, "stream_added_p99_ms",
     "streamN_added_p99"),
    ("stream x16: relay-only added p99 (ms)", "streamN_relay_added_p99", "{:+.2f}", False, None,
     "streamN_relay_added_p99"),
    ("stream x16: first event added p50 (ms)", "streamN_ttfe_added_p50", "{:+.2f}", False, None,
     "streamN_ttfe_added_p50"),
    ("stream x16: batched event gaps", "streamN_batched", "{:d}", False, "batched", "streamN_gaps"),
    ("idle RSS (MB)", "rss_idle_mb", "{:.1f}", False, "idle_rss_mb", "rss_idle_mb"),
]  # fmt: skip


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _target_text(key: str | None) -> str:
    if key is None:
        return ""
    if key == "batched":
        return "0"
    v = TARGETS[key]
    return f">= {v:.0f}" if key == "rps" else f"<= {v:g}"


def _passes(key: str, v: Any) -> bool | None:
    if _nan(v):
        return None
    if key == "batched":
        return bool(v == 0)
    return bool(v >= TARGETS[key]) if key == "rps" else bool(v <= TARGETS[key])


def verdicts(res: dict[str, Any], names: list[str], stream_concurrency: int) -> list[dict[str, Any]]:
    rows = []
    peers = [n for n in names if n.startswith("litellm")]
    for label, key, fmt, higher, tkey, abs_key in ROWS:
        label = label.replace("x16", f"x{stream_concurrency}")
        row: dict[str, Any] = {"label": label, "key": key, "fmt": fmt, "target": _target_text(tkey),
                               "abs_key": abs_key}  # fmt: skip
        g = res["gateway"].get(key) if "gateway" in res else None
        row["gateway"] = g
        row["pass"] = _passes(tkey, g) if tkey else None
        pv = [res[p].get(key) for p in peers]
        pv = [v for v in pv if not _nan(v)]
        row["litellm_best"] = (max(pv) if higher else min(pv)) if pv else None
        if _nan(g) or not pv or key == "rps_vs_direct":
            row["beats"] = None
        elif key.endswith("batched"):
            row["beats"] = g <= min(pv)
        else:
            row["beats"] = g > max(pv) if higher else g < min(pv)
        rows.append(row)
    return rows


def render(res: dict[str, Any], names: list[str], rows: list[dict[str, Any]]) -> str:
    head = ["figure", *names, "target", "gateway", "vs LiteLLM"]
    table = [head]
    for row in rows:
        cells = [row["label"]]
        for n in names:
            if n == "direct":
                k = row["abs_key"]
                if k is None:
                    cells.append("-")
                elif k == row["key"] and k.startswith("stream"):
                    cells.append(f"({_f(res[n].get(k), row['fmt'])})")  # direct vs direct: the noise floor
                elif k == row["key"]:
                    cells.append(_f(res[n].get(k), row["fmt"]))
                elif k.endswith("_gaps"):
                    cells.append(f"{res[n].get(row['key'])} of {res[n].get(k)}")
                else:
                    cells.append(f"({_f(res[n].get(k))})")
                continue
            cells.append(_f(res[n].get(row["key"]), row["fmt"]))
        cells.append(row["target"])
        cells.append({True: "PASS", False: "FAIL", None: ""}[row["pass"]])
        cells.append({True: "beats", False: "LOSES", None: ""}[row["beats"]])
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for i, r in enumerate(table):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) if j == 0 else "-" * (w + 1) + ":"
                                        for j, w in enumerate(widths)) + "|")  # fmt: skip
    return "\n".join(lines)


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": str(Path("/proc/loadavg").read_text().split(" ", 3)[:3]),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: 1 round of short runs, LiteLLM off unless --litellm is given",
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    p.add_argument(
        "--seconds", type=int, default=None, help="wrk seconds per target per round (default 5; quick 1)"
    )
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--streams", type=int, default=None, help="streams per target per round (default 96; quick 16)"
    )
    p.add_argument("--stream-concurrency", type=int, default=16)
    p.add_argument(
        "--streams1",
        type=int,
        default=None,
        help="streams one at a time per target per round (default 12; quick 3)",
    )
    p.add_argument("--event-delay", type=float, default=0.02, help="fake's gap between SSE events (s)")
    p.add_argument(
        "--upstream-latency",
        type=float,
        default=0.05,
        help="fake's server latency for the 32-client latency figure (s)",
    )
    p.add_argument(
        "--fake",
        choices=["auto", "real", "standin"],
        default="auto",
        help="tests/support/fake_anthropic.py (real) or bench/_standin_fake.py; auto: real if present",
    )
    p.add_argument(
        "--gateway-bin", default=None, help="command for claudegate-gateway (default: next to python)"
    )
    p.add_argument(
        "--gateway-before",
        default=None,
        metavar="CMD",
        help="also run this claudegate-gateway command as target 'gateway-before' (e.g. an older version)",
    )
    p.add_argument("--no-gateway", action="store_true")
    lit = p.add_mutually_exclusive_group()
    lit.add_argument("--litellm", action="store_true", help="include LiteLLM (the default unless --quick)")
    lit.add_argument("--no-litellm", action="store_true")
    p.add_argument("--litellm-bin", default="/work/venv-litellm/bin/litellm")
    p.add_argument("--no-passthrough", action="store_true", help="skip LiteLLM's /anthropic pass-through")
    bare = p.add_mutually_exclusive_group()
    bare.add_argument(
        "--bare",
        action="store_true",
        help="include a minimal aiohttp relay (the default unless --quick): the floor for the gateway",
    )
    bare.add_argument("--no-bare", action="store_true")
    p.add_argument(
        "--pin", action="store_true", help="taskset: proxies on CPU 1, fakes and load generators on CPU 0"
    )
    p.add_argument("--json", type=Path, default=None, help="also write all results here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a gateway target fails")
    args = p.parse_args(argv)

    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1 if args.quick else 5)
    plan = Plan(
        rounds=rounds,
        wrk_seconds=seconds,
        lat1_seconds=0.5 if args.quick else 3.0,
        lat32_seconds=0.8 if args.quick else 3.0,
        streams=args.streams or (16 if args.quick else 96),
        stream_concurrency=args.stream_concurrency,
        streams1=args.streams1 or (3 if args.quick else 12),
        warmup=not args.quick,
        concurrency=args.concurrency,
        upstream_latency=args.upstream_latency,
        event_delay=args.event_delay,
        idle_seconds=0.5 if args.quick else 3.0,
        load_cpu="0" if args.pin else None,
    )
    want_litellm = not args.no_litellm and (args.litellm or not args.quick)
    want_bare = not args.no_bare and (args.bare or not args.quick)
    pin_proxy = "1" if args.pin else None
    pin_load = "0" if args.pin else None

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    info = machine()
    t_start = time.monotonic()
    with Stack(keep=args.keep) as stack:
        up_key = "sk-ant-fake-" + secrets.token_hex(8)
        _, fake_kind = fake_command(args.fake)
        log(f"fake: {fake_kind}; temp dir {stack.tmp}")
        fast = start_fake(stack, "fake-fast", args.fake, up_key, 0.0, args.event_delay, pin_load)
        slow = start_fake(
            stack, "fake-slow", args.fake, up_key, args.upstream_latency, args.event_delay, pin_load
        )
        direct_h = _load.auth_headers(up_key)
        targets = [
            Target(
                "direct",
                fast.base_url + "/v1/messages",
                slow.base_url + "/v1/messages",
                direct_h,
                MODEL,
                MODEL,
                fast,
                service_slow=slow,
            )
        ]
        versions: dict[str, str] = {"fake": fake_kind}
        if not args.no_gateway:
            gw = gateway_bin(args.gateway_bin)
            if gw is None:
                raise SystemExit(
                    "claudegate-gateway not found (install assets/gateway, or --gateway-bin / --no-gateway)"
                )
            g_fast, k_fast = start_gateway(stack, "gateway", gw, fast.base_url, up_key, pin_proxy)
            g_slow, k_slow = start_gateway(stack, "gateway-slow", gw, slow.base_url, up_key, pin_proxy)
            targets.append(
                Target(
                    "gateway",
                    g_fast.base_url + "/v1/messages",
                    g_slow.base_url + "/v1/messages",
                    _load.auth_headers(k_fast),
                    MODEL,
                    MODEL,
                    g_fast,
                    headers_slow=_load.auth_headers(k_slow),
                    service_slow=g_slow,
                )
            )
            ver = subprocess.run([*gw, "--version"], capture_output=True, text=True, check=False, timeout=30)
            versions["gateway"] = ver.stdout.strip() or ver.stderr.strip()
        if args.gateway_before:
            before = shlex.split(args.gateway_before)
            b_fast, kb_fast = start_gateway(stack, "gateway-before", before, fast.base_url, up_key, pin_proxy)
            b_slow, kb_slow = start_gateway(stack, "gateway-before-slow", before, slow.base_url, up_key, pin_proxy)
            targets.append(
                Target(
                    "gateway-before",
                    b_fast.base_url + "/v1/messages",
                    b_slow.base_url + "/v1/messages",
                    _load.auth_headers(kb_fast),
                    MODEL,
                    MODEL,
                    b_fast,
                    headers_slow=_load.auth_headers(kb_slow),
                    service_slow=b_slow,
                    note=f"--gateway-before: {args.gateway_before}",
                )
            )
        if want_bare:
            b_fast = start_bare(stack, "bare", fast.base_url, up_key, pin_proxy)
            b_slow = start_bare(stack, "bare-slow", slow.base_url, up_key, pin_proxy)
            targets.append(
                Target(
                    "bare-aiohttp",
                    b_fast.base_url + "/v1/messages",
                    b_slow.base_url + "/v1/messages",
                    _load.auth_headers("any"),
                    MODEL,
                    MODEL,
                    b_fast,
                    service_slow=b_slow,
                    note="bench/stack_choice.py's minimal aiohttp relay: the floor for any aiohttp proxy",
                )
            )
        if want_litellm:
            exe = Path(args.litellm_bin)
            if not exe.exists():
                log(f"LiteLLM not found at {exe}: skipped (see bench/README.md to install it)")
            else:
                log("starting LiteLLM (takes a few seconds)")
                t0 = time.monotonic()
                lsvc, master = start_litellm(stack, exe, fast, slow, up_key, pin_proxy)
                versions["litellm"] = litellm_version(exe)
                versions["litellm_startup_s"] = f"{time.monotonic() - t0:.1f}"
                h = _load.auth_headers(master)
                targets.append(
                    Target(
                        "litellm",
                        lsvc.base_url + "/v1/messages",
                        lsvc.base_url + "/v1/messages",
                        h,
                        MODEL,
                        MODEL + "-slow",
                        lsvc,
                    )
                )
                if not args.no_passthrough:
                    targets.append(
                        Target(
                            "litellm-pt",
                            lsvc.base_url + "/anthropic/v1/messages",
                            None,
                            h,
                            MODEL,
                            MODEL,
                            lsvc,
                            note="/anthropic pass-through; no slow upstream",
                        )
                    )
        for t in targets:
            why = sanity(t)
            if why:
                log(f"{t.name}: sanity check failed, dropped: {why}")
                t.failed = why
        failed = [t for t in targets if t.failed]
        targets = [t for t in targets if not t.failed]
        if not targets or targets[0].name != "direct":
            log("direct target failed: nothing to compare against")
            return 2
        time.sleep(0.5 if args.quick else 2.0)
        rss_start = {t.name: t.service.rss() for t in targets}
        raw = measure(targets, plan, fast, log)
        res = analyse(targets, raw, plan, rss_start)
        log("stopping the services")
    elapsed = time.monotonic() - t_start
    info["loadavg_end"] = str(Path("/proc/loadavg").read_text().split(" ", 3)[:3])
    names = [t.name for t in targets]
    rows = verdicts(res, names, plan.stream_concurrency)
    cmd = f"cd {REPO} && {sys.executable} bench/gateway_bench.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    report = [
        f"claudegate gateway benchmark — {info['date']}",
        f"machine: nproc={info['nproc']}, CPU {info['cpu']}, kernel {info['kernel']}, Python {info['python']}, "
        f"loadavg start {info['loadavg']} end {info['loadavg_end']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"plan: {plan.rounds} interleaved round(s), figures are medians over rounds; throughput: "
        f"{'wrk' if raw['wrk'] else 'the Python client'} {plan.wrk_seconds}s x {plan.concurrency} connections; "
        f"latency: 1 client {plan.lat1_seconds}s, {plan.concurrency} clients {plan.lat32_seconds}s against an "
        f"upstream answering in {plan.upstream_latency * 1e3:.0f} ms; streams, each paired with a direct one: "
        f"{plan.streams1} one pair at a time and {plan.streams} {plan.stream_concurrency} pairs at a time, events "
        f"spaced {plan.event_delay * 1e3:.0f} ms; "
        f"pinned={'yes' if args.pin else 'no'}",
        "",
        render(res, names, rows),
        "",
        "direct column: its own absolute value in parentheses (ms); for streams, direct paired with direct",
        "(the measurement's noise floor); batched: 'N of gaps checked'. added = target minus direct in the same",
        "round (streams: minus the paired direct stream's arrival of the same event). 'vs LiteLLM': against",
        "LiteLLM's better mode.",
    ]
    for t in targets:
        o = res[t.name]
        extra = []
        if o["errors"]:
            extra.append(f"{o['errors']} failed requests")
        for tag in ("stream1", "streamN"):
            if o[f"{tag}_failed"] or o[f"{tag}_shape_mismatch"]:
                extra.append(f"{tag}: failed={o[f'{tag}_failed']} other-shape={o[f'{tag}_shape_mismatch']} "
                             f"{o[f'{tag}_first_error']}")  # fmt: skip
        report.append(
            f"  {t.name}: req/s per round {', '.join(f'{x:.0f}' for x in o['rps_rounds'])}; during throughput "
            f"CPU {o['cpu_share'] * 100:.0f}% of a core (fake {o['fake_cpu_share'] * 100:.0f}%, load generator "
            f"{o['loadgen_cpu_share'] * 100:.0f}%), waited for a CPU {o['runq_ms_per_req']:.3f} ms/req; "
            f"at {plan.concurrency} clients: CPU {_f(o['lat32_cpu_ms_per_req'], '{:.3f}')} ms/req, waited for a CPU "
            f"{_f(o['lat32_runq_ms_per_req'], '{:.3f}')} ms/req; RSS at start {o['rss_start_mb']:.1f} MB"
            + (f"; {'; '.join(extra)}" if extra else "")
            + (f"; {t.note}" if t.note else "")
        )
    for t in failed:
        report.append(f"  {t.name}: not measured: {t.failed}")
    report += ["", f"reproduce: {cmd}", f"(took {elapsed:.0f}s)"]
    print("\n" + "\n".join(report))
    if args.json:
        payload = {
            "machine": info,
            "versions": versions,
            "plan": plan.__dict__,
            "results": res,
            "verdicts": [{k: v for k, v in r.items() if k != "fmt"} for r in rows],
            "command": cmd,
            "failed": {t.name: t.failed for t in failed},
            "report": report,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    any_fail = any(r["pass"] is False for r in rows)
    return 1 if (args.strict and any_fail) else 0


if __name__ == "__main__":
    sys.exit(main())
