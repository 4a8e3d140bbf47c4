"""The Deploy screen shows the engine's heartbeats (issue 14): the work label says what is still
going on and for how long; the log keeps one line per real event."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Label, RichLog

from claudegate.control.progress import StepEvent
from claudegate.wizard.app import WizardApp
from tests.wizard.test_snapshots import FIXED, _app, fixed_home, settle

__all__ = ["fixed_home"]  # the fixture, used by name


async def test_a_heartbeat_updates_the_work_label_not_the_log(fixed_home: Path) -> None:
    from claudegate.wizard.form import document
    from claudegate.wizard.screens.run import DeployScreen

    app = _app(6)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(pilot.app, WizardApp)
        screen = DeployScreen(pilot.app.session_for(document(pilot.app.state), FIXED), autostart=False)
        pilot.app.switch_screen(screen)
        await pilot.pause()
        screen.show_event(StepEvent("start", "images", "Images", 4, 9))
        screen.show_event(StepEvent("work", "images", "Images", 4, 9, message="building gateway here: RUN apt"))
        log = screen.query_one("#log", RichLog)
        lines = len(log.lines)
        screen.show_event(StepEvent("work", "images", "Images", 4, 9, message="still building gateway here: RUN apt",
                                    done=23.0, unit="s", heartbeat=True))  # fmt: skip
        await pilot.pause()
        label = str(screen.query_one("#work", Label).render())
        assert "still building gateway" in label and label.endswith("23s"), label
        assert len(log.lines) == lines
