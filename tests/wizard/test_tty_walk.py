"""The wizard in a real terminal: ``claudegate init`` in an 80x24 tmux pane, typed as people type.

Keys go in as bursts (``tmux send-keys`` without pauses, the Anthropic key
as a bracketed paste), and every check reads the screen tmux shows
(``capture-pane``), not the widget tree: each bad answer's problem must be
drawn on the lines under its field, the pasted key must never be on screen,
and Save must write deploy.yaml and the 0600 key file. Waits are for screen
text, with a timeout, never fixed sleeps.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(300)

KEY = "sk-ant-api03-TTY-CANARY-" + secrets.token_hex(12)
CLAUDEGATE = Path(sys.executable).with_name("claudegate")


class Pane:
    """One tmux server (its own socket) with one 80x24 window running the wizard."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        run = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, (args, run.stderr)
        return run.stdout

    def keys(self, *keys: str) -> None:
        """Named keys (Tab, Enter, C-n) in one burst."""
        self.tmux("send-keys", "-t", "walk", *keys)

    def type(self, text: str) -> None:
        """Text typed at once, character by character as a terminal sends it."""
        self.tmux("send-keys", "-t", "walk", "-l", text)

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal sends a pasted clipboard."""
        self.tmux("set-buffer", "-b", "clip", text)
        self.tmux("paste-buffer", "-p", "-d", "-b", "clip", "-t", "walk")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "walk")

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.05)  # polling the screen, not waiting for a guessed duration
        raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")

    def wait_gone(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never went away; the screen:\n{screen}")


def under(screen: str, label: str, says: str, lines: int = 4) -> None:
    """``says`` is drawn on the lines right under the line of the field labelled ``label``."""
    rows = screen.splitlines()
    at = next((i for i, row in enumerate(rows) if label in row), None)
    assert at is not None, f"no field {label!r} on screen:\n{screen}"
    below = " ".join(row.strip() for row in rows[at + 1 : at + 1 + lines])
    assert says in " ".join(below.split()), f"{says!r} is not under {label!r}:\n{screen}"


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    assert shutil.which("tmux"), "tmux is needed for the terminal walk (.ci/run installs it)"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LANG": "C.UTF-8",
        "TERM": "tmux-256color",
    }
    socket = f"cg-walk-{os.getpid()}-{secrets.token_hex(4)}"
    pane = Pane(socket)
    command = " ".join(
        [f"{k}={v!r}" for k, v in env.items()]
        + [str(CLAUDEGATE), "init", "--fresh", "--out", str(tmp_path / "deploy.yaml"),
           ";", "echo", "EXIT=$?", ";", "sleep", "600"]
    )
    pane.tmux("-f", "/dev/null", "new-session", "-d", "-s", "walk", "-x", "80", "-y", "24", "-c", str(tmp_path),
              f"env -i {command}")
    try:
        yield pane
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)


def test_the_wizard_walk_in_a_real_terminal(pane: Pane, tmp_path: Path) -> None:
    started = time.monotonic()
    screen = pane.wait_for("Test connection")
    first_screen = time.monotonic() - started
    assert "Deploy to" in screen

    # 1 Target: Tab to Host and type at once; the problem is drawn under the field, on the first visit.
    pane.keys("Tab")
    pane.type("https://gw.example.com")
    under(pane.wait_for("is a URL"), "Host *", "is a URL, not a host name")
    pane.keys("C-a", "C-k")
    pane.type("203.0.113.10")
    pane.wait_gone("is a URL")
    pane.keys("Tab")  # to SSH port: focus selects "22", so the typed burst replaces it
    pane.type("70000")
    under(pane.wait_for("from 1 to 65535"), "SSH port", "from 1 to 65535")
    pane.keys("Tab")
    pane.type("Root User")
    under(pane.wait_for("not a Unix user name"), "SSH user", "not a Unix user name")
    pane.keys("C-n")  # blocked: still here, told why, and taken to the first field to fix
    screen = pane.wait_for("to fix: each is written")
    assert "Where the gateway runs" in screen
    pane.keys("C-a", "C-k")
    pane.type("2222")
    screen = pane.wait_for("2222")
    assert any(row.split() == ["SSH", "port", "2222"] for row in screen.splitlines()), screen
    pane.keys("Tab", "C-a", "C-k")
    pane.type("deploy")
    pane.keys("C-n")  # in the same burst as the text: Ctrl+N reads the box first (it used to stay put)

    # 2 Upstream: the key pasted straight away lands masked in the key box, never in clear anywhere.
    screen = pane.wait_for("Anthropic key *")
    key_file_line = next(row for row in screen.splitlines() if "Key file" in row)
    pane.paste(KEY)
    screen = pane.wait_for("•" * 8)
    assert KEY not in screen and KEY[:16] not in screen
    assert next(row for row in screen.splitlines() if "Key file" in row) == key_file_line
    pane.keys("C-n")

    # 3 TLS
    pane.wait_for("Domain *")
    pane.type("gw_example.com")
    under(pane.wait_for("not a valid DNS name"), "Domain *", "not a valid DNS name")
    pane.keys("C-a", "C-k")
    pane.type("gw.example.com")
    pane.keys("Tab", "Tab")  # past "Certificate from" to the e-mail
    pane.type("ops-at-example")
    under(pane.wait_for("not an email address"), "ACME email *", "not an email address")
    pane.keys("C-a", "C-k")
    pane.type("ops@example.com")
    pane.wait_gone("not an email address")
    pane.keys("C-n")

    # 4 Limits
    pane.wait_for("Rate per IP")
    pane.type("20 per second")  # the first box has the keys and its text was selected
    under(pane.wait_for("is not a rate"), "Rate per IP", "is not a rate")
    pane.keys("C-a", "C-k")
    pane.type("20r/s")
    pane.wait_gone("is not a rate")
    pane.keys("C-n")

    # 5 Allowlist
    pane.wait_for("Trusted proxies")
    pane.type("10.0.0.1/8, nonsense; 10.0.0.0/8")
    screen = pane.wait_for("entry 2")  # every bad entry at once, and the count is what is shown
    box = "Allowlist         10.0.0.1/8"
    under(screen, box, "';' does not separate entries; separate them with commas or spaces")
    under(screen, box, "entry 1: '10.0.0.1/8' has host bits set", lines=8)
    under(screen, box, "entry 2: 'nonsense'", lines=8)
    pane.keys("C-a", "C-k")
    pane.wait_gone("entry 2")
    pane.keys("C-n")

    # 6 Clients: the dialog shows its problems too, and Enter saves it.
    pane.wait_for("No clients yet")
    pane.keys("a")
    pane.wait_for("Who uses this key")  # the name box's help: it has the keys
    pane.type("team a")
    under(pane.wait_for("not a client name"), "Name *", "not a client name")
    pane.keys("C-a", "C-k")
    pane.type("team-a")
    pane.keys("Enter")
    pane.wait_gone("Who uses this key")
    pane.wait_for("team-a")
    pane.keys("C-n")

    # 7 Review: Save only writes the file and ends the wizard.
    pane.wait_for("Save and deploy")
    assert KEY not in pane.screen()
    pane.keys("C-o")
    screen = pane.wait_for("EXIT=")
    assert "EXIT=0" in screen and "Saved" in screen, screen
    saved = yaml.safe_load((tmp_path / "deploy.yaml").read_text())
    assert saved["target"] == {"host": "203.0.113.10", "port": 2222, "user": "deploy"}
    assert saved["domain"] == "gw.example.com" and saved["clients"] == [{"name": "team-a"}]
    assert KEY not in (tmp_path / "deploy.yaml").read_text()
    key_file = tmp_path / "config" / "claudegate" / "anthropic_api_key"
    assert key_file.read_text().strip() == KEY and key_file.stat().st_mode & 0o777 == 0o600
    assert first_screen < 20, first_screen
