"""How every screen looks, at 80x24 and 120x40 (pytest-textual-snapshot; update with --snapshot-update).

The app starts on the screen with the reference answers already given, in a
fixed directory, so the pictures do not depend on the machine or the time.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from claudegate.deploy import DeployResult, StepEvent
from claudegate.redact import Secret
from claudegate.smoke import Check, SmokeReport
from claudegate.wizard.app import WizardApp
from claudegate.wizard.form import SCREENS, WizardState
from tests.wizard import flow

FIXED = Path("/tmp/claudegate-wizard-snapshots")
SIZES = [(80, 24), (120, 40)]
FORM_SCREENS = [s.name for s in SCREENS[:7]]


@pytest.fixture
def fixed_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # One test at a time in the fixed directory, across pytest-xdist workers and
    # other runs on this machine: each empties it, which would pull it from under another.
    with open(f"{FIXED}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _fixed_home(monkeypatch)


def _fixed_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    shutil.rmtree(FIXED, ignore_errors=True)
    (FIXED / "home").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(FIXED / "config"))
    monkeypatch.setenv("HOME", str(FIXED / "home"))
    monkeypatch.chdir(FIXED)
    # The lock-out warning names this machine's address: a fixed one keeps the pictures portable.
    monkeypatch.setattr("claudegate.wizard.core.own_address", lambda host, port: "198.51.100.23")
    yield FIXED
    shutil.rmtree(FIXED, ignore_errors=True)


async def settle(pilot: Pilot[None]) -> None:
    """Wait for the first check (just after the first paint), and stop cursors blinking."""
    from textual.widgets import Input

    # A screen is current before the widgets inside its containers are mounted (on a
    # loaded machine, several pauses later): wait until their number stops changing too.
    mounted = -1
    for _ in range(100):
        await pilot.pause()
        now = len(pilot.app.screen.query("*"))
        if getattr(pilot.app.screen, "checked", True) and now == mounted:
            break
        mounted = now
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


def _app(screen: int, *, clients: bool = True) -> WizardApp:
    values: dict[str, Any] = dict(flow.REFERENCE_VALUES)
    values["upstream.api_key_file"] = str(FIXED / "config" / "claudegate" / "anthropic_api_key")
    state = WizardState(
        values=values,
        clients=[dict(flow.REFERENCE_CLIENT)] if clients else [],
        screen=screen,
    )
    if screen > 1:
        state.upstream_key = Secret(flow.UPSTREAM_KEY)
    return WizardApp(state, config_path=FIXED / "deploy.yaml", draft_file=FIXED / "draft.json")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", FORM_SCREENS)
def test_form_screens(snap_compare: Any, fixed_home: Path, name: str, size: tuple[int, int]) -> None:
    index = [s.name for s in SCREENS].index(name)
    assert snap_compare(_app(index), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_first_screen_empty(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    app = WizardApp(WizardState(), config_path=FIXED / "deploy.yaml", draft_file=FIXED / "draft.json")
    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_client_dialog(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    async def open_dialog(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)

    assert snap_compare(_app(5), terminal_size=size, run_before=open_dialog)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_host_key_dialog(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    async def ask(pilot: Pilot[None]) -> None:
        from claudegate.wizard.screens.dialogs import host_key_dialog

        pilot.app.push_screen(
            host_key_dialog("[203.0.113.10]:2222", "ssh-ed25519", "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
                            "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
        )
        await settle(pilot)

    assert snap_compare(_app(0), terminal_size=size, run_before=ask)


STEPS = [("connect", "Check the target"), ("lock", "Take the deploy lock"), ("docker", "Install Docker"),
         ("images", "Build the images"), ("files", "Write the release")]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_deploy_screen(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    async def deploying(pilot: Pilot[None]) -> None:
        from claudegate.wizard.form import document
        from claudegate.wizard.screens.run import DeployScreen

        await settle(pilot)
        app = pilot.app
        assert isinstance(app, WizardApp)
        session = app.session_for(document(app.state), FIXED)
        screen = DeployScreen(session, autostart=False)
        app.switch_screen(screen)
        await settle(pilot)
        total = len(STEPS)
        for index, (step, title) in enumerate(STEPS, 1):
            screen.show_event(StepEvent("start", step, title, index, total))
            if index < total:
                screen.show_event(StepEvent("plan", step, title, index, total, changes=(f"{title.lower()}",)))
                screen.show_event(StepEvent("finish", step, title, index, total, changed=True, elapsed=1.5 * index))
        screen.show_event(StepEvent("work", "files", "Write the release", total, total,
                                    message="sending the build context", done=3, expected=10, unit="bytes"))
        screen.running = None  # freeze the clock for the picture
        await settle(pilot)

    assert snap_compare(_app(6), terminal_size=size, run_before=deploying)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_result_screen(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    async def done(pilot: Pilot[None]) -> None:
        from claudegate.wizard.form import document

        app = pilot.app
        assert isinstance(app, WizardApp)
        app.session_for(document(app.state), FIXED)
        smoke = SmokeReport(
            checks=(Check("tls", "pass", "TLS 1.3, certificate valid for gw.example.com"),
                    Check("auth", "pass", "no key: 401"), Check("stream", "pass", "12 events")),
            base_url="https://gw.example.com", elapsed=4.0,
        )
        result = DeployResult(
            playbook="deploy", dry_run=False, target="deploy@203.0.113.10:2222", release_id="r-0123abcd",
            previous_release=None, steps=(), new_client_keys={"team-a": Secret("cg-team-a-EXAMPLEKEY0123456789")},
            smoke=smoke, elapsed=212.0,
        )
        app.show_result(result)
        await settle(pilot)

    assert snap_compare(_app(6), terminal_size=size, run_before=done)
