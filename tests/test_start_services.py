"""tests/infra/start-services.sh starts daemons that hold no lock their caller took.

`flock /work/docker-e2e.lock tests/infra/pristine-ci.sh` gave the dockerd
that `.ci/run` started the lock's descriptor; the lock then stayed taken as
long as dockerd ran, and every session waiting for it waited for good.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "infra" / "start-services.sh"


def _start_under_lock(lock: Path, launch: str) -> int:
    """Run ``launch`` (which starts ``sleep <token>`` in the background) under ``flock lock``; the sleep's pid."""
    token = f"60.{secrets.randbelow(10**9)}"  # a minute at most, and no other sleep names it
    done = subprocess.run(
        ["flock", str(lock), "bash", "-c", f"source {SCRIPT}; {launch.format(token)}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # setsid may fork: look the sleep up by its argument
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and (entry / "cmdline").read_bytes() == f"sleep\0{token}\0".encode():
                    return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no sleep {token} runs: {done.stderr}")


def _lock_is_free(lock: Path) -> bool:
    return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0


@pytest.mark.parametrize(
    ("launch", "frees_the_lock"),
    [
        ("daemon sleep {} </dev/null >/dev/null 2>&1", True),
        # What the script did before: the daemon kept the caller's descriptor, so the lock.
        ("setsid sleep {} </dev/null >/dev/null 2>&1 9>&- &", False),
    ],
)
def test_a_daemon_started_under_a_callers_lock_does_not_hold_it(
    tmp_path: Path, launch: str, frees_the_lock: bool
) -> None:
    lock = tmp_path / "e2e.lock"
    pid = _start_under_lock(lock, launch)
    try:
        # The flock and its shell are gone; the daemon runs on, in a session of its own.
        assert os.getsid(pid) == pid
        assert _lock_is_free(lock) is frees_the_lock
        held = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        assert (str(lock) in held) is not frees_the_lock, held
    finally:
        os.kill(pid, signal.SIGTERM)
