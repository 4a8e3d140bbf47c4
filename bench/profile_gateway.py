"""Profile the gateway under load: where does its CPU go?

Starts the fake and one gateway, drives it with wrk (non-streaming, or
streaming with --stream), records the gateway with py-spy and prints the
summary of bench/_profile_summary.py, including the gateway's own frames.

    /work/venv/bin/pip install py-spy
    /work/venv/bin/python bench/profile_gateway.py [--seconds 10] [--stream] [--raw /tmp/gw.raw]

Without py-spy, ``--cprofile FILE`` runs the gateway under cProfile instead
(slower, and it counts calls exactly) and prints the functions with the
most time of their own, then those with the most time inside.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load
import _profile_summary
import gateway_bench as gb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--stream", action="store_true", help="profile streamed requests")
    p.add_argument("--event-delay", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--raw", type=Path, default=Path("/tmp/claudegate-gateway.raw"))
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--gateway-bin", default=None)
    p.add_argument("--cprofile", type=Path, default=None, help="cProfile the gateway into this file (no py-spy)")
    args = p.parse_args(argv)
    if args.cprofile is not None:
        return _cprofile(args)
    spy = Path(sys.executable).with_name("py-spy")
    spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
    if not spy_cmd:
        print("py-spy is not installed: /work/venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    gw_cmd = gb.gateway_bin(args.gateway_bin)
    if gw_cmd is None:
        print("claudegate-gateway not found", file=sys.stderr)
        return 2
    with gb.Stack() as stack:
        fake = gb.start_fake(stack, "fake", "auto", "upk-profile", 0.0, args.event_delay, None)
        gw, key = gb.start_gateway(stack, "gateway", gw_cmd, fake.base_url, "upk-profile", None)
        url = gw.base_url + "/v1/messages"
        headers = _load.auth_headers(key)
        body = _load.message_body(gb.MODEL, stream=args.stream)
        result: dict[str, object] = {}

        def load() -> None:
            result.update(
                _load.wrk(url, headers, body, connections=args.concurrency, duration=args.seconds + 2)
            )

        th = threading.Thread(target=load)
        th.start()
        time.sleep(1.0)
        c0 = gw.cpu()
        t0 = time.perf_counter()
        subprocess.run([spy_cmd, "record", "-p", str(gw.pid), "-d", str(args.seconds), "-r", str(args.rate), "-f",
                        "raw", "-o", str(args.raw)], check=True, capture_output=True)  # fmt: skip
        cpu_share = (gw.cpu() - c0) / (time.perf_counter() - t0)
        th.join()
    print(f"load: {result.get('rps', 0):.0f} req/s, p99 {result.get('p99', 0):.2f} ms, errors {result.get('errors')}; "
          f"gateway CPU {cpu_share * 100:.0f}% of a core; "
          f"{'streamed' if args.stream else 'non-streamed'} requests; profile {args.raw}")  # fmt: skip
    return _profile_summary.main([str(args.raw), "--top", str(args.top), "--filter", "claudegate_gateway"])


def _cprofile(args: argparse.Namespace) -> int:
    import pstats

    gw_cmd = [sys.executable, "-m", "cProfile", "-o", str(args.cprofile), "-m", "claudegate_gateway"]
    with gb.Stack() as stack:
        fake = gb.start_fake(stack, "fake", "auto", "upk-profile", 0.0, args.event_delay, None)
        gw, key = gb.start_gateway(stack, "gateway", gw_cmd, fake.base_url, "upk-profile", None)
        body = _load.message_body(gb.MODEL, stream=args.stream)
        result = _load.wrk(gw.base_url + "/v1/messages", _load.auth_headers(key), body,
                           connections=args.concurrency, duration=args.seconds)  # fmt: skip
    # The gateway wrote its profile on the way out (SIGTERM ends it normally).
    requests = int(float(str(result.get("rps", 0))) * args.seconds) or 1
    print(f"load: {result.get('rps', 0):.0f} req/s ({requests} requests), errors {result.get('errors')}; "
          f"{'streamed' if args.stream else 'non-streamed'}; profile {args.cprofile}")  # fmt: skip
    stats = pstats.Stats(str(args.cprofile))
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumtime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
