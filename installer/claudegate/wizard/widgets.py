"""Form widgets: one labelled input with its message beside it, built from a :class:`FieldSpec`."""

from __future__ import annotations

import asyncio
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static
from textual.widgets._select import SelectOverlay

from claudegate.wizard.form import SCREENS, FieldSpec

__all__ = ["FieldInput", "FieldSelect", "FormField", "StepBar", "TickBox", "boxes_settled", "copy_asked", "field_id", "read_value", "show_message"]


def field_id(key: str) -> str:
    """A widget id for a document key (``limits.per_ip.rate`` -> ``f-limits-per_ip-rate``)."""
    return "f-" + key.replace(".", "-")


def read_value(widget: Widget) -> Any:
    if isinstance(widget, Checkbox):
        return widget.value
    if isinstance(widget, Select):
        return widget.value if widget.value is not Select.BLANK else ""
    if isinstance(widget, Input):
        return widget.value
    raise TypeError(type(widget).__name__)


class FormField(Vertical):
    """``Label  [input]`` on one line, the problem (if any) on the next; the help shows on focus."""

    DEFAULT_CLASSES = "form-field"

    def __init__(self, spec: FieldSpec, value: Any) -> None:
        super().__init__(id="row-" + field_id(spec.key))
        self.spec = spec
        self._value = value
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        spec = self.spec
        with Horizontal(classes="field-line"):
            yield Label(spec.label + (" *" if spec.required else ""), classes="field-label")
            yield self._input()
        message = Static("", classes="field-message", id="msg-" + field_id(self.spec.key))
        # Hidden by ``display`` while there is nothing to say (CSS ``:empty`` is about child widgets, not
        # text: a rule on it hid every message, so the wizard said "fix the fields in red" with none shown).
        message.display = False
        yield message

    def _input(self) -> Widget:
        spec, value, wid = self.spec, self._value, field_id(self.spec.key)
        widget: Widget
        if spec.kind == "choice":
            widget = FieldSelect(
                [(label, key) for key, label in spec.choices], value=value, allow_blank=False, id=wid,
                compact=True,
            )
        elif spec.kind == "bool":
            widget = TickBox(spec.help.split(":")[0].split(";")[0], value=bool(value), id=wid)
            widget.compact = True
        else:
            text = ", ".join(value) if isinstance(value, list) else str(value or "")
            widget = FieldInput(value=text, placeholder=spec.hint(), id=wid, compact=True)
        widget.tooltip = spec.help
        return widget

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Focus scrolls only the box into view; a box tabbed to at the bottom of the screen had its
        # problem on the line below, out of sight. Show the whole field, message included.
        if self._shown:
            self.call_after_refresh(self.scroll_visible, animate=False)

    def show_message(self, message: str | None, *, note: bool = False) -> None:
        """Show ``message`` under the box: a problem, or (``note``) a remark that does not block Next."""
        if message == self._shown:
            return  # each update costs a layout pass: skip the ones that change nothing
        self._shown = message
        target = self.query_one(".field-message", Static)
        show_message(target, message)
        self.set_class(bool(message) and not note, "-invalid")
        self.set_class(bool(message) and note, "-note")
        if message and self.has_focus_within:
            # The box being typed in is on screen; keep its message (the line under it) on screen too.
            self.call_after_refresh(target.scroll_visible, animate=False)


async def boxes_settled(boxes: list[Input]) -> None:
    """Return once each box has taken the keys already queued for it.

    A priority key (Ctrl+N, Ctrl+S) runs the moment it arrives, while the text typed just before it (a
    burst, a paste, a fast typist in a real terminal) still waits in the boxes' queues: each queue is
    passed once, so the boxes can be read after.
    """
    for box in boxes:
        if not box.is_attached:
            continue
        passed = asyncio.Event()
        if box.call_later(passed.set):
            await passed.wait()


def show_message(target: Static, message: str | None) -> None:
    """Show ``message`` under a field (the line disappears when there is none)."""
    target.update(message or "")
    target.display = bool(message)


