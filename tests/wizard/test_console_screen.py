"""The day-2 console read off the drawn screen at 80x24: the focused field is lit and its help is shown
as on the setup screens, and a button that needs a box filled says so under that box, in the error colour.
No server: the target refuses connections, and nothing here may reach it."""

from __future__ import annotations

from pathlib import Path

from textual.color import Color
from textual.pilot import Pilot
from textual.widgets import RichLog

from claudegate.wizard.app import WizardApp, make_app
from claudegate.wizard.screens.console import ConsoleScreen
from tests.wizard.conftest import drawn_style, screen_text


def _console(home: Path) -> WizardApp:
    saved = home / "deploy.yaml"
    saved.write_text("target: {host: 127.0.0.1, port: 1, user: deploy}\ndomain: gw.example.com\n"
                     "tls: {mode: internal-ca}\nupstream: {api_key_file: key}\n")
    return make_app(saved, draft_file=home / "draft.json")


def _help_line(pilot: Pilot[None]) -> str:
    """The line above the footer's keys."""
    rows = [row for row in screen_text(pilot).splitlines() if row.strip()]
    return rows[-2].strip()


def _under(pilot: Pilot[None], label: str) -> str:
    """The text on the lines under the field labelled ``label`` (until the next field or the buttons)."""
    rows = screen_text(pilot).splitlines()
    at = next(i for i, row in enumerate(rows) if row.startswith(label))
    below = []
    for row in rows[at + 1 :]:
        if not row.startswith(" " * 18) or not row.strip():
            break
        below.append(row.strip())
    return " ".join(below)


def _log(app: WizardApp, name: str) -> str:
    return "\n".join(str(line.text) for line in app.screen.query_one(f"#{name}", RichLog).lines)


async def _to_clients(pilot: Pilot[None]) -> None:
    await pilot.pause()
    assert isinstance(pilot.app.screen, ConsoleScreen)
    await pilot.press("right")  # the tabs have the keys first: Status -> Clients
    await pilot.pause()
    await pilot.press("tab")  # into the tab: the Client box
    await pilot.pause()


async def test_the_focused_console_field_is_lit_and_has_its_help(home: Path) -> None:
    app = _console(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_clients(pilot)
        assert drawn_style(pilot, "Client ").reverse, screen_text(pilot)
        assert not drawn_style(pilot, "Rotate overlap").reverse
        assert _help_line(pilot).startswith("The client to rotate or revoke"), screen_text(pilot)
        await pilot.press("tab")
        await pilot.pause()
        assert drawn_style(pilot, "Rotate overlap").reverse, screen_text(pilot)
        assert not drawn_style(pilot, "Client ").reverse
        assert _help_line(pilot).startswith("How long the old key keeps working"), screen_text(pilot)
        await pilot.press("tab")  # a button has its help too
        await pilot.pause()
        assert _help_line(pilot).startswith("Every client on the host"), screen_text(pilot)


async def test_rotate_and_revoke_without_a_name_say_so_under_the_box(home: Path) -> None:
    app = _console(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_clients(pilot)
        error = Color.parse(app.current_theme.error or "red")
        for button, verb in (("#keys-rotate", "rotate"), ("#keys-revoke", "revoke")):
            await pilot.click(button)
            await pilot.pause()
            said = _under(pilot, "Client ")
            assert said == f"is required: type the name of the client to {verb} (List shows them)", screen_text(pilot)
            style = drawn_style(pilot, "is required: type the name")
            assert style.color is not None and style.color.triplet is not None
            # The theme's error colour (give or take the rounding of its blend with the background).
            assert all(abs(a - b) <= 4 for a, b in zip(style.color.triplet, error.rgb, strict=True)), (style, error)
            assert isinstance(app.screen, ConsoleScreen)  # no "Revoke ?" question
            assert app.screen.focused is app.screen.query_one("#client-name")  # the keys go to the box
            assert "keys rotate" not in _log(app, "keys") and "keys revoke" not in _log(app, "keys")
            await pilot.pause(0.3)  # a Button ignores a click during its 0.2 s press effect
        await pilot.press("t")  # typing in the box takes the message away
        await pilot.pause()
        assert _under(pilot, "Client ") == "", screen_text(pilot)


async def test_a_rotate_overlap_that_is_no_duration_is_said_as_typed(home: Path) -> None:
    app = _console(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _to_clients(pilot)
        await pilot.press(*"team-a", "tab", "ctrl+a", "ctrl+k", *"2 days")
        await pilot.pause()
        assert _under(pilot, "Rotate overlap") == "'2 days' is not a duration; write e.g. 90s, 30m, 24h or 7d", \
            screen_text(pilot)
        await pilot.click("#keys-rotate")
        await pilot.pause()
        assert "keys rotate" not in _log(app, "keys")
        assert app.screen.focused is app.screen.query_one("#overlap")
        await pilot.press("ctrl+a", "ctrl+k", *"2d")
        await pilot.pause()
        assert _under(pilot, "Rotate overlap") == "", screen_text(pilot)


async def test_f1_in_the_console_tells_the_consoles_keys(home: Path) -> None:
    """F1 showed the setup screens' keys (Ctrl+N next screen, drafts, Review), none of which work here."""
    app = _console(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        shown = screen_text(pilot)
        assert "Ctrl+R          refresh the status" in shown, shown
        assert "type a client's name, then Rotate or Revoke" in shown, shown
        assert "Ctrl+N" not in shown and "draft" not in shown, shown
        assert "Close" in shown  # fits at 80x24 with its button
