"""How long a deploy takes: from nothing to smoke-tested, a no-change redeploy,
and `claudegate --help` start-up.

Runs against a "fresh server" container (sshd only, no Docker) with the fake
Anthropic API as upstream, exactly as the end-to-end tests do, and prints a
table plus the command to reproduce. Needs dockerd and the local Debian base
image (tests/infra/start-services.sh, tests/infra/build-base-image.sh).

    .venv/bin/python bench/deploy_bench.py [--redeploys 3] [--help-runs 15]
        [--cold] [--transfer auto|build|save-load]

``--cold`` starts from an empty wheelhouse cache (a temporary one) and
builds the images without Docker's build cache (``deploy --refresh``), so
neither the operator's nor the host's caches help; the fresh server never has
claudegate images anyway. Without it the wheelhouse cache and this machine's
build cache are whatever earlier runs left (warm). Per-step times and the
longest silence between two progress events are printed too.

``--against REF --pairs N`` compares with an older commit in one run: N
pairs of fresh deploys, each pair one with REF's code (``git archive`` of
REF, put first on PYTHONPATH) and one with the working tree, alternating
which goes first, all with this harness and its other options. It prints
each pair and the median ratio after/before, which is what survives the
shared machine's noise better than absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from claudegate.deploy.api import connector_for, deploy  # noqa: E402
from tests.deploy.support import fresh_server_and_fake, fresh_server_doc, write_config  # noqa: E402

TARGETS = {"fresh deploy": 60.0, "no-change redeploy": 10.0, "claudegate --help": 0.3}


def help_startup(runs: int) -> float:
    exe = Path(sys.executable).parent / "claudegate"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class StepTimes:
    """A reporter that keeps each step's time and the longest gap between two events."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.longest_gap = 0.0
        self.gap_at = ""
        self._last: float | None = None

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last > self.longest_gap:
            self.longest_gap, self.gap_at = now - self._last, f"{event.title}: {event.message}"[:80]
        self._last = now
        if event.kind == "finish":
            self.steps[event.title] = event.elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redeploys", type=int, default=3, help="no-change redeploys to time (median)")
    parser.add_argument("--help-runs", type=int, default=15, help="`claudegate --help` runs to time (median)")
    parser.add_argument(
        "--cold", action="store_true", help="empty wheelhouse cache, no build cache (--refresh)"
    )
    parser.add_argument(
        "--transfer",
        choices=["auto", "build", "save-load"],
        default=None,
        help="images.transfer (default: the config's default)",
    )
    parser.add_argument("--against", metavar="REF", help="compare with this commit's code (see above)")
    parser.add_argument("--pairs", type=int, default=2, help="with --against: before/after pairs to run")
    parser.add_argument("--json", type=Path, help="also write the figures here (used by --against)")
    args = parser.parse_args()
    if args.against:
        return compare(args)
    if args.cold:
        os.environ["CLAUDEGATE_WHEELHOUSE_CACHE"] = tempfile.mkdtemp(prefix="bench-wheels-")
    times = StepTimes()

    results: dict[str, float] = {}
    notes: list[str] = []
    key = "sk-ant-api03-bench-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with fresh_server_and_fake(directory, key) as (server, fake):
            doc = fresh_server_doc(server, directory, fake, key, clients=[{"name": "bench"}])
            if args.transfer:
                doc["images"] = {"transfer": args.transfer}
            cfg = write_config(directory / "cfg", doc)
            with connector_for(cfg) as conn:
                t0 = time.perf_counter()
                first = deploy(cfg, conn, reporter=times, refresh=args.cold)
                results["fresh deploy"] = time.perf_counter() - t0
                assert first.smoke is not None and first.smoke.ok
                notes = [n for n in first.notes if "sent ahead" in n or "while Docker is installed" in n]
                again = []
                for _ in range(args.redeploys):
                    time.sleep(0.5)  # let the smoke test's burst drain from the rate bucket
                    t0 = time.perf_counter()
                    result = deploy(cfg, conn)
                    again.append(time.perf_counter() - t0)
                    assert not result.changed, result.changed_steps
                if again:
                    results["no-change redeploy"] = statistics.median(again)
    results["claudegate --help"] = help_startup(args.help_runs)

    print(
        f"deploy benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}, python {platform.python_version()}"
    )
    print(f"{'figure':<22} {'seconds':>9} {'target':>8}  result")
    for name, value in results.items():
        target = TARGETS[name]
        print(f"{name:<22} {value:>9.2f} {target:>8.1f}  {'PASS' if value <= target else 'FAIL'}")
    print("fresh deploy by step: " + ", ".join(f"{k} {v:.1f}" for k, v in times.steps.items()))
    for note in notes:
        print(f"note: {note}")
    print(f"longest silence between progress events: {times.longest_gap:.1f} s (before {times.gap_at!r})")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "steps": times.steps, "notes": notes}))
    print(
        f"reproduce: {Path(sys.executable).relative_to(REPO) if sys.executable.startswith(str(REPO)) else sys.executable}"
        f" bench/deploy_bench.py --redeploys {args.redeploys} --help-runs {args.help_runs}"
        f"{' --cold' if args.cold else ''}{' --transfer ' + args.transfer if args.transfer else ''}"
    )
    return 0


def compare(args: argparse.Namespace) -> int:
    """Alternate fresh deploys with REF's code and with the working tree; print the ratios."""
    rev = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        before_path = f"{tree / 'installer'}{os.pathsep}{tree / 'assets' / 'gateway'}"
        for pair in range(args.pairs):
            order = ["before", "after"] if pair % 2 == 0 else ["after", "before"]
            for label in order:
                env = dict(os.environ)
                if label == "before":
                    env["PYTHONPATH"] = before_path
                out = Path(tmp) / f"{label}-{pair}.json"
                argv = [sys.executable, __file__, "--redeploys", "0", "--help-runs", "1", "--json", str(out)]
                argv += ["--cold"] if args.cold else []
                argv += ["--transfer", args.transfer] if args.transfer else []
                load = os.getloadavg()[0]
                subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
                figures = json.loads(out.read_text())
                figures["load"] = load
                runs[label].append(figures)
                fresh = figures["results"]["fresh deploy"]
                print(f"pair {pair + 1} {label:<6} ({rev if label == 'before' else 'working tree'}): "
                      f"fresh deploy {fresh:.1f} s (load average {load:.1f} at start); "
                      + ", ".join(f"{k} {v:.1f}" for k, v in figures["steps"].items()
                                  if k in ("Docker engine", "Images")), flush=True)  # fmt: skip
                for note in figures["notes"]:
                    print(f"    {note}")
    ratios = [
        a["results"]["fresh deploy"] / b["results"]["fresh deploy"]
        for b, a in zip(runs["before"], runs["after"], strict=True)
    ]
    print(f"after/before per pair: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")
    print(f"reproduce: bench/deploy_bench.py --against {args.against} --pairs {args.pairs}"
          f"{' --cold' if args.cold else ''}{' --transfer ' + args.transfer if args.transfer else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
