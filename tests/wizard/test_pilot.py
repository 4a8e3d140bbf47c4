"""The wizard driven by Pilot: the reference answers give the reference YAML; bad answers block Next;
the Anthropic key is nowhere it should not be."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from textual.widgets import Button, Input

from claudegate.config import load_config
from claudegate.wizard.app import WizardApp, make_app
from claudegate.wizard.screens.clients import ClientDialog
from tests.wizard import flow
from tests.wizard.conftest import (
    choose,
    cursor_in_focused,
    fill,
    message,
    next_enabled,
    press_next,
    screen_text,
    shown_message,
)

REFERENCE = Path(__file__).with_name("reference.yaml")


def _screen_name(app: WizardApp) -> str:
    return type(app.screen).__name__


async def test_reference_answers_save_the_reference_yaml(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 6)
        assert _screen_name(wizard) == "ReviewScreen"
        await pilot.press("ctrl+o")  # save only
        await pilot.pause()
    saved = home / "deploy.yaml"
    text = saved.read_text()
    assert text == REFERENCE.read_text().replace("{home}", str(home))
    # It is a valid config, equal to the reference, and a second load gives the same model.
    cfg = load_config(saved)
    assert cfg.target.port == 2222 and cfg.limits.per_ip.burst == 80 and cfg.limits.per_ip.rate == "20r/s"
    assert [c.name for c in cfg.clients] == ["team-a"]
    key_file = home / "config" / "claudegate" / "anthropic_api_key"
    assert key_file.read_text().strip() == flow.UPSTREAM_KEY
    assert key_file.stat().st_mode & 0o777 == 0o600
    # Saving ends the wizard: the draft is gone.
    assert not (home / "draft.json").exists()


async def test_the_key_is_never_saved_in_yaml_or_draft_nor_shown_after_entry(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(120, 40)) as pilot:
        await flow.to_screen(pilot, 1)
        await flow.upstream(pilot)
        box = wizard.screen.query_one("#api-key", Input)
        assert box.password  # masked while typed
        assert flow.UPSTREAM_KEY not in wizard.export_screenshot()
        await press_next(pilot)
        for step in flow.STEPS[2:]:
            assert flow.UPSTREAM_KEY not in wizard.export_screenshot()
            await step(pilot)
            await press_next(pilot)
        assert _screen_name(wizard) == "ReviewScreen"
        assert flow.UPSTREAM_KEY not in wizard.export_screenshot()
        # Back to the key screen: the box is empty and says a key is set.
        for _ in range(5):
            await pilot.press("ctrl+b")
            await pilot.pause()
        assert _screen_name(wizard) == "UpstreamScreen"
        box = wizard.screen.query_one("#api-key", Input)
        assert box.value == ""
        assert "a key is set" in box.placeholder
        assert flow.UPSTREAM_KEY not in wizard.export_screenshot()
        await pilot.press("ctrl+s")  # save a draft here too
        await pilot.pause()
        draft = (home / "draft.json").read_text()
        assert flow.UPSTREAM_KEY not in draft and "sk-ant" not in draft
        for _ in range(5):
            await press_next(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
    assert flow.UPSTREAM_KEY not in (home / "deploy.yaml").read_text()
    for path in home.rglob("*"):
        if path.is_file() and path.name != "anthropic_api_key":
            assert flow.UPSTREAM_KEY.encode() not in path.read_bytes(), path


async def test_a_draft_resumes_without_the_key(home: Path) -> None:
    first = make_app(None, fresh=True, draft_file=home / "draft.json", save_to=home / "deploy.yaml")
    async with first.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 3)  # target, key, TLS answered
    data = json.loads((home / "draft.json").read_text())
    assert data["screen"] == 3 and data["values"]["domain"] == "gw.example.com"
    assert flow.UPSTREAM_KEY not in json.dumps(data)
    assert (home / "draft.json").stat().st_mode & 0o777 == 0o600
    again = make_app(None, draft_file=home / "draft.json", save_to=home / "deploy.yaml")
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert _screen_name(again) == "LimitsScreen"
        assert again.state.values["target.host"] == "203.0.113.10"
        assert again.state.upstream_key is None
        await pilot.press("ctrl+b")
        await pilot.press("ctrl+b")
        await pilot.pause()
        # The key must be typed again (the file does not exist yet): Next is blocked.
        assert _screen_name(again) == "UpstreamScreen"
        assert not next_enabled(pilot)


# (screen, field selector, bad value, what the message says, a good value)
BAD = [
    (0, "target.host", "https://gw.example.com", "is a URL", "gw.example.com"),
    (0, "target.host", "gw.example.com:22", "includes a port", "gw.example.com"),
    (0, "target.port", "22a", "not a whole number", "22"),
    (0, "target.port", "70000", "from 1 to 65535", "22"),
    (0, "target.user", "Root User", "not a Unix user name", "deploy"),
    (2, "domain", "10.0.0.1", "is an IP address", "gw.example.com"),
    (2, "domain", "gw_example.com", "not a valid DNS name", "gw.example.com"),
    (2, "tls.email", "ops-at-example", "not an email address", "ops@example.com"),
    (3, "limits.per_ip.rate", "20 per second", "not a rate", "20r/s"),
    (3, "limits.per_ip.burst", "-5", "from 0 to 100000", "40"),
    (3, "limits.connections_per_ip", "0", "", "32"),
    (3, "limits.max_body_size", "lots", "", "32m"),
    (3, "limits.timeouts.upstream_read", "ten", "not a whole number", "600"),
    (4, "allowlist", "203.0.113.1/24", "host bits set", "203.0.113.0/24"),
    (4, "allowlist", "10.0.0.0/8, nonsense", "entry 2", "10.0.0.0/8"),
    (4, "trusted_proxies", "0.0.0.0/0", "too broad", "198.51.100.7/32"),
]


@pytest.mark.parametrize("screen", sorted({row[0] for row in BAD}))
async def test_each_bad_answer_blocks_next_with_its_message(wizard: WizardApp, screen: int) -> None:
    from claudegate.wizard.widgets import field_id

    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, screen)
        await flow.STEPS[screen](pilot)  # the reference answers, then one bad one at a time
        assert next_enabled(pilot), wizard.screen.problems  # type: ignore[attr-defined]
        for _, key, bad, says, good in (row for row in BAD if row[0] == screen):
            await fill(pilot, "#" + field_id(key), bad)
            assert not next_enabled(pilot), (key, bad)
            shown = shown_message(pilot, key)  # drawn under the field, on the first visit of the screen
            assert shown and " ".join(says.split()) in shown, (key, bad, shown)
            before = type(wizard.screen)
            await press_next(pilot)  # the key binding is blocked too
            assert type(wizard.screen) is before
            await fill(pilot, "#" + field_id(key), good)
            assert shown_message(pilot, key) == "", (key, good)
            assert next_enabled(pilot), wizard.screen.problems  # type: ignore[attr-defined]


async def test_tls_files_needs_both_files(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await fill(pilot, "#f-domain", "gw.example.com")
        await choose(pilot, "#f-tls-mode", "files")
        assert not next_enabled(pilot)
        await fill(pilot, "#f-tls-cert_file", "/etc/ssl/gw/fullchain.pem")
        assert not next_enabled(pilot)
        await fill(pilot, "#f-tls-key_file", "/etc/ssl/gw/privkey.pem")
        assert next_enabled(pilot)


async def test_upstream_key_with_spaces_is_refused(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        await fill(pilot, "#api-key", "sk-ant-api03 abc")
        assert not next_enabled(pilot)
        assert "spaces" in str(wizard.screen.query_one("#msg-api-key").render())


@pytest.mark.parametrize(
    ("pasted", "says"),
    [
        ("ANTHROPIC_API_KEY=sk-ant-api03-ENVLINE-0123456789", "line from an environment file"),
        ("hello", "start with sk-ant-"),
        ("sk-ant-api03-quoted'", "characters an Anthropic API key does not have"),
    ],
)
async def test_a_pasted_key_that_is_not_a_key_is_shown_under_the_box(
    wizard: WizardApp, pasted: str, says: str
) -> None:
    """What a hurried person copies (a .env line, a stray word) is refused on screen, never echoed."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        await fill(pilot, "#api-key", pasted)
        assert not next_enabled(pilot)
        drawn = screen_text(pilot)
        assert says in " ".join(drawn.split()), drawn
        assert "ENVLINE" not in drawn and "quoted" not in drawn  # the value itself is never drawn


