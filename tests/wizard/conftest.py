"""Fixtures for the wizard tests: an isolated config home and a driver for the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Select

from claudegate.wizard.app import WizardApp, make_app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """XDG_CONFIG_HOME and the cwd in tmp_path: the wizard's files land there and nowhere else."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def wizard(home: Path) -> WizardApp:
    return make_app(None, fresh=True, draft_file=home / "draft.json", save_to=home / "deploy.yaml")


async def fill(pilot: Pilot[None], selector: str, text: str) -> None:
    """Replace the input's text, the last character typed as a key press (validation runs as typed)."""
    widget = pilot.app.screen.query_one(selector, Input)
    widget.focus()
    await pilot.pause()  # focusing selects the text: set the value after that
    widget.value = text[:-1]
    widget.cursor_position = len(widget.value)
    await pilot.pause()
    if text:
        await pilot.press(text[-1])
    await pilot.pause()


async def choose(pilot: Pilot[None], selector: str, value: str) -> None:
    pilot.app.screen.query_one(selector, Select).value = value
    await pilot.pause()


async def tick(pilot: Pilot[None], selector: str, value: bool) -> None:
    pilot.app.screen.query_one(selector, Checkbox).value = value
    await pilot.pause()


def next_enabled(pilot: Pilot[None]) -> bool:
    from textual.widgets import Button

    return not pilot.app.screen.query_one("#next", Button).disabled


def message(pilot: Pilot[None], key: str) -> str:
    from textual.widgets import Static

    from claudegate.wizard.widgets import field_id

    return str(pilot.app.screen.query_one("#msg-" + field_id(key), Static).render())


async def press_next(pilot: Pilot[None]) -> None:
    await pilot.press("ctrl+n")
    await pilot.pause()
