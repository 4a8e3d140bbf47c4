"""Fixtures for the wizard tests: an isolated config home and a driver for the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.style import Style
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


def screen_text(pilot: Pilot[None]) -> str:
    """What the terminal shows now: the composited screen, line by line (not the widget tree)."""
    strips = pilot.app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def shown_message(pilot: Pilot[None], key: str) -> str:
    """The message under field ``key`` as drawn on screen ("" when no line is drawn), after checking that a
    drawn message sits right under its field, inside the visible part of the screen."""
    from textual.widgets import Static

    from claudegate.wizard.widgets import field_id

    screen = pilot.app.screen
    widget = screen.query_one("#msg-" + field_id(key), Static)
    if not widget.display:
        return ""
    region = widget.region
    assert region.height > 0 and region.width > 0, (key, region)
    lines = screen_text(pilot).splitlines()[region.y : region.bottom]
    drawn = " ".join(line[region.x : region.right].strip() for line in lines).strip()
    box = screen.query("#" + field_id(key))
    if box:
        assert box.first().region.bottom <= region.y + 1, (key, box.first().region, region)
    return drawn


def cursor_in_focused(pilot: Pilot[None]) -> bool:
    """Whether the terminal's cursor is inside the widget that has the keys (a paste lands where it blinks)."""
    focused = pilot.app.screen.focused
    if focused is None:
        return False
    return focused.region.contains_point(pilot.app.cursor_position)


def drawn_style(pilot: Pilot[None], text: str) -> Style:
    """The style ``text`` is drawn in (its first segment on the composited screen): reversed, its colour."""
    for strip in pilot.app.screen._compositor.render_strips():
        line = strip.text
        if text not in line:
            continue
        at = line.index(text)
        x = 0
        for segment in strip:
            if x <= at < x + len(segment.text):
                return segment.style or Style()
            x += len(segment.text)
    raise AssertionError(f"{text!r} is not on screen:\n{screen_text(pilot)}")
