"""Cost of finding secrets split over many pieces: linear in the body, for every run length.

The request filters glue neighbouring strings into runs of 2 to ``_MAX_RUN``
pieces with hard stops around each run (filters/scan.py), so that a secret
cut into that many pieces is found whatever the pieces around it start or
end with. This measures, in process, the time of ``FilterPolicy.apply`` on
the worst body for those joins: every piece a short text block, and a
detector's gate true on the glued text (a secret cut in ``--cuts`` pieces
with word characters touching both ends sits at the end), so every run join
is built and scanned. Reported per body size: ms per call and ns per byte;
the cost is linear when ns/byte stays flat as the body grows. The same run
with ``--max-run`` shows what each extra run length costs.

Usage (repo root, the worktree's venv):

    .venv/bin/python bench/split_join.py            # ~20 s
    .venv/bin/python bench/split_join.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "assets" / "gateway"))

from claudegate_gateway.filters import FilterPolicy  # noqa: E402
from claudegate_gateway.filters import scan as scan_module  # noqa: E402

AWS = "AKIAIOSFODNN7EXAMPLE"
WORDS = ["the", "gateway", "glues", "neighbouring", "blocks", "so", "a", "split", "secret", "is", "seen", "whole"]


def body(pieces: int, cuts: int) -> dict[str, Any]:
    step = len(AWS) // cuts
    secret = [AWS[i * step:(i + 1) * step] for i in range(cuts - 1)] + [AWS[(cuts - 1) * step:]]
    filler = [WORDS[i % len(WORDS)] + " " for i in range(max(pieces - cuts - 2, 0))]
    parts = [*filler, "x", *secret, "x"]
    return {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "text", "text": p} for p in parts]}]}


def timed(policy: FilterPolicy, doc: dict[str, Any], rounds: int) -> float:
    best: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = policy.apply(doc)
        best.append(time.perf_counter() - t0)
        assert result.blocked is not None, "the split secret was not found"
    return statistics.median(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cuts", type=int, default=0, help="pieces the secret is cut in (default: the run length)")
    ap.add_argument("--max-run", type=int, nargs="*", default=[], help="run lengths to compare (default: the shipped one)")
    args = ap.parse_args()
    shipped = scan_module._MAX_RUN
    runs = args.max_run or [shipped]
    sizes = [250, 1000, 4000] if args.quick else [250, 1000, 4000, 16000]
    rounds = 3 if args.quick else 5
    policy = FilterPolicy.default()
    out: list[dict[str, Any]] = []
    for run in runs:
        scan_module._MAX_RUN = run
        cuts = args.cuts or run
        for n in sizes:
            doc = body(n, cuts)
            size = len(json.dumps(doc))
            seconds = timed(policy, doc, rounds)
            row = {"max_run": run, "cuts": cuts, "pieces": n, "body_bytes": size,
                   "ms": round(seconds * 1000, 2), "ns_per_byte": round(seconds * 1e9 / size, 1)}
            out.append(row)
            print(json.dumps(row), flush=True)
    scan_module._MAX_RUN = shipped


if __name__ == "__main__":
    main()
