"""Day 2: the console on a saved deploy.yaml -- status, clients, usage, logs, backup/restore, rollback, smoke test.

Every button calls the same session method as the CLI command of the same
name (through :mod:`claudegate.wizard.core`); questions the session asks
(a restore's yes, an unknown host key) come up as the app's dialogs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
    Tabs,
)

from claudegate.errors import ClaudegateError
from claudegate.wizard import core
from claudegate.wizard.screens.base import TABS_HELP
from claudegate.wizard.widgets import FieldInput, FieldSelect, show_message

if TYPE_CHECKING:
    from claudegate.config import DeployConfig
    from claudegate.wizard.app import WizardApp

__all__ = ["ConsoleScreen"]


def _field_line(label: str, input_id: str, *, tooltip: str, value: str = "", placeholder: str = "") -> Vertical:
    """A labelled text box on one line with its problem on the line under it, as on the wizard's form (the
    label reversed while the box has the focus, the tooltip on the help line)."""
    box = FieldInput(value=value, placeholder=placeholder, id=input_id, compact=True, tooltip=tooltip)
    message = Static("", classes="field-message", id=f"msg-{input_id}")
    message.display = False
    return Vertical(Horizontal(Label(label, classes="field-label"), box, classes="field-line"), message,
                    classes="form-field")


#: How one host's result of a console action is written in its log.
_RENDER: dict[str, Callable[[Any], str]] = {
    "status": lambda report: str(report.text()),
    "rollback": lambda result: str(result.plan_text(diffs=False)),
    "smoke_test": lambda report: str(report.table()),
}

_LOG_HELP = "What the last action said; arrows and PgUp/PgDn scroll it."


def _log(log_id: str, *, max_lines: int | None = None) -> RichLog:
    return RichLog(id=log_id, wrap=True, markup=False, max_lines=max_lines)


class ConsoleScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "refresh", "Refresh status"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    def __init__(self, cfg: DeployConfig) -> None:
        super().__init__(id="console")
        self.cfg = cfg

    @property
    def wizard(self) -> WizardApp:
        return cast("WizardApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(f"claudegate console · {self.cfg.domain} on {self._where()}", classes="step-bar")
        with TabbedContent(id="console-tabs"):
            with TabPane("Status", id="tab-status"):
                yield _log("status")
            with TabPane("Clients", id="tab-clients"):
                yield _field_line("Client", "client-name", placeholder="e.g. team-a",
                                  tooltip="The client to rotate or revoke (Create asks for its name and scopes).")
                yield _field_line("Rotate overlap", "overlap", value="0s",
                                  tooltip="How long the old key keeps working after Rotate: 0s (stop now), 30m,"
                                  " 24h, 7d.")
                with Horizontal(classes="actions"):
                    yield Button("List", id="keys-list", compact=True,
                                 tooltip="Every client on the host: its keys, scopes and expiry (keys list).")
                    yield Button("Create…", id="keys-create", compact=True,
                                 tooltip="A new client with its scopes and limits; its key is shown once and saved"
                                 " 0600 under keys/ in the state directory.")
                    yield Button("Rotate", id="keys-rotate", compact=True,
                                 tooltip="A new key for the client named above, shown once; the old key works"
                                 " for the overlap.")
                    yield Button("Revoke…", id="keys-revoke", variant="error", compact=True,
                                 tooltip="Refuse every key of the client named above (asked first).")
                yield _log("keys")
            with TabPane("Usage", id="tab-usage"):
                with Horizontal(classes="actions"):
                    yield Button("Last 7 days", id="usage-show", compact=True,
                                 tooltip="Tokens per client per day (usage): from the audit log on one host, "
                                 "from the durable ledger in PostgreSQL with several hosts.")
                yield _log("usage")
            with TabPane("Backup", id="tab-backup"):
                yield _field_line("Backup file", "backup-file", placeholder="e.g. gw.cgbackup",
                                  tooltip="Back up writes it (0600, never over an existing file); Restore reads it.")
                yield _field_line("Passphrase file", "passphrase-file", placeholder="optional: encrypts the backup",
                                  tooltip="A file whose first line (12+ characters) encrypts the backup, and"
                                  " decrypts it on Restore.")
                with Horizontal(classes="actions"):
                    yield Button("Back up", id="backup", compact=True,
                                 tooltip="Keystore (key hashes, scopes, usage), pepper and ACME state: what a"
                                 " deploy cannot re-create.")
                    yield Button("Restore…", id="restore", variant="warning", compact=True,
                                 tooltip="Replace this host's keystore and pepper with the backup's (asked"
                                 " first): the old client keys work here after.")
                yield _log("backup-log")
            with TabPane("Logs", id="tab-logs"):
                with Horizontal(classes="actions"):
                    yield FieldSelect([("gateway", "gateway"), ("nginx", "nginx")], value="gateway", id="service",
                                 allow_blank=False, compact=True,
                                 tooltip="Whose log: the gateway (requests, filters, keys) or nginx (the edge).")
                    yield Button("Show", id="logs-show", compact=True,
                                 tooltip="The last 200 lines of the chosen container's log.")
                yield _log("logs", max_lines=5000)
            with TabPane("Actions", id="tab-actions"):
                with Horizontal(classes="actions"):
                    yield Button("Smoke test", id="smoke", compact=True,
                                 tooltip="Real requests through the edge: TLS, a key, a refused key, a model.")
                    yield Button("Roll back…", id="rollback", variant="warning", compact=True,
                                 tooltip="Serve the previous release again (asked first).")
                yield _log("actions")
        # As on the setup screens: the focused field's (or button's) help, above the keys.
        yield Static("", id="help", classes="help")
        yield Footer(show_command_palette=False)

    def _where(self) -> str:
        """The host, or (hosts:) how many and which: every action of the console acts on all of them."""
        fleet = [t.host for t in self.cfg.fleet]
        return fleet[0] if len(fleet) == 1 else f"{len(fleet)} hosts ({', '.join(fleet)})"

    def on_mount(self) -> None:
        self.wizard.session_on(self.cfg)
        self.wizard.progress_target = self._progress
        self.action_refresh()

    def _write(self, log_id: str, text: str) -> None:
        self.query_one(f"#{log_id}", RichLog).write(text)

    def _progress(self, event: object) -> None:
        kind = getattr(event, "kind", "")
        if kind == "check":
            self._write("actions", f"{event.message}: {event.status} {event.detail}")  # type: ignore[attr-defined]
        elif kind in ("start", "finish", "fail"):
            self._write("actions", f"{event.title}: {kind}")  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="console")
    def _call(self, log_id: str, what: str, fn_name: str, *args: object) -> None:
        session = self.wizard.session
        assert session is not None
        self.app.call_from_thread(self._write, log_id, f"— {what}")
        try:
            fn = getattr(core, fn_name)
            result = fn(session, *args)
        except ClaudegateError as exc:
            text = f"failed: {exc.message}" + (f"\nfix: {exc.hint}" if exc.hint else "")
        else:
            # One host's result, or (hosts:) every host's under its own header.
            text = core.result_text(result, _RENDER.get(fn_name, str))
        self.app.call_from_thread(self._write, log_id, text)

    def action_refresh(self) -> None:
        self._call("status", "status", "status")

    def on_descendant_focus(self, event: Any) -> None:
        # The widget focused now, not the event's (focus events of a fast Tab burst arrive late).
        widget = self.focused or event.widget
        if isinstance(widget, Tabs):
            help_text = TABS_HELP
        elif isinstance(widget, RichLog):
            help_text = _LOG_HELP
        else:
            help_text = getattr(widget, "tooltip", None) or ""
        self.query_one("#help", Static).update(str(help_text))

    def _say(self, input_id: str, message: str | None) -> None:
        """``message`` under the box ``input_id`` (in the error colour), or nothing."""
        show_message(self.query_one(f"#msg-{input_id}", Static), message)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        box = event.input.id or ""
        if box == "overlap":
            self._say(box, core.overlap_problem(event.value))
        elif self.query(f"#msg-{box}"):
            self._say(box, None)  # "is required" goes once something is typed

    def _required(self, input_id: str, fix: str) -> str | None:
        """The box's text; empty, the problem is drawn under it (with ``fix``) and the box gets the focus."""
        box = self.query_one(f"#{input_id}", Input)
        text = box.value.strip()
        if text:
            return text
        self._say(input_id, f"is required: {fix}")
        box.focus()
        return None

    def _client(self, what: str) -> str | None:
        return self._required("client-name", f"type the name of the client to {what} (List shows them)")

    @on(Button.Pressed, "#keys-list")
    def _keys_list(self) -> None:
        self._call("keys", "keys list", "list_clients")

    @on(Button.Pressed, "#keys-create")
    def _keys_create(self) -> None:
        from claudegate.wizard.form import client_document
        from claudegate.wizard.screens.clients import ClientDialog

        typed = self.query_one("#client-name", Input).value.strip()

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            entry = client_document(result)
            self.query_one("#client-name", Input).value = entry["name"]
            self._call("keys", f"keys create {entry['name']} (the key is shown once)", "create_client", entry)

        # The same dialog (and checks) as the wizard's clients: scopes and limits, not an unscoped key.
        self.app.push_screen(ClientDialog({"name": typed} if typed else {}, [], title="Create client"), done)

    @on(Button.Pressed, "#keys-rotate")
    def _keys_rotate(self) -> None:
        if (name := self._client("rotate")) is not None:
            overlap = self.query_one("#overlap", Input).value.strip() or "0s"
            if (problem := core.overlap_problem(overlap)) is not None:
                self._say("overlap", problem)
                self.query_one("#overlap", Input).focus()
                return
            self._call("keys", f"keys rotate {name} --overlap {overlap} (the new key is shown once)",
                       "rotate_client", name, overlap)

    @on(Button.Pressed, "#keys-revoke")
    def _keys_revoke(self) -> None:
        if (name := self._client("revoke")) is None:
            return
        note = (f" {name} is still listed in deploy.yaml: the next deploy creates it again with a new key;"
                " remove it there too." if any(c.name == name for c in self.cfg.clients) else "")
        self._confirm(f"Revoke {name}?", f"Every key of {name} is refused from its next request on. This cannot"
                      " be undone (Create makes a new client)." + note, "Revoke",
                      lambda: self._call("keys", f"keys revoke {name}", "revoke_client", name))

    def _confirm(self, title: str, text: str, yes: str, then: Callable[[], object]) -> None:
        from claudegate.wizard.screens.dialogs import ConfirmDialog

        def answered(ok: bool | None) -> None:
            if ok:
                then()

        self.app.push_screen(ConfirmDialog(title, text, yes=yes, no="Cancel"), answered)

    @on(Button.Pressed, "#usage-show")
    def _usage(self) -> None:
        self.query_one("#usage", RichLog).clear()
        self._call("usage", "usage per client per day", "usage")

    def _backup_inputs(self, what: str) -> tuple[str, str] | None:
        fix = "the file to write, e.g. gw.cgbackup" if what == "backup" else "the file Back up wrote"
        if (path := self._required("backup-file", fix)) is None:
            return None
        return path, self.query_one("#passphrase-file", Input).value.strip()

    @on(Button.Pressed, "#backup")
    def _backup(self) -> None:
        if (inputs := self._backup_inputs("backup")) is None:
            return
        out, passphrase_file = inputs
        self._call("backup-log", f"backup to {out}", "backup", out, passphrase_file)

    @on(Button.Pressed, "#restore")
    def _restore(self) -> None:
        # No dialog of the console's own: the session asks (the app shows its question as a dialog).
        if (inputs := self._backup_inputs("restore")) is None:
            return
        source, passphrase_file = inputs
        self._call("backup-log", f"restore from {source}", "restore", source, passphrase_file)

    @on(Button.Pressed, "#logs-show")
    def _logs(self) -> None:
        service = str(self.query_one("#service", Select).value)
        self.query_one("#logs", RichLog).clear()
        self._call("logs", f"{service} logs", "logs", service)

    @on(Button.Pressed, "#smoke")
    def _smoke(self) -> None:
        self._call("actions", "smoke test", "smoke_test")

    @on(Button.Pressed, "#rollback")
    def _rollback(self) -> None:
        self._confirm("Roll back?", f"The previous release replaces the one serving on {self._where()}"
                      " (its nginx and gateway, then the smoke test; host by host).", "Roll back",
                      lambda: self._call("actions", "roll back to the previous release", "rollback"))
