"""A deploy.yaml that lists several hosts (``hosts:`` and ``state:``, docs/multihost.md) in the wizard and
the console, read off the screen: the setup wizard edits one host and says the file is edited by hand
(no traceback, the file untouched); the console acts on every host, each under its own header; a
``hosts:`` list of one is that host's target."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from textual.pilot import Pilot

from claudegate.wizard.app import make_app
from claudegate.wizard.form import document
from tests.wizard.conftest import screen_text
from tests.wizard.test_tty_walk import Pane, pane

__all__ = ["pane"]  # the fixture: the wizard as `claudegate init --fresh --out deploy.yaml` in tmux

SEVERAL = """\
hosts:
  - {host: 127.0.0.1, port: 1, user: deploy}
  - {host: 127.0.0.2, port: 1, user: deploy}
domain: gw.example.com
tls: {mode: internal-ca}
upstream: {api_key_file: key}
state:
  redis: {url: "redis://10.0.0.5:6379/0", password_file: pw}
  postgres: {url: "postgresql://claudegate@10.0.0.5:5432/claudegate", password_file: pw, tls: disable}
"""


@pytest.fixture
def several_hosts(tmp_path: Path) -> Path:
    """deploy.yaml with two hosts that refuse connections (nothing is reached) and the state they share."""
    (tmp_path / "pw").write_text("a-password-for-the-test\n")
    (tmp_path / "pw").chmod(0o600)
    saved = tmp_path / "deploy.yaml"
    saved.write_text(SEVERAL)
    return saved


def test_init_on_several_hosts_says_they_are_edited_in_the_file(several_hosts: Path, pane: Pane) -> None:
    """Before: the wizard said "Loaded the answers" and showed an empty Host box; saving would have
    written a target: beside hosts:."""
    screen = pane.wait_for("EXIT=")
    text = " ".join("".join(screen.splitlines()).split())  # the message wraps at 80 columns
    assert "lists 2 hosts (hosts: 127.0.0.1, 127.0.0.2)" in text, screen
    assert "edit hosts: and state: in the file itself (docs/multihost.md)" in text, screen
    assert "claudegate console --config" in text, screen
    assert "Traceback" not in screen and "EXIT=2" in screen, screen
    assert several_hosts.read_text() == SEVERAL


async def _until(pilot: Pilot[None], text: str) -> str:
    for _ in range(200):
        await pilot.pause(0.05)
        if text in (shown := screen_text(pilot)):
            return shown
    raise AssertionError(f"{text!r} never appeared:\n{screen_text(pilot)}")


async def test_the_console_on_several_hosts_shows_every_host(several_hosts: Path, tmp_path: Path) -> None:
    """Before: the header named the first host only and Status said "the wizard deploys one host"."""
    app = make_app(several_hosts, draft_file=tmp_path / "draft.json")
    async with app.run_test(size=(80, 24)) as pilot:
        shown = await _until(pilot, "failed: status failed on 2 of 2 hosts")
        assert "on 2 hosts (127.0.0.1, 127.0.0.2)" in shown.splitlines()[0], shown
        assert "[host 1/2 (127.0.0.1:1)] FAILED: cannot connect to 127.0.0.1:1" in shown, shown
        assert "[host 2/2 (127.0.0.2:1)] FAILED: cannot connect to 127.0.0.2:1" in shown, shown
        assert "one host" not in shown


async def test_hosts_with_one_entry_is_edited_as_its_target(tmp_path: Path) -> None:
    saved = tmp_path / "deploy.yaml"
    saved.write_text("hosts: [{host: 203.0.113.10, user: deploy}]\ndomain: gw.example.com\n"
                     "tls: {mode: internal-ca}\nupstream: {api_key_file: key}\n")
    app = make_app(None, fresh=True, draft_file=tmp_path / "draft.json", save_to=saved)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        rows = screen_text(pilot).splitlines()
        assert "203.0.113.10" in next(r for r in rows if r.startswith(" Host *")), rows
        assert "deploy" in next(r for r in rows if r.startswith(" SSH user")), rows
        doc = document(app.state)
        assert doc["target"]["host"] == "203.0.113.10" and "hosts" not in doc, doc
        assert yaml.safe_load(saved.read_text())["hosts"]  # nothing written yet
