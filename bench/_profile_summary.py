"""Summarize a py-spy "raw" (collapsed stacks) profile: where the time goes.

    py-spy record -p PID -d 10 -r 200 -f raw -o prof.raw --nonblocking
    python bench/_profile_summary.py prof.raw [--top 30] [--filter claudegate_gateway]

Prints the top functions by self time and by inclusive time (share of all
samples), and with ``--filter`` the inclusive time of frames whose file
contains that text (e.g. the gateway's own package).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--filter", default=None, help="also list inclusive time of frames in files containing this"
    )
    args = p.parse_args(argv)
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    filt: collections.Counter[str] = collections.Counter()
    total = 0
    idle = 0
    with open(args.raw) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_s = line.rpartition(" ")
            try:
                count = int(count_s)
            except ValueError:
                continue
            frames = [f for f in stack.split(";") if f]
            if frames and frames[0].startswith(("process ", "thread ")):
                frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            total += count
            if not frames:
                continue
            leaf = _short(frames[-1])
            if leaf.startswith(("select (", "poll (", "_run_once", "epoll")) or "select (selectors" in leaf:
                idle += count
            self_t[leaf] += count
            for f in set(map(_short, frames)):
                incl[f] += count
            if args.filter:
                for f in {_short(x) for x in frames if args.filter in x}:
                    filt[f] += count
    if not total:
        print("no samples")
        return 1
    print(f"samples: {total} (event-loop wait at the leaf: {100 * idle / total:.1f}%)")
    print(f"\n-- top {args.top} by self time --")
    for f, c in self_t.most_common(args.top):
        print(f"{100 * c / total:6.1f}%  {f}")
    print(f"\n-- top {args.top} by inclusive time --")
    for f, c in incl.most_common(args.top):
        print(f"{100 * c / total:6.1f}%  {f}")
    if args.filter:
        print(f"\n-- inclusive time of frames in files matching {args.filter!r} --")
        for f, c in filt.most_common(args.top):
            print(f"{100 * c / total:6.1f}%  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
