"""Defects of the fourth newcomer pass at 80x24, each checked on the drawn screen (the composited screen
and its styles, not the widget tree)."""

from __future__ import annotations

from textual.pilot import Pilot

from claudegate.wizard.app import WizardApp
from tests.wizard.conftest import fill, press_next, screen_text


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
