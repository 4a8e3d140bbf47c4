"""How long `claudegate init` takes to show the wizard's first screen, in a real pseudo-terminal.

The clock starts when the process is forked and stops when the first
screen's text ("Deploy to", "Test connection") has been written to the
terminal. Each run uses a fresh, empty config home (no draft to read).

    python bench/wizard_bench.py [--runs 10] [--claudegate PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (load-independent, unlike the wall clock)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_screen_seconds(
    claudegate: str, *, size: tuple[int, int] = (80, 24), timeout: float = 30
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from fork to the first screen on the terminal."""
    home = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(home)
        os.execvpe(claudegate, [claudegate, "init", "--fresh"], env)  # noqa: S606 - argv, no shell
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    seen = b""
    elapsed = cpu = float("nan")
    try:
        while time.perf_counter() - started < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            seen += chunk
            if b"Test connection" in seen and b"Deploy to" in seen:
                elapsed = time.perf_counter() - started
                cpu = _cpu_seconds(pid)
                os.write(fd, b"\x11")  # Ctrl+Q
                break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
            select.select([fd], [], [], 0.1)
            with contextlib.suppress(OSError):
                os.read(fd, 65536)
        else:
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    finally:
        os.close(fd)
        shutil.rmtree(home, ignore_errors=True)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--claudegate", default=str(Path(sys.executable).with_name("claudegate")))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs = [first_screen_seconds(args.claudegate) for _ in range(args.runs)]
    walls = [w for w, _ in runs if w == w]
    cpus = [c for _, c in runs if c == c]
    print(f"runs: {len(runs)}, first screen shown in {len(walls)}")
    if walls:
        print(f"wall: median {statistics.median(walls):.3f} s, min {min(walls):.3f} s, max {max(walls):.3f} s")
        print(f"CPU:  median {statistics.median(cpus):.3f} s, min {min(cpus):.3f} s, max {max(cpus):.3f} s")
    print(f"load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    return 0 if len(walls) == len(runs) and statistics.median(walls) < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
