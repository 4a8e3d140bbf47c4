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

from claudegate.control.progress import StepEvent
from claudegate.deploy.results import DeployResult
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
    # The reference answers' SSH key exists, as it does for an operator (a missing one is a note under it).
    (FIXED / "home" / ".ssh").mkdir(mode=0o700)
    (FIXED / "home" / ".ssh" / "claudegate_deploy").write_text("not a real key\n")
    (FIXED / "home" / ".ssh" / "claudegate_deploy").chmod(0o600)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(FIXED / "config"))
    monkeypatch.setenv("HOME", str(FIXED / "home"))
    # The SSH user's hint names the operator's user name (getpass reads these first).
    monkeypatch.setenv("LOGNAME", "operator")
    monkeypatch.setenv("USER", "operator")
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


async def mounted(pilot: Pilot[None], screen: Any) -> None:
    """Wait until ``screen`` is the one shown and composed (a loaded machine takes a few frames)."""
    for _ in range(200):
        await pilot.pause()
        if pilot.app.screen is screen and screen.query("#steps"):
            return
    raise AssertionError("the deploy screen never came up")


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
        await mounted(pilot, screen)
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


# --- every screen with its fields in their error state, and every dialog (80x24 first) -------------

#: Per screen: answers that are each wrong, so every field of the screen shows its problem at once.
BAD_ANSWERS: dict[str, dict[str, Any]] = {
    "target": {"target.host": "https://gw.example.com", "target.port": "70000", "target.user": "Root User",
               "images.base_image": "Debian:Bookworm"},
    "upstream": {"upstream.api_key_file": "", "upstream.base_url": "ftp://api.example.com"},
    "tls": {"domain": "gw_example.com", "tls.email": "ops-at-example"},
    "tls-files": {"tls.mode": "files", "domain": "10.0.0.1", "tls.cert_file": "", "tls.key_file": ""},
    "limits": {"limits.per_ip.rate": "20 per second", "limits.per_ip.burst": "-5", "limits.per_key.rate": "fast",
               "limits.per_key.burst": "x", "limits.connections_per_ip": "0", "limits.max_body_size": "lots",
               "limits.timeouts.client_body": "ten", "limits.timeouts.upstream_read": "-1"},
    "network": {"allowlist": "203.0.113.1/24, nonsense", "trusted_proxies": "0.0.0.0/0"},
    "review": {"save_path": str(FIXED)},
}
ERROR_SIZES = [(80, 24), (120, 40)]


async def show_every_problem(pilot: Pilot[None]) -> None:
    """Settle, then press Next: blocked, it draws every problem under its field (also "is required")."""
    await settle(pilot)
    await pilot.press("ctrl+n")
    await settle(pilot)


@pytest.mark.parametrize("size", ERROR_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_screens_with_every_field_wrong(snap_compare: Any, fixed_home: Path, case: str, size: tuple[int, int]) -> None:
    index = [s.name for s in SCREENS].index(case.split("-")[0])
    app = _app(index)
    app.state.values.update(BAD_ANSWERS[case])
    if case == "upstream":
        app.state.upstream_key = Secret("sk-ant-api03 pasted with a space")
    assert snap_compare(app, terminal_size=size, run_before=show_every_problem)


@pytest.mark.parametrize("size", ERROR_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_client_dialog_with_every_field_wrong(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    async def open_dialog(pilot: Pilot[None]) -> None:
        from claudegate.wizard.screens.clients import ClientDialog

        await settle(pilot)
        bad = {"name": "team a", "models": "claude sonnet", "endpoints": "v1/messages", "max_tokens": "0",
               "rpm": "sixty", "tpm": "-1", "daily_tokens": "0", "expires": "next week"}
        pilot.app.push_screen(ClientDialog(bad, []))
        await settle(pilot)
        await pilot.press("ctrl+s")  # refused: every problem drawn, the first field focused
        await settle(pilot)

    assert snap_compare(_app(5), terminal_size=size, run_before=open_dialog)


def _dialogs() -> dict[str, Any]:
    from claudegate.wizard.screens.dialogs import ConfirmDialog, HelpDialog, MessageDialog, SecretDialog

    return {
        "consent": lambda: ConfirmDialog("Go ahead?", "Docker is not installed on 203.0.113.10. Install it"
                                         " (apt-get install docker.io)?", yes="Yes, go ahead", no="No, stop"),
        "secret": lambda: SecretDialog("The key file /home/op/.config/claudegate/anthropic_api_key is missing:"
                                       " type the Anthropic key (it is saved there, 0600)."),
        "message": lambda: MessageDialog("Saved", "Saved /home/op/deploy.yaml."),
        "help": HelpDialog,
    }


@pytest.mark.parametrize("name", ["consent", "secret", "message", "help"])
def test_dialogs(snap_compare: Any, fixed_home: Path, name: str) -> None:
    async def ask(pilot: Pilot[None]) -> None:
        pilot.app.push_screen(_dialogs()[name]())
        await settle(pilot)

    assert snap_compare(_app(0), terminal_size=(80, 24), run_before=ask)


@pytest.mark.parametrize("name", ["deploy-confirm", "quit"])
def test_dialogs_the_wizard_opens(snap_compare: Any, fixed_home: Path, name: str) -> None:
    """Review's "Deploy now?" and Quit with a typed key, opened the way the operator opens them."""

    async def open_it(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("ctrl+n" if name == "deploy-confirm" else "ctrl+q")
        await settle(pilot)

    assert snap_compare(_app(6), terminal_size=(80, 24), run_before=open_it)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_deploy_screen_cancelled(snap_compare: Any, fixed_home: Path, size: tuple[int, int]) -> None:
    """Cancel is a cancellation, not a failure; the table's Status and Time are whole at 80 columns."""

    async def cancelled(pilot: Pilot[None]) -> None:
        from claudegate.errors import Cancelled
        from claudegate.wizard.form import document
        from claudegate.wizard.screens.run import DeployScreen

        await settle(pilot)
        app = pilot.app
        assert isinstance(app, WizardApp)
        screen = DeployScreen(app.session_for(document(app.state), FIXED))
        app.switch_screen(screen)
        await mounted(pilot, screen)
        total = len(STEPS)
        for index, (step, title) in enumerate(STEPS[:4], 1):
            screen.show_event(StepEvent("start", step, title, index, total))
            if index < 4:
                screen.show_event(StepEvent("finish", step, title, index, total, changed=index != 2,
                                            elapsed=40.25 * index))
        screen.cancelling = True
        screen.show_event(StepEvent("fail", "images", "Build the images", 4, total, message="cancelled",
                                    elapsed=12.5))
        screen._failed(Cancelled("cancelled in the wizard"))
        screen.running = None
        await settle(pilot)

    assert snap_compare(_app(6), terminal_size=size, run_before=cancelled)
