"""Where a stream's bytes go: the gateway under tracemalloc, snapshots diffed between two stream counts.

Run by ``bench/stream_memory.py --census DIR`` as its gateway (the bench's
``GATEWAY_CMD`` hook): the gateway runs with tracemalloc on, and on SIGUSR1
writes a snapshot and a census of Python objects by type to DIR (named by
the number of streams open). Then

    .venv/bin/python bench/stream_census.py diff DIR/3000.snap DIR/6000.snap [--group traceback]

prints what grew between the two, per stream, largest first: by allocation
line (default) or by whole traceback, and the objects by type.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType


def _census() -> dict[str, int]:
    return dict(Counter(type(o).__qualname__ for o in gc.get_objects()).most_common(80))


def serve(argv: list[str]) -> int:
    out = Path(os.environ["CENSUS_DIR"])
    tracemalloc.start(int(os.environ.get("CENSUS_FRAMES", "12")))

    def dump(_sig: int, _frame: FrameType | None) -> None:
        tag = (out / "tag").read_text().strip()
        gc.collect()
        tracemalloc.take_snapshot().dump(str(out / f"{tag}.snap"))
        (out / f"{tag}.census.json").write_text(json.dumps(_census()))
        (out / f"{tag}.done").write_text("")

    signal.signal(signal.SIGUSR1, dump)
    from claudegate_gateway.cli import main

    sys.argv = ["claudegate-gateway", *argv]
    return int(main() or 0)


def diff(a: Path, b: Path, group: str, top: int) -> None:
    streams = int(b.stem) - int(a.stem)
    old, new = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
    stats = new.compare_to(old, group)
    total = sum(s.size_diff for s in stats)
    print(f"{streams} more streams: {total / streams:.0f} B a stream (tracemalloc)")
    for s in stats[:top]:
        if s.size_diff / streams < 30:
            break
        print(f"{s.size_diff / streams:8.0f} B {s.count_diff / streams:6.2f} blocks")
        frames = s.traceback.format(limit=6 if group == "traceback" else 1, most_recent_first=True)
        for line in frames:
            print("      " + line.strip()[:150])
    ca = json.loads(a.with_suffix(".census.json").read_text())
    cb = json.loads(b.with_suffix(".census.json").read_text())
    print("objects a stream, by type:")
    grown = sorted(((cb[k] - ca.get(k, 0)) / streams, k) for k in cb)
    for per, name in reversed(grown):
        if per >= 0.5:
            print(f"  {per:5.1f} {name}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        return serve(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    d.add_argument("--group", default="lineno", choices=["lineno", "traceback", "filename"])
    d.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    diff(args.a, args.b, args.group, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
