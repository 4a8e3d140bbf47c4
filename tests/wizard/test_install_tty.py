"""``bash install.sh`` with no arguments, in a real pseudo-terminal, reaches the wizard's first screen --
run directly and piped into bash (``curl ... | bash``: the wizard must read the terminal, not the pipe).

The install itself is the no-op upgrade of an already installed claudegate
(the virtualenv is this test run's, reached through a symlink; no index),
so the test is about what install.sh does after installing.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def _run_in_pty(command: str, env: dict[str, str], cwd: Path, *, timeout: float = 60) -> str:
    """Run ``bash -c command`` with a pty as its controlling terminal; return what it drew until the
    first screen showed (then press Ctrl+Q)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.chdir(cwd)
        os.execvpe("bash", ["bash", "-c", command], env)  # noqa: S606 - the test runs a shell line on purpose
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        os.set_blocking(fd, False)
        # The terminal's size, as a real one reports it.
        import fcntl
        import struct
        import termios

        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                if b"Test connection" in seen and b"Deploy to" in seen:
                    os.write(fd, b"\x11")  # Ctrl+Q
                    break
        end = time.monotonic() + 15
        while time.monotonic() < end:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(fd, 65536)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return seen.decode("utf-8", errors="replace")


@pytest.fixture
def install_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "cg-home"
    home.mkdir()
    (home / "venv").symlink_to(VENV)  # "already installed": install.sh only upgrades (a no-op here)
    # A release wheel ships its dependency lock as a data file; this run's editable
    # install does not, so give the venv the checkout's (the same file).
    shipped = VENV / "share" / "claudegate" / "installer" / "requirements.lock"
    if not shipped.exists():
        shipped.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "installer" / "requirements.lock", shipped)
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TERM": "xterm-256color",
        "CLAUDEGATE_HOME": str(home),
        "CLAUDEGATE_BIN": str(tmp_path / "bin"),
        "CLAUDEGATE_SOURCE": "claudegate",
        "CLAUDEGATE_WHEELS": str(wheels),  # no index: nothing is downloaded
    }
    return env


@pytest.mark.timeout(120)
def test_install_sh_without_arguments_opens_the_wizard(install_env: dict[str, str], tmp_path: Path) -> None:
    out = _run_in_pty(f"bash {REPO / 'install.sh'}", install_env, tmp_path)
    assert "Test connection" in out and "Deploy to" in out, out[-2000:]


@pytest.mark.timeout(120)
def test_piped_install_reads_the_terminal_not_the_pipe(install_env: dict[str, str], tmp_path: Path) -> None:
    # As `curl ... | bash`: the script arrives on stdin; the wizard must still get the keyboard.
    out = _run_in_pty(f"cat {REPO / 'install.sh'} | bash", install_env, tmp_path)
    assert "Test connection" in out and "Deploy to" in out, out[-2000:]
    assert "needs a terminal" not in out


def test_without_a_terminal_init_says_what_to_do(tmp_path: Path) -> None:
    import subprocess

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(
        [str(VENV / "bin" / "claudegate"), "init"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 1
    assert "needs a terminal" in result.stderr and "--example" in result.stderr
