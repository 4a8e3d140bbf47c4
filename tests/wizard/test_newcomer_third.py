"""Defects of the third newcomer pass at 80x24 (issue 14), each checked on the drawn screen: a box's hint
that means what it says, one message for one mistake, focus that stays where the operator put it, a
problem that comes into view with its field, a directory named as a file, dialog keys named by their
buttons."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import Button, Input, Static

from claudegate.wizard import core
from claudegate.wizard.app import WizardApp
from claudegate.wizard.form import document
from claudegate.wizard.screens.base import StepScreen
from claudegate.wizard.screens.clients import ClientDialog
from claudegate.wizard.screens.dialogs import ConfirmDialog
from tests.wizard import flow
from tests.wizard.conftest import fill, next_enabled, press_next, screen_text, shown_message

REFERENCE = Path(__file__).with_name("reference.yaml")


async def test_an_empty_burst_beside_a_changed_rate_means_its_hint(wizard: WizardApp) -> None:
    """The hint says "empty: 40": the box left empty is 40, not "is required; add burst: under ...:"."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 3)
        await fill(pilot, "#f-limits-per_ip-rate", "30r/s")
        await fill(pilot, "#f-limits-per_ip-burst", "")
        row = next(line for line in screen_text(pilot).splitlines() if "Burst per IP" in line)
        assert "empty: 40" in row, row
        assert shown_message(pilot, "limits.per_ip.burst") == ""
        assert "is required" not in screen_text(pilot)
        assert next_enabled(pilot)
        assert document(wizard.state)["limits"]["per_ip"] == {"rate": "30r/s", "burst": 40}


async def test_a_box_that_is_not_a_number_says_only_that(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 3)
        await fill(pilot, "#f-limits-per_key-burst", "lots")
        shown = shown_message(pilot, "limits.per_key.burst")
        assert shown.startswith("'lots' is not a whole number"), shown
        assert "is required" not in shown and "limits.per_key" not in shown, shown
        assert str(wizard.screen.query_one("#summary", Static).render()) == "1 to fix"


async def test_test_connection_keeps_the_focus(wizard: WizardApp) -> None:
    """A second Enter on Test connection (the impatient one) must not land on Generate key."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "gw.invalid")  # never resolves (RFC 6761)
        wizard.screen.query_one("#test", Button).focus()
        await pilot.pause()
        await pilot.press("enter")
        deadline = time.monotonic() + 30
        while "Failed" not in str(wizard.screen.query_one("#report", Static).render()):
            assert time.monotonic() < deadline, screen_text(pilot)
            await pilot.pause(0.1)
        assert wizard.screen.focused is not None and wizard.screen.focused.id == "test"
        help_line = next(line for line in screen_text(pilot).splitlines() if "Connect (SSH" in line)
        assert "ed25519" not in help_line
        assert not (Path.home() / ".ssh" / "claudegate_deploy").exists()


async def test_generate_again_shows_the_existing_key_and_how_to_install_it(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "203.0.113.10")
        await fill(pilot, "#f-target-user", "deploy")
        await fill(pilot, "#f-target-ssh_key", "deploy_key")  # in the current directory, home
        await pilot.click("#generate")
        await pilot.pause()
        line = (home / "deploy_key.pub").read_text().strip()
        command = "ssh-copy-id -i deploy_key.pub deploy@203.0.113.10"
        assert command in screen_text(pilot)
        await pilot.pause(0.3)  # a Button ignores a click during its 0.2 s press effect
        await pilot.click("#generate")  # the key exists now: its line again, not an error
        await pilot.pause()
        text = screen_text(pilot)
        assert "exists already" in text and command in text, text
        assert "choose another file name" not in text
        assert (home / "deploy_key.pub").read_text().strip() == line  # not replaced
        assert line in str(wizard.screen.query_one("#pubkey", Static).render()).replace("\n", "")


async def test_a_directory_as_the_key_file_is_said_under_it(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        folder = home / "keys"
        folder.mkdir()
        await fill(pilot, "#f-upstream-api_key_file", str(folder))
        assert "is a directory, not a file" in shown_message(pilot, "upstream.api_key_file")
        assert not next_enabled(pilot)
        # Nor does a directory count as a key file that already holds a key.
        assert not core.key_on_file(str(folder))
        await fill(pilot, "#f-upstream-api_key_file", str(folder / "anthropic_api_key"))
        assert shown_message(pilot, "upstream.api_key_file") == ""


async def test_a_directory_as_the_ssh_key_is_said_under_it(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "203.0.113.10")
        await fill(pilot, "#f-target-ssh_key", "~")
        assert "is a directory, not a file" in shown_message(pilot, "target.ssh_key")
        await press_next(pilot)
        assert type(wizard.screen).__name__ == "TargetScreen"


async def test_tabbing_to_a_field_brings_its_problem_into_view(wizard: WizardApp) -> None:
    """In the client dialog at 80x24, Tab to a field at the bottom edge showed the box but not the line
    under it that says what is wrong."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(wizard.screen, ClientDialog)
        await fill(pilot, "#f-endpoints", "v1/messages")
        await fill(pilot, "#f-models", "claude-[sonnet, gpt-4")  # a long message above Endpoints
        await fill(pilot, "#f-name", "team a!")  # back to the top
        await pilot.press("tab", "tab")
        await pilot.pause()
        assert wizard.screen.focused is not None and wizard.screen.focused.id == "f-endpoints"
        assert "is not a URL path or glob" in shown_message(pilot, "endpoints")


