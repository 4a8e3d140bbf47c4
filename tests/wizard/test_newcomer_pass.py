"""Defects of the second newcomer pass at 80x24 (issue 14), each checked on the drawn screen: every problem
at once with a count that matches, no YAML talk, no telling off before typing, a readable help, a palette."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette
from textual.widgets import Button, Input, Static

from claudegate.wizard.app import WizardApp
from claudegate.wizard.screens.clients import ClientDialog
from claudegate.wizard.screens.dialogs import HELP, HelpDialog
from tests.wizard import flow
from tests.wizard.conftest import fill, next_enabled, press_next, screen_text, shown_message


def _summary(app: WizardApp) -> str:
    return str(app.screen.query_one("#summary", Static).render())


# Pilot draws no notifications unless asked: the tests that read a toast ask (a user sees them).
TOASTS = {"size": (80, 24), "notifications": True}


async def _open_client_dialog(wizard: WizardApp, pilot: object) -> None:
    await flow.to_screen(pilot, 5)  # type: ignore[arg-type]
    await pilot.press("a")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    assert isinstance(wizard.screen, ClientDialog)


async def test_a_model_glob_matching_no_model_is_refused_with_the_close_name(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await _open_client_dialog(wizard, pilot)
        await fill(pilot, "#f-name", "team-b")
        await fill(pilot, "#f-models", "claude-haiku-*, claud-*")
        shown = shown_message(pilot, "models")
        assert "entry 2: 'claud-*' matches no known model" in shown and "did you mean claude-*?" in shown, shown
        assert wizard.screen.query_one("#save", Button).disabled
        await fill(pilot, "#f-models", "claude-haiku-*, claude-*")
        assert shown_message(pilot, "models") == ""
        assert not wizard.screen.query_one("#save", Button).disabled


async def test_the_client_dialog_says_nothing_is_required_before_typing(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await _open_client_dialog(wizard, pilot)
        assert "is required" not in screen_text(pilot)
        assert shown_message(pilot, "name") == ""
        # Touched and emptied again: now it is said.
        await fill(pilot, "#f-name", "x")
        await fill(pilot, "#f-name", "")
        assert "is required" in shown_message(pilot, "name")


async def test_the_client_dialog_shows_every_problem_at_once_and_counts_what_it_shows(wizard: WizardApp) -> None:
    async with wizard.run_test(**TOASTS) as pilot:
        await _open_client_dialog(wizard, pilot)
        # No name yet (not typed in), a bad glob and a past expiry: Save says all three in one round.
        await fill(pilot, "#f-models", "claud-*")
        await fill(pilot, "#f-expires", "2020-01-01")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(wizard.screen, ClientDialog)
        shown = {key: shown_message(pilot, key) for key in ("name", "models", "expires")}
        assert "is required" in shown["name"], shown
        assert "matches no known model" in shown["models"], shown
        assert "in the past" in shown["expires"], shown
        # Counted beside Save and Cancel (a toast saying it covered Cancel at 80x24).
        buttons = next(row for row in screen_text(pilot).splitlines() if "Save" in row and "Cancel" in row)
        assert "3 to fix" in buttons, screen_text(pilot)


async def test_an_expiry_in_the_past_says_what_to_do_in_the_form(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await _open_client_dialog(wizard, pilot)
        await fill(pilot, "#f-name", "team-b")
        await fill(pilot, "#f-expires", "2020-01-01")
        shown = shown_message(pilot, "expires")
        assert "empty the Expires box for a key that never expires" in shown, shown
        assert "expires:" not in shown


async def test_every_bad_allowlist_entry_is_shown_and_counted(wizard: WizardApp) -> None:
    async with wizard.run_test(**TOASTS) as pilot:
        await flow.to_screen(pilot, 4)
        await fill(pilot, "#f-allowlist", "10.0.0.1/8, 203.0.113.0/24, nonsense")
        shown = shown_message(pilot, "allowlist")
        assert "entry 1: '10.0.0.1/8' has host bits set" in shown, shown
        assert "entry 3: 'nonsense' is not an IPv4 or IPv6" in shown, shown
        assert _summary(wizard) == "2 to fix"
        await press_next(pilot)
        assert "2 problems to fix" in screen_text(pilot)


async def test_a_semicolon_in_the_allowlist_is_explained(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 4)
        await fill(pilot, "#f-allowlist", "203.0.113.0/24;10.0.0.0/8")
        shown = shown_message(pilot, "allowlist")
        assert "';' does not separate entries; separate them with commas or spaces" in shown, shown
        assert not next_enabled(pilot)
        await fill(pilot, "#f-allowlist", "203.0.113.0/24 10.0.0.0/8")  # spaces separate entries
        assert shown_message(pilot, "allowlist") == ""
        assert next_enabled(pilot)


async def test_the_count_is_what_the_screen_shows(wizard: WizardApp) -> None:
    async with wizard.run_test(**TOASTS) as pilot:
        await pilot.pause()
        # The host is required but not typed in yet: not marked, and not counted as one "to fix".
        assert shown_message(pilot, "target.host") == ""
        assert _summary(wizard) == "1 to fill in"
        await fill(pilot, "#f-target-port", "x")
        assert _summary(wizard) == "1 to fix, 1 to fill in"
        await press_next(pilot)  # Next marks everything, and the count follows
        assert "is required" in shown_message(pilot, "target.host")
        assert _summary(wizard) == "2 to fix"
        assert "2 problems to fix" in screen_text(pilot)


async def test_f1_help_is_not_covered_by_a_notification(wizard: WizardApp) -> None:
    async with wizard.run_test(**TOASTS) as pilot:
        await pilot.pause()
        await press_next(pilot)  # "1 problem to fix" pops up
        assert "to fix:" in screen_text(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(wizard.screen, HelpDialog)
        text = screen_text(pilot)
        assert "to fix:" not in text
        for line in HELP.splitlines():
            assert line.strip() in text, line
        assert "Close" in text.splitlines()[-3], text  # the whole help fits at 80x24, its button too


async def test_the_command_palette_lists_the_screens_actions_and_runs_one(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(**TOASTS) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "gw.example.com")
        draft = home / "draft.json"
        draft.unlink()
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(wizard.screen, CommandPalette)
        text = screen_text(pilot)
        for name in ("Next", "Back", "Save draft", "Help", "Quit"):
            assert name in text, (name, text)
        await pilot.press(*"save draft")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert type(wizard.screen).__name__ == "TargetScreen"
        assert draft.exists()
        assert "Draft saved" in screen_text(pilot)


async def test_ctrl_n_right_after_typing_goes_on(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        box = wizard.screen.query_one("#f-target-host", Input)
        box.focus()
        await pilot.press(*"gw.example.com", "ctrl+n")  # no pause between the last key and Ctrl+N
        await pilot.pause()
        assert type(wizard.screen).__name__ == "UpstreamScreen"
