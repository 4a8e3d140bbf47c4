"""Modal questions: the host key, a consent, a missing secret, a message."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from claudegate.redact import Secret
from claudegate.wizard.widgets import FieldInput

__all__ = ["ConfirmDialog", "HelpDialog", "MessageDialog", "SecretDialog", "host_key_dialog"]


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no; Escape (and the focused default) is the safe answer, no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "No"),
        Binding("left,right", "app.focus_previous", "Switch", show=False),
    ]
    # No has the focus, so Enter alone never says yes. A selector rather than a query in
    # on_mount: a dialog answered before it was mounted (keys typed ahead, a loaded CI run)
    # crashed the app there with NoMatches.
    AUTO_FOCUS = "#no"

    def __init__(self, title: str, text: str, *, yes: str = "Yes", no: str = "No", detail: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.text, self.yes, self.no, self.detail = title, text, yes, no, detail
        # The footer names Escape by the button it answers ("esc Keep it"), not a generic "No".
        self._bindings.key_to_bindings["escape"] = [Binding("escape", "answer(False)", no)]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.text, classes="dialog-text")
            if self.detail:
                yield Static(self.detail, id="detail", classes="fingerprint")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, id="yes", variant="primary", compact=True)
                yield Button(self.no, id="no", compact=True)
        # The dialog's own keys, not those of the screen behind it.
        yield Footer(show_command_palette=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def host_key_dialog(host: str, key_type: str, fingerprint: str, compare: str) -> ConfirmDialog:
    """First contact with a server: its key's fingerprint, and how to compare it on the server."""
    return ConfirmDialog(
        "Confirm the server's host key",
        f"{host} offered this {key_type} key. Trust it only if it matches what the server itself"
        f" prints for:  {compare}",
        yes="Trust this key",
        no="Do not connect",
        detail=fingerprint,
    )


class SecretDialog(ModalScreen[Secret | None]):
    """A missing secret (the Anthropic key), typed masked; never shown again."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, text: str) -> None:
        super().__init__(classes="dialog-screen")
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("The Anthropic API key is needed", classes="dialog-title")
            yield Static(self.text, classes="dialog-text")
            yield FieldInput(password=True, id="secret", compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
        yield Footer(show_command_palette=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def on_input_submitted(self) -> None:
        self._save()

    def _save(self) -> None:
        box = self.query_one("#secret", Input)
        value, box.value = box.value.strip(), ""
        self.dismiss(Secret(value) if value else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MessageDialog(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.text, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="primary", compact=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


# Fits the dialog at 80x24 with its Close button (lines of at most 72 columns, 14 lines).
HELP = """\
Tab, Shift+Tab  next / previous field (its label shows reversed)
Enter           next field; on a button, press it
Ctrl+N          next screen, once no field has a problem (each is
                written under its field)
Ctrl+B, Escape  previous screen
Ctrl+S          save a draft (saved after every change too; never
                with the Anthropic key)
Ctrl+Q          quit (asks if the key you typed would be lost)
Ctrl+P          every action of this screen, by name;  F1, ?  this help
Clients         a add, e or Enter edit, Delete remove; in the dialog
                Enter or Ctrl+S saves, Escape cancels
Review          Ctrl+O save only, Ctrl+R plan, Ctrl+N save and deploy
                (asks you to confirm the target first)
Deploy          Ctrl+C cancels at a safe point; Retry resumes
Grey text in an empty box is a hint, never a value: "empty: ..." says
what empty means, "e.g. ..." is an example.
"""


# The day-2 console's keys: none of the setup screens' (Next, Back, drafts) work there.
CONSOLE_HELP = """\
Left, Right     switch tabs (when the tab bar has the keys)
Tab, Shift+Tab  into the tab: next / previous field or button (the
                focused field's label shows reversed)
Enter           press the focused button
Ctrl+R          refresh the status
Ctrl+Q          quit;  Ctrl+P  every action by name;  F1, ?  this help
Clients         type a client's name, then Rotate or Revoke; Create
                asks for the name, scopes and limits; List shows all
Backup          the file to write (Back up) or read (Restore)
Logs            choose gateway or nginx, then Show
Every action runs on the host(s) of the deploy.yaml the console opened;
Revoke, Restore and Roll back ask first.
"""


class HelpDialog(MessageDialog):
    """F1 / ?: the keys, on every screen (the console's own in the console)."""

    def __init__(self, *, console: bool = False) -> None:
        super().__init__("Help", CONSOLE_HELP if console else HELP)