async def test_a_question_names_escape_by_its_safe_button(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 6)
        await press_next(pilot)  # Save and deploy… asks first
        assert isinstance(wizard.screen, ConfirmDialog)
        footer = screen_text(pilot).splitlines()[-1]
        assert "esc Not yet" in footer and "esc No" not in footer.replace("esc Not yet", ""), footer
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(wizard.screen, ConfirmDialog)


async def test_the_help_line_is_the_focused_widgets_after_a_burst_of_tabs(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "203.0.113.10")
        await pilot.press("tab", "tab", "tab", "tab", "tab")  # port, user, key, image, Generate key
        await pilot.pause()
        focused = wizard.screen.focused
        assert focused is not None and focused.id == "generate"
        assert str(wizard.screen.query_one("#help", Static).render()).startswith("Make a new ed25519 key pair")
        assert isinstance(wizard.screen.query_one("#f-images-base_image", Input), Input)


async def test_a_missing_ssh_key_is_a_note_under_it_that_generate_answers(wizard: WizardApp, home: Path) -> None:
    """A typo in the key path used to surface only at the deploy; the file may also come later (Generate),
    so it is said under the box without blocking Next."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "203.0.113.10")
        await fill(pilot, "#f-target-ssh_key", "deploy_key")
        shown = shown_message(pilot, "target.ssh_key")
        assert "deploy_key does not exist yet; Generate key makes it there" in shown, shown
        assert next_enabled(pilot)
        assert str(wizard.screen.query_one("#summary", Static).render()) == ""  # a note is not a problem
        await pilot.click("#generate")
        await pilot.pause()
        assert shown_message(pilot, "target.ssh_key") == ""


async def test_missing_certificate_files_are_noted_and_a_directory_refused(wizard: WizardApp, home: Path) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await fill(pilot, "#f-domain", "gw.example.com")
        wizard.screen.query_one("#f-tls-mode").value = "files"  # type: ignore[attr-defined]
        await pilot.pause()
        await fill(pilot, "#f-tls-cert_file", "fullchain.pem")
        await fill(pilot, "#f-tls-key_file", str(home))
        assert "fullchain.pem does not exist yet" in shown_message(pilot, "tls.cert_file")
        assert "is a directory, not a file" in shown_message(pilot, "tls.key_file")
        assert not next_enabled(pilot)
        await fill(pilot, "#f-tls-key_file", "privkey.pem")
        assert "privkey.pem does not exist yet" in shown_message(pilot, "tls.key_file")
        assert next_enabled(pilot)


async def test_a_number_box_gives_an_example_that_fits_it(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await pilot.press("a")
        await pilot.pause()
        await fill(pilot, "#f-daily_tokens", "1e6")
        shown = shown_message(pilot, "daily_tokens")
        assert shown.endswith("e.g. 1000000"), shown  # not "e.g. 60" tokens a day


async def test_the_command_palette_lists_each_action_once_with_all_its_keys(wizard: WizardApp) -> None:
    from textual.command import CommandPalette

    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        assert isinstance(wizard.screen, CommandPalette)
        rows = [row.strip() for row in screen_text(pilot).splitlines()]
        assert rows.count("Back") == 1, rows  # Ctrl+B and Escape are one action, said once
        assert "key: ^b, esc" in rows, rows


async def test_a_key_file_others_may_read_is_said_before_the_deploy_refuses_it(wizard: WizardApp, home: Path) -> None:
    """`echo sk-ant-... > anthropic_api_key` makes it 0644: the deploy refuses it, so the wizard says so
    under the box (a key pasted above writes the file again, 0600, and the problem goes)."""
    key_file = home / "config" / "claudegate" / "anthropic_api_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(flow.UPSTREAM_KEY + "\n")
    key_file.chmod(0o644)
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        shown = shown_message(pilot, "upstream.api_key_file")
        assert "mode 0644, readable by everyone" in shown and "chmod 600" in shown, shown
        assert not next_enabled(pilot)
        await fill(pilot, "#api-key", flow.UPSTREAM_KEY)
        assert shown_message(pilot, "upstream.api_key_file") == ""
        assert next_enabled(pilot)


async def test_the_tls_screen_speaks_of_its_own_choices_not_yaml_keys(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await fill(pilot, "#f-domain", "localhost")  # ACME cannot certify it
        shown = shown_message(pilot, "domain")
        assert "or Certificate from: Internal CA to try it out" in shown, shown
        assert "tls.mode" not in screen_text(pilot)


async def test_opening_the_wizard_writes_no_draft_until_an_answer_is_typed(wizard: WizardApp, home: Path) -> None:
    """Every filled box announces its value when it mounts; counted as answers, they wrote a draft (and
    marked the boxes typed in) before any key was pressed."""
    import json

    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause(0.3)
        assert not (home / "draft.json").exists()
        assert isinstance(wizard.screen, StepScreen) and wizard.screen.touched == set()
        await fill(pilot, "#f-target-host", "203.0.113.10")
        draft = json.loads((home / "draft.json").read_text())
        assert draft["values"]["target.host"] == "203.0.113.10"
        assert draft["for"] == str(home / "deploy.yaml")


async def test_init_out_a_file_loads_it_though_a_draft_for_another_file_is_saved(home: Path) -> None:
    from claudegate.wizard.app import make_app
    from claudegate.wizard.draft import save_draft
    from claudegate.wizard.form import WizardState

    other = WizardState(values={"target.host": "other.example.com"}, draft_for=str(home / "other" / "deploy.yaml"))
    save_draft(other, home / "draft.json")
    saved = home / "deploy.yaml"
    saved.write_text(REFERENCE.read_text().replace("{home}", str(home)))
    app = make_app(None, draft_file=home / "draft.json", save_to=saved)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#f-target-host", Input).value == "203.0.113.10"
        said = " ".join(str(n.message) for n in app._notifications)
        assert "Loaded the answers" in said and f"The unfinished draft is for {home / 'other'}" in said, said
        assert "Resumed" not in said


async def test_a_draft_without_answers_is_not_resumed_over_an_existing_file(home: Path) -> None:
    from claudegate.wizard.app import make_app
    from claudegate.wizard.draft import save_draft
    from claudegate.wizard.form import WizardState

    save_draft(WizardState(values={"target.mode": "server", "target.port": "22", "target.host": ""}),
               home / "draft.json")
    saved = home / "deploy.yaml"
    saved.write_text(REFERENCE.read_text().replace("{home}", str(home)))
    app = make_app(None, draft_file=home / "draft.json", save_to=saved)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#f-target-host", Input).value == "203.0.113.10"


async def test_going_back_to_target_keeps_the_confirmed_host_key(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 1)
        wizard.state.host_key_fingerprint = "SHA256:" + "A" * 43  # as the host key dialog leaves it
        await pilot.press("escape")
        await pilot.pause()
        await pilot.pause(0.2)
        assert type(wizard.screen).__name__ == "TargetScreen"
        assert wizard.state.host_key_fingerprint == "SHA256:" + "A" * 43
        await fill(pilot, "#f-target-port", "22")  # another server: the confirmation no longer holds
        assert wizard.state.host_key_fingerprint is None


async def test_what_next_marked_stays_marked_while_another_box_is_typed_in(wizard: WizardApp) -> None:
    """Next draws "is required" under every empty box; typing in the first one hid it again under the
    others, while the count still named them."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 2)
        await fill(pilot, "#f-domain", "gw.example.com")
        wizard.screen.query_one("#f-tls-mode").value = "files"  # type: ignore[attr-defined]
        await pilot.pause()
        await press_next(pilot)
        assert shown_message(pilot, "tls.key_file") == "is required"
        await fill(pilot, "#f-tls-cert_file", "fullchain.pem")
        assert shown_message(pilot, "tls.key_file") == "is required"


