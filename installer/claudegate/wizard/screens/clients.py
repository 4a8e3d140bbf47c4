"""Clients: a table of the keys to create, and a dialog to add or edit one."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, Select, Static

from claudegate.wizard import core
from claudegate.wizard.form import CLIENT_FIELDS, REQUIRED, client_problems, problem_count
from claudegate.wizard.screens.base import StepScreen
from claudegate.wizard.widgets import FormField, boxes_settled, field_id, read_value

__all__ = ["ClientDialog", "ClientsScreen"]


def _scope(client: dict[str, Any], key: str) -> str:
    value = client.get(key)
    return str(value) if value not in (None, "") else "-"


def _expiry(client: dict[str, Any]) -> str:
    """The expiry as short as it is exact: the date alone at midnight, else date and minute."""
    import datetime

    text = _scope(client, "expires")
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if (when.hour, when.minute, when.second) == (0, 0, 0):
        return when.date().isoformat()
    return when.strftime("%Y-%m-%d %H:%M")


def _models(client: dict[str, Any]) -> str:
    """The model globs one a line: side by side they pushed Tokens/day and Expires off an 80-column screen."""
    value = client.get("models")
    entries = value if isinstance(value, list) else re.split(r"[,;\s]+", str(value or ""))
    return "\n".join(str(e) for e in entries if str(e)) or "-"


class ClientsScreen(StepScreen):
    INDEX = 5
    BINDINGS: ClassVar[list[BindingType]] = [
        *StepScreen.BINDINGS,
        Binding("a", "add", "Add"),  # short: the footer holds every key at 80 columns
        Binding("e", "edit", "Edit"),
        Binding("delete", "remove", "Remove"),
    ]

    def compose_extra(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="clients", cursor_type="row", zebra_stripes=True)
        table.tooltip = "The clients: Up/Down picks one; Enter or e edits it, Delete removes it, a adds one."
        yield table
        with Horizontal(classes="actions"):
            yield Button("Add client", id="add", compact=True,
                         tooltip="A new client: its name, scopes and limits (a).")
            yield Button("Edit", id="edit", compact=True, tooltip="Change the selected client (e, or Enter on it).")
            yield Button("Remove", id="remove", compact=True, tooltip="Remove the selected client (Delete).")
        yield Static("", id="clients-note", classes="output")

    def on_mount(self) -> None:
        table = self.query_one("#clients", DataTable)
        # Short headers: with a client's values the table fits 80 columns (Expires was cut off).
        table.add_columns("Name", "Models", "max_tok", "rpm", "tpm", "tok/day", "Expires")
        self._fill()
        super().on_mount()
        self.query_one("#add", Button).focus()

    def _fill(self) -> None:
        table = self.query_one("#clients", DataTable)
        table.clear()
        for client in self.state.clients:
            table.add_row(
                client.get("name", ""), _models(client), _scope(client, "max_tokens"),
                _scope(client, "rpm"), _scope(client, "tpm"), _scope(client, "daily_tokens"),
                _expiry(client), height=None,
            )
        note = "" if self.state.clients else "No clients yet: add one to get a key for your team (a: add)."
        self.query_one("#clients-note", Static).update(note)
        # Edit and Remove (their buttons and their keys in the footer) only when there is a client to act on:
        # with none, e and Delete were listed and did nothing.
        for button in ("#edit", "#remove"):
            self.query_one(button, Button).disabled = not self.state.clients
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("edit", "remove") and not self.state.clients:
            return False
        return super().check_action(action, parameters)

    def _selected(self) -> int | None:
        table = self.query_one("#clients", DataTable)
        if not self.state.clients or table.cursor_row is None:
            return None
        return min(table.cursor_row, len(self.state.clients) - 1)

    @on(Button.Pressed, "#add")
    def action_add(self) -> None:
        self._edit(None)

    @on(Button.Pressed, "#edit")
    def action_edit(self) -> None:
        index = self._selected()
        if index is not None:
            self._edit(index)

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_edit()

    @on(Button.Pressed, "#remove")
    def action_remove(self) -> None:
        index = self._selected()
        if index is not None:
            del self.state.clients[index]
            self._fill()
            self.revalidate()

    def _edit(self, index: int | None) -> None:
        current = dict(self.state.clients[index]) if index is not None else {}
        others = [c.get("name", "") for i, c in enumerate(self.state.clients) if i != index]

        def done(result: dict[str, Any] | None) -> None:
            if result is None:
                return
            if index is None:
                self.state.clients.append(result)
            else:
                self.state.clients[index] = result
            self._fill()
            self.revalidate()

        self.app.push_screen(ClientDialog(current, others), done)


class ClientDialog(ModalScreen[dict[str, Any] | None]):
    """One client's scopes and limits; Save is disabled until every field is valid."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Enter in a box saves too (Input.Submitted below); the footer names both.
        Binding("ctrl+s", "save_after_typing", "Save", priority=True, key_display="Enter/^s"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, client: dict[str, Any], others: list[str], *, title: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title or ("Edit client" if client else "Add client")
        self.client = client
        self.others = others
        self.problems: dict[str, str] = {}
        #: Fields typed in: an empty required box says so only once touched (or on Save), not on opening.
        self.touched: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog client-dialog"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(can_focus=False):  # no invisible Tab stop; a focused field scrolls into view
                for spec in CLIENT_FIELDS:
                    yield FormField(spec, self.client.get(spec.key, spec.default))
            yield Static("", id="client-help", classes="help")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary", compact=True,
                             tooltip="Keep this client (Enter in a box, or Ctrl+S), once no field has a problem.")
                yield Button("Cancel", id="cancel", compact=True, tooltip="Close without keeping (Escape).")
                # What a refused Save left to fix, beside the buttons (a toast covered Cancel at 80x24).
                yield Static("", id="client-summary")
        # The dialog's own keys (Save, Cancel), not those of the Clients screen behind it.
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        for spec in CLIENT_FIELDS:
            self.client.setdefault(spec.key, spec.default)
        self._check()
        # Now, not after a refresh: what is typed as soon as the dialog shows goes into the name.
        self.set_focus(self.query_one("#" + field_id("name")))

    def _check(self, *, everything: bool = False) -> dict[str, str]:
        """Check the answers and draw the problems (``everything``: also untouched empty required boxes);
        returns the problems drawn."""
        self.problems = client_problems(self.client, self.others, core.check_document)
        shown: dict[str, str] = {}
        for row in self.query(FormField):
            message = self.problems.get(row.spec.key)
            if message and message.startswith(REQUIRED) and row.spec.key not in self.touched and not everything:
                message = None
            row.show_message(message)
            if message:
                shown[row.spec.key] = message
        self.query_one("#save", Button).disabled = bool(self.problems)
        if not shown:
            self.query_one("#client-summary", Static).update("")
        return shown

    def _changed(self, widget: Any) -> None:
        spec = next((s for s in CLIENT_FIELDS if field_id(s.key) == widget.id), None)
        if spec is not None:
            self.client[spec.key] = read_value(widget)
            self.touched.add(spec.key)
            self._check()

    @on(Input.Changed)
    def _input(self, event: Input.Changed) -> None:
        self._changed(event.input)

    @on(Checkbox.Changed)
    def _checkbox(self, event: Checkbox.Changed) -> None:
        self._changed(event.checkbox)

    @on(Select.Changed)
    def _select(self, event: Select.Changed) -> None:
        self._changed(event.select)

    def on_descendant_focus(self, event: Any) -> None:
        widget = self.focused or event.widget  # the one focused now (a burst's late event is stale)
        if isinstance(widget.parent, Select):
            widget = widget.parent  # an open dropdown's list: the help of its field
        spec = next((s for s in CLIENT_FIELDS if field_id(s.key) == widget.id), None)
        self.query_one("#client-help", Static).update(spec.help if spec else str(widget.tooltip or ""))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()  # Enter in a box saves, as in any dialog

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        shown = self._check(everything=True)
        if not self.problems:
            self.dismiss({k: v for k, v in self.client.items() if v not in ("", None)})
            return
        # Save is refused: every problem is written under its field (and stays while another box is typed
        # in); go to the first.
        self.touched.update(self.problems)
        first = next((row for row in self.query(FormField) if row.spec.key in self.problems), None)
        if first is not None:
            self.set_focus(first.query_one("#" + field_id(first.spec.key)))
            first.scroll_visible()
        self.query_one("#client-summary", Static).update(f"{problem_count(shown)} to fix")

    def action_save_after_typing(self) -> None:
        """Ctrl+S: save once the keys typed before it are in their boxes (it is a priority key: typed fast
        after a name, it read the box before the name was in it, and refused the Save)."""
        self.call_later(self._read_then_save)

    async def _read_then_save(self) -> None:
        boxes = list(self.query(Input))
        await boxes_settled(boxes)
        for box in boxes:
            spec = next((s for s in CLIENT_FIELDS if field_id(s.key) == box.id), None)
            if box.is_attached and spec is not None and self.client.get(spec.key) != read_value(box):
                self._changed(box)
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