class FieldInput(Input):
    """A text box whose editing keys (Ctrl+A, Ctrl+K, Backspace, arrows) run in order with the typed text.

    Textual runs a focused widget's key bindings only once the key has bubbled up to the app, and by then
    the box has already inserted the characters typed after it: in a real terminal the burst
    "Ctrl+A Ctrl+K 203.0.113.10" ended with an empty box (the address typed, then erased). Run them here.
    """

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            bindings = self._bindings.key_to_bindings.get(event.key, ())
            if bindings:
                event.stop()
                event.prevent_default()
                await self.run_action(bindings[0].action)
                return
        await super()._on_key(event)


class FieldSelect(Select[str]):
    """A dropdown whose keys act in the order typed, also when they come in one burst.

    Enter opens the list and moves the focus to it, but the focus arrives only after the keys already
    queued: "Enter Down Enter" typed fast (or sent by a script) reached the closed dropdown, whose Down
    and Enter only opened it again, and the list stayed open with nothing chosen. Keys that come while
    the list is open but not yet focused are the list's: they move in it and choose, as if it had the focus.
    """

    #: The keys that open the list (Select's own binding).
    OPEN_KEYS = frozenset({"enter", "down", "up", "space"})

    async def _on_key(self, event: events.Key) -> None:
        overlay = self.query_one(SelectOverlay)
        if self.expanded and not overlay.has_focus:
            bindings = overlay._bindings.key_to_bindings.get(event.key, ())
            if bindings:
                event.stop()
                event.prevent_default()
                await overlay.run_action(bindings[0].action)
                return
        elif not self.expanded and event.key in self.OPEN_KEYS:
            # Open it now, not when the key has bubbled up to the app (after the keys typed behind it).
            event.stop()
            event.prevent_default()
            self.action_show_overlay()
            return
        await super()._on_key(event)

    def _watch_expanded(self, expanded: bool) -> None:
        # The closed list is no Tab stop: Tab right after a burst that closed it went into the list (its
        # hiding is applied at the next refresh), where the keys went nowhere anyone could see.
        for overlay in self.query(SelectOverlay):
            overlay.can_focus = expanded
        super()._watch_expanded(expanded)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Opening the list asks for its focus later: a burst that already chose and closed it is answered
        # first, and the focus then landed on the closed, hidden list (the footer said "esc Dismiss menu",
        # Tab went nowhere). A closed list gives the focus back.
        if not self.expanded:
            self.focus()


class TickBox(Checkbox):
    """A checkbox whose mark differs by shape, not only by colour (an X or nothing; NO_COLOR too)."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # Textual reads this class attribute at each render
        return "x" if self.value else " "


def copy_asked(app: App[Any], text: str, what: str) -> None:
    """Ask the terminal to copy ``text`` (OSC 52) and say so honestly: no terminal confirms it did."""
    app.copy_to_clipboard(text)
    app.notify(f"Asked the terminal to copy {what} to the clipboard. If pasting gives nothing, your terminal"
               " does not allow it: select the text on screen instead.", timeout=8)


class StepBar(Static):
    """``1 Target > 2 Upstream > ...`` with the current step highlighted; every step stays on screen.

    When the titles do not fit (80 columns), the other steps shrink to their numbers.
    """

    def __init__(self, current: int) -> None:
        super().__init__(classes="step-bar")
        self.current = current

    def render(self) -> Any:
        from rich.text import Text

        width = self.content_size.width or 80
        for short in (False, True):
            text = Text(no_wrap=True, overflow="ellipsis")
            for index, screen in enumerate(SCREENS):
                if index:
                    text.append(" › " if not short else "›", style="dim")
                full = f"{index + 1} {screen.title}"
                if index == self.current:
                    text.append(full if not short else f" {full} ", style="bold reverse")
                else:
                    label = full if not short else f" {index + 1} "
                    text.append(label, style="" if index < self.current else "dim")
            if text.cell_len <= width:
                break
        return text
