"""One key's worst load against another key's small requests (issue 17, "one key cannot slow the others").

Starts the fake Anthropic API (tests/support/fake_anthropic.py, scripted so
that every streamed reply is a tool_use whose input is one long number in
3-character deltas, the response filter's worst case before issue 17) and a
gateway with the secret detectors on both directions. Then measures the
latency of small count_tokens requests from a *victim* key:

  * idle: nothing else running;
  * under attack: an unlimited *attacker* key at the same time sends
    8 MB count_tokens bodies (two at a time: parsed and filtered in the
    inspection workers) and streams the long number (four at a time).

Printed as JSON: p50/p99/max of both, the added p99, and what the attacker
got through. Run from the repo root with the venv that has the gateway:

    .venv/bin/python bench/fairness_bench.py [--seconds 20] [--digits 9000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
HDRS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50_ms": round(_q(xs, 0.5) * 1000, 1), "p99_ms": round(_q(xs, 0.99) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1)}  # fmt: skip


def _count_body(size: int, word: str) -> bytes:
    text = (word + " ") * (size // (len(word) + 1))
    blocks = [{"type": "text", "text": text[i : i + 100_000]} for i in range(0, len(text), 100_000)]
    return json.dumps(
        {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": blocks}]}
    ).encode()


def _victim(url: str, key: str, seconds: float, local: bool) -> list[float]:
    # local: a model outside the victim key's scope, refused after auth, route,
    # parse and filters -- the gateway alone, without the (shared) fake's time.
    model = "claude-sonnet-4-6" if local else "claude-haiku-4-5"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]}).encode()
    out = []
    with httpx.Client(base_url=url, headers={**HDRS, "x-api-key": key}, timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            r = client.post("/v1/messages/count_tokens", content=body)
            out.append(time.perf_counter() - t)
            assert r.status_code == (403 if local else 200), r.text
            time.sleep(0.02)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--digits", type=int, default=9000, help="length of the streamed number")
    p.add_argument("--body-mb", type=float, default=8.0)
    p.add_argument("--bodies", type=int, default=2, help="attacker's large bodies in flight at once")
    p.add_argument("--streams", type=int, default=4, help="attacker's streams in flight at once")
    args = p.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        try:
            up_key = "sk-ant-fake-" + secrets.token_hex(8)
            fport = _free_port()
            fake = subprocess.Popen([PY, str(REPO / "tests" / "support" / "fake_anthropic.py"), "--listen",
                                     f"127.0.0.1:{fport}", "--api-key", up_key, "--no-record"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            procs.append(fake)
            fake_url = f"http://127.0.0.1:{fport}"
            # A float: the fake parses the joined input, and Python refuses ints over 4300 digits.
            deltas = ['{"n": 1.'] + ["777"] * (args.digits // 3) + ["}"]
            for _ in range(100):
                try:
                    req = urllib.request.Request(fake_url + "/_fake/config", method="POST",  # noqa: S310 (loopback)
                                                 data=json.dumps({"script": [{"type": "tool_use", "name": "t",
                                                                              "deltas": deltas}]}).encode(),
                                                 headers={"content-type": "application/json"})  # fmt: skip
                    urllib.request.urlopen(req, timeout=5).read()  # noqa: S310 (the fake, on loopback)
                    break
                except urllib.error.HTTPError as exc:
                    raise SystemExit(f"the fake refused the script: {exc.read()[:300]!r}") from None
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the fake did not come up")
            (d / "up").write_text(up_key)
            (d / "pepper").write_text(secrets.token_urlsafe(32))
            os.chmod(d / "up", 0o600)
            os.chmod(d / "pepper", 0o600)
            port, internal = _free_port(), _free_port()
            (d / "gw.yaml").write_text(
                f"listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\n"
                f"upstream: {{base_url: '{fake_url}', api_key_file: '{d / 'up'}'}}\n"
                f"keystore: '{d / 'keys.db'}'\npepper_file: '{d / 'pepper'}'\naudit_log: '{d / 'audit.jsonl'}'\n"
                "filters: [{name: secrets, detectors: [all], action: redact, direction: both}]\n"
            )
            gw = [PY, "-m", "claudegate_gateway"]

            def key(name: str) -> str:
                out = subprocess.run([*gw, "keys", "create", name, "--config", str(d / "gw.yaml"),
                                      "--models", "claude-haiku-*"], capture_output=True, text=True, check=True)  # fmt: skip
                return out.stdout.split()[-1]

            victim, attacker = key("victim"), key("attacker")
            # GATEWAY_CMD: another gateway to measure (an older version: env PYTHONPATH=... python -m claudegate_gateway).
            run = os.environ.get("GATEWAY_CMD", "").split() or gw
            gateway = subprocess.Popen(
                [*run, "serve", "--config", str(d / "gw.yaml")], stderr=subprocess.DEVNULL
            )
            procs.append(gateway)
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{internal}/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            if os.environ.get("FAIRNESS_BENCH_SHOW_STREAM"):  # what one attacker stream looks like
                body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8192, "stream": True,
                                   "messages": [{"role": "user", "content": "go"}]}).encode()  # fmt: skip
                r = httpx.post(url + "/v1/messages", content=body, headers={**HDRS, "x-api-key": attacker})
                print(r.status_code, len(r.content), r.content[:400], r.content[-300:], file=sys.stderr)
            big = _count_body(int(args.body_mb * 1_000_000), "lorem")
            with httpx.Client(base_url=url, headers={**HDRS, "x-api-key": attacker}, timeout=120) as c:
                c.post("/v1/messages/count_tokens", content=big)  # start the inspection workers
            idle = _victim(url, victim, args.seconds / 2, True)
            idle_up = _victim(url, victim, args.seconds / 2, False)
            stop = threading.Event()
            done = {"bodies": 0, "streams": 0, "stream_bytes": 0}

            def bodies() -> None:
                with httpx.Client(base_url=url, headers={**HDRS, "x-api-key": attacker}, timeout=120) as c:
                    while not stop.is_set():
                        c.post("/v1/messages/count_tokens", content=big)
                        done["bodies"] += 1

            def streams() -> None:
                body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8192, "stream": True,
                                   "messages": [{"role": "user", "content": "go"}]}).encode()  # fmt: skip
                with httpx.Client(base_url=url, headers={**HDRS, "x-api-key": attacker}, timeout=120) as c:
                    while not stop.is_set():
                        with c.stream("POST", "/v1/messages", content=body) as r:
                            for chunk in r.iter_raw():
                                done["stream_bytes"] += len(chunk)
                        done["streams"] += 1

            threads = [threading.Thread(target=bodies) for _ in range(args.bodies)] + [
                threading.Thread(target=streams) for _ in range(args.streams)
            ]
            for t in threads:
                t.start()
            time.sleep(1.0)
            attacked = _victim(url, victim, args.seconds / 2, True)
            attacked_up = _victim(url, victim, args.seconds / 2, False)
            stop.set()
            for t in threads:
                t.join()
            result = {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.node()} {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
                f"Python {platform.python_version()}",
                "gateway_alone": {
                    "idle": _summary(idle),
                    "under_attack": _summary(attacked),
                    "added_p99_ms": round((_q(attacked, 0.99) - _q(idle, 0.99)) * 1000, 1),
                },
                "through_the_shared_fake": {
                    "idle": _summary(idle_up),
                    "under_attack": _summary(attacked_up),
                    "added_p99_ms": round((_q(attacked_up, 0.99) - _q(idle_up, 0.99)) * 1000, 1),
                },
                "attacker": {
                    **done,
                    "body_mb": args.body_mb,
                    "number_digits": args.digits,
                    "seconds": args.seconds,
                    "bodies_at_once": args.bodies,
                    "streams_at_once": args.streams,
                },
            }
            print(json.dumps(result, indent=2))
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