async def test_what_save_marked_in_the_client_dialog_stays_marked(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("ctrl+s")  # refused: the empty name is marked
        await pilot.pause()
        assert "is required" in shown_message(pilot, "name")
        await fill(pilot, "#f-rpm", "60")
        assert "is required" in shown_message(pilot, "name")


async def test_ssh_forms_of_the_host_say_which_box_takes_the_rest(wizard: WizardApp) -> None:
    async with wizard.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await fill(pilot, "#f-target-host", "root@203.0.113.10")
        shown = shown_message(pilot, "target.host")
        assert shown == "'root@203.0.113.10' includes a user name; write only 203.0.113.10 and put root in the" \
                        " SSH user box", shown
        await fill(pilot, "#f-target-host", "203.0.113.10:2222")
        shown = shown_message(pilot, "target.host")
        assert "write only 203.0.113.10 and put the port in the SSH port box" in shown, shown
        assert "target." not in screen_text(pilot)


async def test_the_review_shows_the_files_comments_unbroken_at_80_columns(wizard: WizardApp) -> None:
    """A comment wrapped by the view showed its tail as a line of YAML ("examples/remote.yaml.")."""
    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 6)
        rows = [row.strip(" ▊▎▁▂▃▄▅▆▇█") for row in screen_text(pilot).splitlines()]
        header = core.YAML_HEADER.format(path=wizard.screen.save_path).splitlines()  # type: ignore[attr-defined]
        for line in header[2:]:  # after the Redeploy line, whose path is as long as it is
            assert line in rows, (line, rows)
        assert "examples/" not in screen_text(pilot)


