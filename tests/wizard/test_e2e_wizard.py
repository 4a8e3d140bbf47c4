"""End to end: the wizard, driven by Pilot, deploys to the sshd-only fresh-server container.

In order, on one server: Test connection (the host key confirmed in the
dialog, its fingerprint compared with the one the test made) -> the answers
-> Save and deploy -> Cancel mid-deploy (the host's journal says where it
stopped, unfinished, and the lock is free) -> Retry resumes to a passing
smoke test and the client key shown once -> ``claudegate deploy --config``
on the saved YAML reports no changes. The upstream is the fake Anthropic API.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest
from textual.pilot import Pilot
from textual.widgets import Button, RichLog, Static, TabbedContent

from claudegate.deploy.layout import HostLayout
from claudegate.wizard.app import WizardApp, make_app
from claudegate.wizard.screens.clients import ClientDialog
from claudegate.wizard.screens.dialogs import ConfirmDialog
from claudegate.wizard.screens.run import DeployScreen, ResultScreen
from tests.deploy.support import DOMAIN
from tests.support.fake_anthropic import spawn_fake
from tests.support.fresh_server import BASE_IMAGE, FreshServer, start_fresh_server
from tests.wizard.conftest import choose, fill, press_next

CANARY = "sk-ant-api03-WIZARD-E2E-" + secrets.token_hex(16)
DEPLOYED: dict[str, Path] = {}
EXPECTED_KEY: dict[str, str] = {}  # the wizard run's operator home, for the console test after it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FreshServer, str]]:
    directory = tmp_path_factory.mktemp("wizard-e2e")
    with start_fresh_server(directory / "server") as fresh:
        fake = spawn_fake("0.0.0.0:0", api_keys=[CANARY], event_delay=0.02)
        try:
            yield fresh, f"http://{fresh.host_address}:{fake.url.rsplit(':', 1)[1]}"
        finally:
            fake.stop()


CONSENTS: list[str] = []
#: Dialogs already answered, kept (so no later screen can reuse an id): never answered twice.
ANSWERED: list[object] = []


def _answer(screen: object, button: str = "#yes") -> None:
    """Press a dialog's button, once: the wait loops then leave this dialog alone until it is gone."""
    assert isinstance(screen, ConfirmDialog | ClientDialog), screen
    ANSWERED.append(screen)
    screen.query_one(button, Button).press()


#: Every wait in a test ends before pytest-timeout's (TIMEOUT) would: a hang then
#: fails with what was on the screen, the deploy log and every thread's stack,
#: not with pytest-timeout's dump cut short (a CI run lost where it stood that way).
TIMEOUT = 1200
BUDGET: dict[str, float] = {}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.docker,
    pytest.mark.timeout(TIMEOUT),
]


def _thread_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame)[-12:])
        for ident, frame in sys._current_frames().items()
    )


async def _until(
    pilot: Pilot[None],
    what: str,
    cond: Callable[[], bool],
    timeout: float = 600,
    failed: Callable[[], str] | None = None,
) -> None:
    """Wait for ``cond``; a consent the deploy asks on the way (install Docker) is answered yes.

    ``failed`` returns why the wait is over without ``cond`` ("" while it is not): a deploy that
    ended in an error is reported at once, not after the timeout (a pristine run sat out 19 minutes).
    """
    deadline = min(time.monotonic() + timeout, BUDGET.get("end", float("inf")))
    while not cond():
        why = failed() if failed is not None else ""
        if why:
            raise AssertionError(f"waiting for {what}: {why}")
        if not pilot.app.is_running or getattr(pilot.app, "_exception", None) is not None:
            # An error in a callback (e.g. on the worker's way back to the screen) stops the
            # app; waiting on would only sit out the timeout.
            raise AssertionError(f"the app stopped while waiting for {what}: "
                                 f"{getattr(pilot.app, '_exception', None)!r}\n{_thread_stacks()[-8000:]}")
        screen = pilot.app.screen
        if any(screen is done for done in ANSWERED):
            # Answered already (by this loop or by a button press the app has not handled yet):
            # a second dismiss would pop the screen beneath the dialog too.
            await pilot.pause(0.1)
            continue
        if isinstance(screen, ConfirmDialog) and screen.yes.startswith("Yes, go ahead"):
            CONSENTS.append(screen.text)
            ANSWERED.append(screen)
            screen.dismiss(True)
            await pilot.pause()
            continue
        if isinstance(screen, ConfirmDialog) and screen.yes == "Trust this key" and what != "the host key dialog":
            # Asked again on a later connection: the key must still be the server's.
            CONSENTS.append(f"host key asked again: {screen.detail}")
            assert screen.detail == EXPECTED_KEY.get("fingerprint"), screen.detail
            ANSWERED.append(screen)
            screen.dismiss(True)
            await pilot.pause()
            continue
        if time.monotonic() > deadline:
            screen = pilot.app.screen
            texts = [str(w.render()) for w in screen.query(Static) if w.id in ("report", "error", "summary")]
            log = "\n".join(str(line.text) for line in screen.query_one("#log").lines) if isinstance(
                screen, DeployScreen) else ""
            raise AssertionError(f"timed out waiting for {what}: {type(screen).__name__}, {texts},"
                                 f" problems {getattr(screen, 'problems', None)}\n{log[-4000:]}\n"
                                 f"{_thread_stacks()[-12000:]}")
        await pilot.pause(0.2)