BAD_CLIENT = [
    ("name", "team a", "not a client name"),
    ("models", "claude sonnet", "entry 1: 'claude' matches no known model"),  # a space separates entries
    ("endpoints", "v1/messages", "starting with /"),
    ("max_tokens", "0", "positive"),
    ("rpm", "sixty", "not a whole number"),
    ("tpm", "-1", "positive"),
    ("expires", "next week", "not a date"),
]


async def test_each_bad_client_answer_blocks_save(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(wizard.screen, ClientDialog)
        await fill(pilot, "#f-name", "team-b")
        for key, bad, says in BAD_CLIENT:
            before = wizard.screen.query_one(f"#f-{key}", Input).value
            await fill(pilot, f"#f-{key}", bad)
            assert wizard.screen.query_one("#save", Button).disabled, key
            assert says in shown_message(pilot, key), (key, shown_message(pilot, key))
            await pilot.press("ctrl+s")
            assert isinstance(wizard.screen, ClientDialog)  # not saved
            await fill(pilot, f"#f-{key}", before)
            assert not wizard.screen.query_one("#save", Button).disabled, wizard.screen.problems  # type: ignore[attr-defined]


async def test_client_names_are_unique(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await flow.clients(pilot)
        await pilot.press("a")
        await pilot.pause()
        await fill(pilot, "#f-name", "team-a")
        assert "another client" in message(pilot, "name")


async def test_generate_deploy_key(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-ssh_key", str(home / "deploy_key"))
        await pilot.click("#generate")
        await pilot.pause()
        line = (home / "deploy_key.pub").read_text().strip()
        assert line.startswith("ssh-ed25519 ")
        assert line in str(wizard.screen.query_one("#pubkey").render()).replace("\n", "")
        assert (home / "deploy_key").stat().st_mode & 0o777 == 0o600


def test_no_color_is_honoured(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(None, fresh=True, draft_file=home / "d.json")
    assert app.no_color
    os.environ.pop("NO_COLOR", None)


def test_reference_yaml_is_a_valid_config(tmp_path: Path) -> None:
    text = REFERENCE.read_text().replace("{home}", str(tmp_path))
    (tmp_path / "deploy.yaml").write_text(text)
    load_config(tmp_path / "deploy.yaml")
    assert "sk-ant" not in text
    assert yaml.safe_load(text)["tls"]["acme_directory"].startswith("https://acme-staging")


# --- what the operator sees and where the keys go ------------------------------------------------


async def test_next_on_an_untouched_screen_draws_every_problem_under_its_field(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert shown_message(pilot, "target.host") == ""  # nothing typed yet: no scolding
        await press_next(pilot)
        assert _screen_name(wizard) == "TargetScreen"
        assert "is required" in shown_message(pilot, "target.host")
        assert wizard.screen.focused is wizard.screen.query_one("#f-target-host")  # taken to the field
        assert "to fix" in screen_text(pilot)


async def test_the_key_box_has_the_keys_so_a_pasted_key_is_masked(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        for _ in range(3):
            await pilot.pause()
        key_box = wizard.screen.query_one("#api-key", Input)
        assert wizard.screen.focused is key_box
        assert cursor_in_focused(pilot), (wizard.cursor_position, key_box.region)
        key_file = wizard.screen.query_one("#f-upstream-api_key_file", Input).value
        await pilot.press(*flow.UPSTREAM_KEY)  # typed (or pasted) at once, no click first
        await pilot.pause()
        assert key_box.value == flow.UPSTREAM_KEY and key_box.password
        assert wizard.screen.query_one("#f-upstream-api_key_file", Input).value == key_file
        assert flow.UPSTREAM_KEY not in screen_text(pilot)
        assert "•" * 10 in screen_text(pilot) or "*" * 10 in screen_text(pilot)


async def test_typing_right_after_tab_lands_in_the_new_field(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("tab")  # from Deploy to, to Host
        await pilot.press(*"gw.example.com", "tab", *"2222")
        await pilot.pause()
        assert wizard.screen.query_one("#f-target-host", Input).value == "gw.example.com"
        # The port box held "22": focusing selects it, so what is typed replaces it.
        assert wizard.screen.query_one("#f-target-port", Input).value == "2222"
        assert wizard.screen.focused is wizard.screen.query_one("#f-target-port")
        assert cursor_in_focused(pilot)


async def test_escape_goes_back_and_f1_shows_the_keys(wizard: WizardApp) -> None:
    from claudegate.wizard.screens.dialogs import HelpDialog

    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await pilot.press("escape")
        await pilot.pause()
        assert _screen_name(wizard) == "UpstreamScreen"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(wizard.screen, HelpDialog)
        assert "Ctrl+N" in screen_text(pilot) and "Escape" in screen_text(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert _screen_name(wizard) == "UpstreamScreen"


async def test_checkboxes_look_different_checked_and_unchecked(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        box = wizard.screen.query_one("#f-tls-staging")
        region = box.region

        def line() -> str:
            return screen_text(pilot).splitlines()[region.y][region.x : region.x + 3]

        off = line()
        await pilot.click("#f-tls-staging")
        await pilot.pause()
        on = line()
        assert off != on and "X" in on.upper() and "X" not in off.upper(), (off, on)


async def test_the_client_dialog_says_its_own_keys_and_enter_saves(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        assert wizard.screen.focused is wizard.screen.query_one("#add")
        await pilot.press("enter")  # Enter on a button presses it (only in a text box does it move on)
        await pilot.pause()
        footer = screen_text(pilot).splitlines()[-1]
        assert "Save" in footer and "Cancel" in footer and "Add client" not in footer, footer
        await pilot.press("enter")  # no name yet: refused, and said under the field
        await pilot.pause()
        assert isinstance(wizard.screen, ClientDialog)
        assert "is required" in shown_message(pilot, "name")
        await pilot.press(*"team-b", "enter")
        await pilot.pause()
        assert not isinstance(wizard.screen, ClientDialog)
        assert [c["name"] for c in wizard.state.clients] == ["team-b"]


async def test_quit_keeps_the_answers_and_asks_only_for_the_typed_key(wizard: WizardApp, home: Path) -> None:
    from claudegate.wizard.screens.dialogs import ConfirmDialog

    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        await fill(pilot, "#api-key", flow.UPSTREAM_KEY)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(wizard.screen, ConfirmDialog) and "Anthropic key" in screen_text(pilot)
        await pilot.press("escape")  # stay
        await pilot.pause()
        assert _screen_name(wizard) == "UpstreamScreen"
    # Without a typed key Ctrl+Q quits at once, and the draft already holds the last answer typed.
    again = make_app(None, fresh=True, draft_file=home / "draft2.json", save_to=home / "deploy.yaml")
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "gw.example.com")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert again.return_code == 0
    assert json.loads((home / "draft2.json").read_text())["values"]["target.host"] == "gw.example.com"


async def test_review_asks_before_deploying_and_the_footer_says_so(wizard: WizardApp) -> None:
    from claudegate.wizard.screens.dialogs import ConfirmDialog

    async with wizard.run_test(size=(120, 40)) as pilot:
        await flow.to_screen(pilot, 6)
        footer = screen_text(pilot).splitlines()[-1]
        assert "Save and deploy" in footer and "Next" not in footer, footer
        await press_next(pilot)
        assert isinstance(wizard.screen, ConfirmDialog) and wizard.screen.yes == "Deploy now"
        assert "203.0.113.10" in screen_text(pilot)
        assert wizard.screen.focused is wizard.screen.query_one("#no")  # Enter alone does not deploy
        await pilot.press("enter")
        await pilot.pause()
        assert _screen_name(wizard) == "ReviewScreen"
        assert wizard.session is None  # nothing connected, nothing deployed


async def test_save_as_a_directory_is_said_under_the_field(wizard: WizardApp, home: Path) -> None:
    (home / "configs").mkdir()
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 6)
        await fill(pilot, "#f-save_path", str(home / "configs"))
        assert "is a directory" in shown_message(pilot, "save_path")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert _screen_name(wizard) == "ReviewScreen"  # no crash, nothing saved
    assert sorted(p.name for p in (home / "configs").iterdir()) == []
    assert not list(home.glob(".*.tmp")) and not (home / "deploy.yaml").exists()


async def test_saving_over_an_existing_file_asks(home: Path) -> None:
    from claudegate.wizard.screens.dialogs import ConfirmDialog

    existing = home / "deploy.yaml"
    existing.write_text("# the example I edited by hand\n")  # not a config: init cannot load it
    app = make_app(None, fresh=True, draft_file=home / "draft.json", save_to=existing)
    async with app.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 6)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog) and "already exists" in screen_text(pilot)
        await pilot.press("escape")  # keep it
        await pilot.pause()
    assert existing.read_text() == "# the example I edited by hand\n"


async def test_init_on_an_existing_deploy_yaml_edits_it(home: Path) -> None:
    saved = home / "deploy.yaml"
    saved.write_text(REFERENCE.read_text().replace("{home}", str(home)))
    app = make_app(None, draft_file=home / "draft.json", save_to=saved)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#f-target-host", Input).value == "203.0.113.10"
        assert app.screen.query_one("#f-target-port", Input).value == "2222"
        assert [c["name"] for c in app.state.clients] == ["team-a"]
        assert "Loaded the answers" in "".join(str(n.message) for n in app._notifications)


def test_an_error_in_the_wizard_is_a_non_zero_exit(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`claudegate init` must not exit 0 after the wizard stopped on an error."""
    from textual.app import App

    import claudegate.wizard as wizard_package

    def boom(self: WizardApp) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(WizardApp, "on_mount", boom)
    monkeypatch.setattr(WizardApp, "run", lambda self: App.run(self, headless=True, size=(80, 24)))
    assert wizard_package.run(None, fresh=True, save_to=home / "deploy.yaml") == 1


async def test_the_console_asks_before_revoke_and_rollback_and_creates_with_scopes(home: Path) -> None:
    """No server needed: nothing may run before the operator confirms (the target refuses connections)."""
    from textual.widgets import RichLog, TabbedContent

    from claudegate.wizard.screens.dialogs import ConfirmDialog
    from tests.support.backup_files import write_backup_file

    saved = home / "deploy.yaml"
    saved.write_text("target: {host: 127.0.0.1, port: 1, user: deploy}\ndomain: gw.example.com\n"
                     "tls: {mode: internal-ca}\nupstream: {api_key_file: key}\n")
    app = make_app(saved, draft_file=home / "draft.json")

    def log(name: str) -> str:
        return "\n".join(str(line.text) for line in app.screen.query_one(f"#{name}", RichLog).lines)

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#client-name", "team-a")
        for button, title in (("keys-revoke", "Revoke team-a?"), ("rollback", "Roll back?")):
            app.screen.query_one(f"#{button}", Button).press()
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog) and title in screen_text(pilot)
            assert app.screen.focused is app.screen.query_one("#no")
            await pilot.press("escape")
            await pilot.pause()
            assert "revoke" not in log("keys") and "roll back" not in log("actions")
        app.screen.query_one("#keys-create", Button).press()
        await pilot.pause()
        assert isinstance(app.screen, ClientDialog)
        assert app.screen.query_one("#f-name", Input).value == "team-a"
        for scope in ("#f-models", "#f-rpm", "#f-tpm", "#f-daily_tokens", "#f-max_tokens", "#f-expires"):
            assert app.screen.query(scope), scope
        await pilot.press("escape")
        await pilot.pause()
        # Restore: the console asks nothing itself; the session's question comes up as the app's dialog,
        # before any connection, and a no leaves the host alone.
        app.screen.query_one(TabbedContent).active = "tab-backup"
        await pilot.pause()
        await fill(pilot, "#backup-file", str(write_backup_file(home / "gw.cgbackup", None)))
        app.screen.query_one("#restore", Button).press()
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, ConfirmDialog):
                break
        assert isinstance(app.screen, ConfirmDialog), type(app.screen)
        await pilot.pause()
        asked = app.screen.text
        assert "replace the keystore and pepper" in asked and "old.example.com" in asked, asked
        assert app.screen.focused is app.screen.query_one("#no")
        await pilot.press("escape")
        for _ in range(100):
            await pilot.pause(0.05)
            if "nothing was restored" in log("backup-log"):
                break
        assert "answered no; nothing was restored" in log("backup-log"), log("backup-log")
