"""Defects of the fourth newcomer pass at 80x24, each checked on the drawn screen (the composited screen
and its styles, not the widget tree)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from claudegate.wizard.app import WizardApp
from tests.wizard import flow
from tests.wizard.conftest import choose, fill, press_next, screen_text


def _reversed_labels(pilot: Pilot[None]) -> list[str]:
    """The field labels drawn reversed (the focused field's, and only it)."""
    labels = {str(label.render()).strip() for label in pilot.app.screen.query(".field-label")}
    out = []
    for strip in pilot.app.screen._compositor.render_strips():
        out += [s.text.strip() for s in strip if s.style and s.style.reverse and s.text.strip() in labels]
    return out


async def test_a_blocked_next_lights_the_field_it_moved_to(wizard: WizardApp) -> None:
    """Next refused moves the keys to the first bad field; its label must be the lit one (the label of the
    field left stayed reversed: the keys went where nothing showed them)."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert _reversed_labels(pilot) == ["Deploy to"], screen_text(pilot)
        await fill(pilot, "#f-target-port", "70000")
        await pilot.press("shift+tab", "shift+tab")  # back to Deploy to
        await pilot.pause()
        assert _reversed_labels(pilot) == ["Deploy to"], screen_text(pilot)
        await press_next(pilot)
        assert wizard.screen.focused is wizard.screen.query_one("#f-target-host")
        assert _reversed_labels(pilot) == ["Host *"], screen_text(pilot)


def _help_line(pilot: Pilot[None]) -> str:
    """The help line as drawn: the screen's text where the help sits (above Back/Next)."""
    region = pilot.app.screen.query_one("#help").region
    rows = screen_text(pilot).splitlines()[region.y : region.bottom]
    return " ".join(" ".join(row[region.x : region.right] for row in rows).split())


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5, 6])
async def test_every_tab_stop_shows_where_it_is(wizard: WizardApp, index: int) -> None:
    """Tab goes round the screen's fields and buttons; each stop says what it is on the help line (the
    form's scrolling body was a stop of its own: nothing lit, no help, one Tab lost)."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, index)
        stops = len(wizard.screen.focus_chain)
        for _ in range(stops + 1):
            await pilot.press("tab")
            await pilot.pause()
            focused = wizard.screen.focused
            assert _help_line(pilot), (focused, screen_text(pilot))


async def test_an_open_dropdown_keeps_its_fields_help(wizard: WizardApp) -> None:
    """The open list had the keys and the help line went blank."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        help_text = _help_line(pilot)
        assert help_text.startswith("This machine needs Docker"), help_text
        await pilot.press("enter")  # opens "Deploy to"
        await pilot.pause()
        assert "This machine" in screen_text(pilot)
        assert _help_line(pilot) == help_text, screen_text(pilot)


async def test_the_tls_check_names_the_boxes_not_yaml_keys(wizard: WizardApp) -> None:
    """Check on missing files said "check tls.cert_file / tls.key_file": keys of a file the operator has
    not seen yet, not the boxes on the screen."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await fill(pilot, "#f-domain", "gw.example.com")
        await choose(pilot, "#f-tls-mode", "files")
        await fill(pilot, "#f-tls-cert_file", "cert.pem")
        await fill(pilot, "#f-tls-key_file", "key.pem")
        await pilot.click("#check")
        for _ in range(100):
            await pilot.pause(0.05)
            if "Problem:" in screen_text(pilot):
                break
        shown = " ".join(screen_text(pilot).split())
        assert "check the Cert file and Key file boxes" in shown, screen_text(pilot)
        assert "tls.cert_file" not in shown


async def test_edit_and_remove_are_offered_only_with_a_client(wizard: WizardApp) -> None:
    """With no client the footer listed "e Edit  del Remove", and both keys (and buttons) did nothing."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        footer = screen_text(pilot).splitlines()[-1]
        assert "a Add" in footer and "Edit" not in footer and "Remove" not in footer, footer
        assert wizard.screen.query_one("#edit").disabled and wizard.screen.query_one("#remove").disabled
        await flow.clients(pilot)  # adds team-a
        footer = screen_text(pilot).splitlines()[-1]
        assert "e Edit" in footer and "del Remove" in footer, footer
        await pilot.press("delete")
        await pilot.pause()
        assert "No clients yet" in screen_text(pilot)
        assert "Edit" not in screen_text(pilot).splitlines()[-1]


async def test_a_failed_deploy_does_not_still_say_deploying(wizard: WizardApp, home: Path) -> None:
    """The line above the steps said "Deploying to 127.0.0.1…" under "Deploy failed"."""
    from claudegate.wizard.screens.run import DeployScreen

    key = home / "anthropic_api_key"
    key.write_text("sk-ant-api03-NOT-A-REAL-KEY\n")
    key.chmod(0o600)
    doc = {"target": {"host": "127.0.0.1", "port": 1, "user": "deploy"}, "domain": "gw.example.com",
           "tls": {"mode": "internal-ca"}, "upstream": {"api_key_file": str(key)}}
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        wizard.switch_screen(DeployScreen(wizard.session_for(doc, home), autostart=True))
        for _ in range(400):
            await pilot.pause(0.05)
            if "Deploy failed" in screen_text(pilot):
                break
        rows = screen_text(pilot).splitlines()
        title = " ".join(" ".join(rows[1:3]).split())
        assert title.startswith("The deploy to 127.0.0.1 failed: Retry resumes it"), screen_text(pilot)
        assert "Deploying to" not in screen_text(pilot)