def _deploy_error(screen: DeployScreen) -> str:
    """The deploy screen's error once its run has ended in one ("" until then)."""
    text = str(screen.query_one("#error", Static).render())
    return text if screen.finished and "failed" in text.lower() else ""


def _text(app: WizardApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _host_state(server: FreshServer) -> tuple[dict[str, object] | None, bool]:
    layout = HostLayout()
    code, out = server.exec(["sh", "-c", f"cat {layout.journal} 2>/dev/null"])
    journal = json.loads(out) if code == 0 and out.strip() else None
    code, _ = server.exec(["test", "-e", layout.lock_dir])
    return journal, code == 0


async def test_wizard_deploys_to_a_fresh_server(
    server: tuple[FreshServer, str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh, upstream = server
    BUDGET["end"] = time.monotonic() + TIMEOUT - 60
    DEPLOYED["home"] = home
    EXPECTED_KEY["fingerprint"] = fresh.host_key_fingerprint
    app = make_app(None, fresh=True, draft_file=home / "draft.json", save_to=home / "deploy.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # 1 Target, and Test connection: the host key is asked in the dialog.
        await fill(pilot, "#f-target-host", fresh.ip)
        await fill(pilot, "#f-target-port", str(fresh.port))
        await fill(pilot, "#f-target-user", fresh.user)
        await fill(pilot, "#f-target-ssh_key", str(fresh.key_path))
        await fill(pilot, "#f-images-base_image", BASE_IMAGE)  # no registry here: this machine's image is sent
        await pilot.pause()
        app.screen.query_one("#test", Button).press()
        await _until(pilot, "the host key dialog", lambda: isinstance(app.screen, ConfirmDialog), 120)
        assert _text(app, "#detail") == fresh.host_key_fingerprint
        _answer(app.screen)  # not a click: the dialog may not be laid out yet
        await _until(pilot, "the host key answered", lambda: not isinstance(app.screen, ConfirmDialog), 30)
        await _until(pilot, "the connection report", lambda: "Ready to deploy" in _text(app, "#report")
                     or "Failed" in _text(app, "#report") or "Not ready" in _text(app, "#report"), 120)
        assert "Ready to deploy" in _text(app, "#report"), _text(app, "#report")
        assert app.state.host_key_fingerprint == fresh.host_key_fingerprint
        await press_next(pilot)
        # 2 Upstream: the key, and the fake API as the upstream.
        await fill(pilot, "#api-key", CANARY)
        await fill(pilot, "#f-upstream-base_url", upstream)
        await press_next(pilot)
        # 3 TLS: a private CA (no public DNS here).
        await fill(pilot, "#f-domain", DOMAIN)
        await choose(pilot, "#f-tls-mode", "internal-ca")
        await press_next(pilot)
        # 4 Limits: a quick-draining per-address bucket (the smoke test ends with a burst).
        await fill(pilot, "#f-limits-per_ip-rate", "50r/s")
        await fill(pilot, "#f-limits-per_ip-burst", "20")
        await press_next(pilot)
        await press_next(pilot)  # 5 Allowlist: everyone
        # 6 Clients
        await pilot.press("a")
        await pilot.pause()
        await fill(pilot, "#f-name", "team-a")
        await fill(pilot, "#f-rpm", "600")
        await pilot.press("ctrl+s")
        await pilot.pause()
        await press_next(pilot)
        # 7 Review -> Save and deploy
        assert type(app.screen).__name__ == "ReviewScreen"
        await press_next(pilot)
        assert isinstance(app.screen, ConfirmDialog) and app.screen.yes == "Deploy now"  # asked, not started
        _answer(app.screen)
        await _until(pilot, "the deploy screen", lambda: isinstance(app.screen, DeployScreen), 60)
        deploying = app.screen
        saved = home / "deploy.yaml"
        assert saved.exists() and CANARY not in saved.read_text()

        # Cancel during the image builds (the longest step, abandoned at its next output line).
        await _until(pilot, "the images step", lambda: "images" in deploying.rows, 600)
        await pilot.click("#cancel")
        await _until(pilot, "Cancel to be taken", lambda: deploying.cancelling, 10)
        await _until(pilot, "the cancellation", lambda: "Cancelled" in _text(app, "#error"), 600)
        assert any("docker" in text.lower() for text in CONSENTS), CONSENTS  # asked in a dialog, answered yes
        journal, locked = _host_state(fresh)
        assert journal is not None and not journal["finished"], journal
        assert "cancel" in str(journal["outcome"]).lower(), journal
        assert not locked, "the lock must be released after a cancel"
        assert not deploying.query_one("#retry", Button).disabled

        # Retry resumes the same deploy to a passing smoke test.
        await pilot.click("#retry")
        await _until(pilot, "Retry to start", lambda: not deploying.finished or isinstance(app.screen, ResultScreen), 10)
        await _until(pilot, "the result screen", lambda: isinstance(app.screen, ResultScreen), 900,
                     failed=lambda: _deploy_error(deploying))
        result = app.screen
        assert isinstance(result, ResultScreen)
        assert result.result.smoke is not None and result.result.smoke.ok, result.result.smoke
        assert "team-a" in result.result.new_client_keys
        key = result.result.new_client_keys["team-a"].reveal()
        # The screen is current as soon as it is switched to; the panes inside its
        # tabs are mounted a little later (a slow machine saw none yet).
        await _until(pilot, "the Keys tab", lambda: bool(result.query("#key-team-a")), 30)
        shown = str(result.query_one("#key-team-a", Static).render())
        assert shown == key  # shown once, here
        assert CANARY not in app.export_screenshot()
        await pilot.press("ctrl+q")

    # The saved YAML redeploys without a question, and nothing changes.
    run = subprocess.run(
        [str(Path(sys.executable).with_name("claudegate")), "deploy", "--config", str(saved), "--json"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(run.stdout)
    assert data["changed"] is False, data["changed_steps"]
    assert data["smoke"]["ok"] is True
    assert CANARY not in run.stdout + run.stderr


async def _console_run(pilot: Pilot[None], tab: str, button: str, log: str, done: Callable[[str], bool]) -> str:
    """Press a console button and wait until its log pane says what ``done`` looks for."""
    app = pilot.app
    app.screen.query_one(TabbedContent).active = tab
    await pilot.pause()
    app.screen.query_one(f"#{button}", Button).press()
    await pilot.pause()
    if isinstance(app.screen, ConfirmDialog | ClientDialog):  # Revoke / Roll back confirm; Create's scopes
        _answer(app.screen, "#yes, #save")
        await _until(pilot, "the dialog to close", lambda: not isinstance(app.screen, ConfirmDialog | ClientDialog), 30)
    text = ""

    def finished() -> bool:
        nonlocal text
        text = "\n".join(str(line.text) for line in app.screen.query_one(f"#{log}", RichLog).lines)
        return done(text)

    await _until(pilot, f"{button} in the console", finished, 300)
    return text


async def test_the_console_runs_day_2_on_the_deployed_stack(
    server: tuple[FreshServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`claudegate init --config deploy.yaml`: status, clients, usage, logs, smoke test, rollback -- each run."""
    fresh, _upstream = server
    home = DEPLOYED["home"]
    # The same operator home as the wizard's run: its state_dir and known_hosts are there.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HOME", str(home / "home"))
    monkeypatch.chdir(home)
    app = make_app(home / "deploy.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, "the status", lambda: "release" in "\n".join(
            str(line.text) for line in app.screen.query_one("#status", RichLog).lines), 300)
        await fill(pilot, "#client-name", "console-made")
        created = await _console_run(pilot, "tab-clients", "keys-create", "keys", lambda t: "cgk_" in t or "failed" in t)
        key = next(w for w in created.split() if w.startswith("cgk_"))
        assert _sdk_status(fresh, key) == 200
        rotated = await _console_run(pilot, "tab-clients", "keys-rotate", "keys",
                                     lambda t: t.count("cgk_") >= 2 or t.count("failed") >= 1)
        new_key = [w for w in rotated.split() if w.startswith("cgk_")][-1]
        assert new_key != key and _sdk_status(fresh, new_key) == 200
        await _console_run(pilot, "tab-clients", "keys-revoke", "keys", lambda t: "revoked" in t or "failed" in t)
        assert _sdk_status(fresh, new_key) == 401
        usage = await _console_run(pilot, "tab-usage", "usage-show", "usage",
                                   lambda t: "console-made" in t or "failed" in t)
        assert "console-made" in usage and "failed" not in usage, usage
        logs = await _console_run(pilot, "tab-logs", "logs-show", "logs", lambda t: len(t) > 100 or "failed" in t)
        assert CANARY not in logs and "failed" not in logs[:200]
        smoke = await _console_run(pilot, "tab-actions", "smoke", "actions", lambda t: "PASS" in t or "FAIL" in t)
        assert "FAILED" not in smoke, smoke
        # One release only (the wizard's): the console says there is nothing to go back to, in words.
        back = await _console_run(pilot, "tab-actions", "rollback", "actions",
                                  lambda t: "roll back to the previous release" in t and (
                                      "failed" in t.split("roll back to the previous release")[-1]
                                      or "rollback" in t.split("roll back to the previous release")[-1].lower()))
        assert "Traceback" not in back
        await pilot.press("ctrl+q")


def _sdk_status(fresh: FreshServer, key: str) -> int:
    from tests.deploy.support import sdk_client

    time.sleep(0.5)  # the smoke test's burst drains from the per-address bucket
    client = sdk_client(fresh.ip, 443, DEPLOYED["home"] / "config" / "claudegate" / DOMAIN / "ca.pem", key)
    try:
        client.models.list()
    except anthropic.APIStatusError as exc:
        return exc.status_code
    return 200