async def test_the_clients_table_fits_80_columns(wizard: WizardApp) -> None:
    """Two model globs side by side pushed Tokens/day and Expires off the screen."""
    from claudegate.wizard.screens.clients import ClientsScreen

    async with wizard.run_test(size=(80, 24)) as pilot:
        await flow.to_screen(pilot, 5)
        screen = wizard.screen
        assert isinstance(screen, ClientsScreen)
        wizard.state.clients.extend([
            {**flow.REFERENCE_CLIENT, "tpm": "200000"},
            {"name": "batch-jobs", "models": "claude-haiku-*", "expires": "2027-06-30T12:30:00Z"},
        ])
        screen._fill()
        await pilot.pause()
        rows = screen_text(pilot).splitlines()
        header = next(row for row in rows if "Name" in row and "Models" in row)
        assert header.split() == ["Name", "Models", "max_tok", "rpm", "tpm", "tok/day", "Expires"], header
        team_a = next(row for row in rows if "team-a" in row)
        assert team_a.split() == ["team-a", "claude-sonnet-*", "4096", "60", "200000", "1000000", "2027-06-30"]
        assert any(row.split() == ["claude-haiku-*"] for row in rows), rows  # its second glob, under the first
        batch = next(row for row in rows if "batch-jobs" in row)
        assert batch.split()[-2:] == ["2027-06-30", "12:30"], batch
