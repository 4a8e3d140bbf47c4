"""What every wizard step shares: the step bar, a form that checks itself as you type, Back/Next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Input, Select, Static, Tabs

from claudegate.wizard import core
from claudegate.wizard.form import (
    MISSING_FILE_NOTES,
    REQUIRED,
    SCREENS,
    FieldSpec,
    WizardState,
    field_problems,
    problem_count,
)
from claudegate.wizard.widgets import FormField, StepBar, boxes_settled, field_id, read_value

if TYPE_CHECKING:
    from claudegate.wizard.app import WizardApp

__all__ = ["TABS_HELP", "StepScreen"]

#: The help line of a tab bar (Review's, the result's, the console's).
TABS_HELP = "Left and Right switch tabs; Tab goes into the tab."


class StepScreen(Screen[None]):
    """One wizard step. Subclasses set ``INDEX`` and may add widgets with :meth:`compose_extra`."""

    INDEX = 0
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "after_typing('next')", "Next", priority=True),
        Binding("ctrl+b", "after_typing('back')", "Back", priority=True),
        # Not a priority binding: an open Select list closes on Escape first.
        Binding("escape", "back", "Back", show=False),
        Binding("ctrl+s", "save_draft", "Save draft"),
        # Priority for the same reason as Tab (see the app): Enter in a box moves on at once.
        Binding("enter", "enter_key", "Next field", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__(id=f"step-{SCREENS[self.INDEX].name}")
        self.spec = SCREENS[self.INDEX]
        #: Fields the operator has typed in: "is required" shows only for these.
        self.touched: set[str] = set()
        self.problems: dict[str, str] = {}
        #: True once the first check ran (it runs just after the first paint).
        self.checked = False

    @property
    def wizard(self) -> WizardApp:
        return cast("WizardApp", self.app)

    @property
    def state(self) -> WizardState:
        return self.wizard.state

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StepBar(self.INDEX)
        yield Static(self.spec.intro, classes="intro")
        # Not a Tab stop of its own: focused, it showed nothing (no lit box, no help) and took a Tab. A field
        # that gets the focus scrolls itself (and its problem) into view.
        with VerticalScroll(id="body", can_focus=False):
            yield from self.compose_first()
            for spec in self.spec.fields:
                row = FormField(spec, self.state.get(spec))
                row.display = spec.shown(self.state.values)
                yield row
            yield from self.compose_extra()
        yield Static("", id="help", classes="help")
        with Horizontal(id="nav"):
            yield Button("Back", id="back", compact=True, disabled=self.INDEX == 0,
                         tooltip="The previous screen (Ctrl+B or Escape); your answers stay.")
            yield Static("", id="summary")
            yield from self.compose_nav()
            # Disabled until the first check has run (just after the first paint).
            yield Button(self.next_label, id="next", variant="primary", compact=True, disabled=True,
                         tooltip=self.next_help)
        yield Footer(show_command_palette=False)

    next_label = "Next"
    next_help = "The next screen (Ctrl+N), once no field has a problem."

    def compose_first(self) -> ComposeResult:
        """Widgets above the screen's fields (the Anthropic key box)."""
        return iter(())

    def compose_extra(self) -> ComposeResult:
        return iter(())

    def compose_nav(self) -> ComposeResult:
        return iter(())

    def on_mount(self) -> None:
        # The first check loads the config model (pydantic, the edge settings): paint first, then check,
        # so the first screen appears at once.
        self.call_after_refresh(self.revalidate)
        first = self.initial_focus()
        if first is not None:
            # One focus decision per screen, so the cursor is drawn in the widget that gets the keys.
            self.set_focus(first)
            self.call_after_refresh(self._place_cursor)

    def _place_cursor(self) -> None:
        # An Input places the terminal's cursor when it gets focus, before the first layout gave it a place
        # (the cursor then sat at the top left); place it again once laid out.
        focused = self.focused
        if isinstance(focused, Input):
            self.app.cursor_position = focused.cursor_screen_offset

    def initial_focus(self) -> Widget | None:
        """The widget that has the keys when the screen opens: the first field shown."""
        return next((w for w in self.query("#body Input, #body Select, #body Checkbox") if w.display), None)

    # --- values and validation ------------------------------------------------------------

    def path_problems(self) -> dict[str, str]:
        """A file box naming a directory (the key file, the SSH key, a certificate): said as it is typed,
        not when Save or the deploy fails on it."""
        out: dict[str, str] = {}
        for spec in self.spec.fields:
            raw = str(self.state.values.get(spec.key) or "").strip()
            if spec.kind == "path" and raw and spec.shown(self.state.values) and core.is_directory(raw):
                out[spec.key] = f"{raw} is a directory, not a file; give the path of a file in it"
        return out

    def path_notes(self) -> dict[str, str]:
        """A file box naming a file that does not exist (yet): said under it, without blocking Next."""
        out: dict[str, str] = {}
        for spec in self.spec.fields:
            raw = str(self.state.values.get(spec.key) or "").strip()
            todo = MISSING_FILE_NOTES.get(spec.key)
            if todo and raw and spec.shown(self.state.values) and not core.exists(raw):
                out[spec.key] = f"note: {raw} does not exist yet; {todo}"
        return out

    def extra_problems(self) -> dict[str, str]:
        """Problems the screen knows beyond the document (e.g. the key box); keyed by widget key."""
        return {}

    def revalidate(self) -> None:
        for row in self.query(FormField):
            asked = row.spec.shown(self.state.values)
            if row.display != asked:
                row.display = asked
        self.problems = field_problems(self.state, self.INDEX, core.check_document) if self.spec.fields else {}
        for key, said in self.path_problems().items():
            self.problems.setdefault(key, said)
        self.problems.update(self.extra_problems())
        shown: dict[str, str] = {}
        notes = self.path_notes()
        for row in self.query(FormField):
            message = self.problems.get(row.spec.key)
            untouched_required = (
                message is not None and message.startswith(REQUIRED) and row.spec.key not in self.touched
            )
            if message is None and row.spec.key in notes:
                row.show_message(notes[row.spec.key], note=True)
                continue
            row.show_message(None if untouched_required else message)
            if message and row.display and not untouched_required:
                shown[row.spec.key] = message
        shown.update(self.show_extra_messages(force=False))
        self.show_summary(shown)
        self.query_one("#next", Button).disabled = bool(self.problems) or not self.can_go_on()
        self.checked = True

    def show_summary(self, shown: dict[str, str]) -> None:
        """The count next to Next: the problems drawn now, and the empty boxes still to fill (not yet
        marked, so nobody is told off before typing), so the number always matches what is on screen."""
        to_fix = problem_count(shown)
        to_fill = len([k for k, m in self.problems.items() if k not in shown and m.startswith(REQUIRED)])
        parts = [f"{to_fix} to fix"] if to_fix else []
        if to_fill:
            parts.append(f"{to_fill} to fill in")
        text = ", ".join(parts)
        summary = self.query_one("#summary", Static)
        if str(summary.render()) != text:
            summary.update(text)

    def show_extra_messages(self, *, force: bool) -> dict[str, str]:
        """Show problems of widgets that are not fields (``force``: also "is required" before any typing);
        returns the ones now drawn."""
        return {}

    def can_go_on(self) -> bool:
        return True

    def _spec_of(self, widget: Widget) -> FieldSpec | None:
        if widget.id is None:
            return None
        return next((s for s in self.spec.fields if field_id(s.key) == widget.id), None)

    def _changed(self, widget: Widget) -> None:
        spec = self._spec_of(widget)
        if spec is None:
            return
        value = read_value(widget)
        unchanged = _same(value, self.state.get(spec))
        self.state.values[spec.key] = value  # held either way: which fields show depends on it
        if unchanged:
            # A box announcing the value it was given (every filled box does when it mounts) is no answer:
            # counted as one, it wrote a draft nobody typed (the next `init --out FILE` resumed it instead
            # of loading FILE) and forgot a confirmed host key each time the Target screen opened.
            self.revalidate()
            return
        self.touched.add(spec.key)
        self.on_value_changed(spec.key)
        self.revalidate()
        self.wizard.draft_changed()

    def on_value_changed(self, key: str) -> None:
        pass

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        self._changed(event.input)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        self._changed(event.select)

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._changed(event.checkbox)

    def action_enter_key(self) -> None:
        # Enter in a box moves on to the next field, as in a form; elsewhere (a button, a list) it does
        # what that widget does.
        if not isinstance(self.focused, Input):
            raise SkipAction()
        self.focus_next()

    def on_descendant_focus(self, event: Any) -> None:
        # The widget focused now, not the event's: focus events bubble up paths of different lengths, so
        # after "Tab Tab Tab" a box's late event overwrote the help of the button focused after it.
        widget = self.focused or event.widget
        if isinstance(widget.parent, Select):
            widget = widget.parent  # an open dropdown's list: the help of its field
        spec = self._spec_of(widget)
        help_text = spec.help if spec is not None else getattr(widget, "tooltip", None) or ""
        if isinstance(widget, Tabs):
            help_text = TABS_HELP
        self.query_one("#help", Static).update(str(help_text))

    # --- navigation ------------------------------------------------------------------------

    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    def action_after_typing(self, action: str) -> None:
        """Run ``action`` once the keys typed before its key are in their box.

        Ctrl+N and Ctrl+B are priority keys: the app runs them the moment they arrive, while the text typed
        just before them (a burst, a paste, a fast typist in a real terminal) still waits in the boxes'
        queues. The action runs once every box has taken its text, with every box read.
        """
        self.call_later(self._read_then, action)

    async def _read_then(self, action: str) -> None:
        # Every box, not only the focused one: in "Ctrl+U Tab Ctrl+U Ctrl+N" the first box's Ctrl+U may
        # still wait in that box's queue when Ctrl+N arrives (Next then counted problems of text already
        # erased, and drew none). Each box's queue is passed once, then each box is read.
        boxes = [box for box in self.query(Input) if box.is_attached]
        await boxes_settled(boxes)
        for box in boxes:
            if box.is_attached:
                self.read_box(box)
        await self.run_action(action)

    def read_box(self, box: Input) -> None:
        """Take the box's text now (its Input.Changed is still on its way)."""
        spec = self._spec_of(box)
        if spec is not None and self.state.values.get(spec.key) != read_value(box):
            self._changed(box)

    def action_next(self) -> None:
        if self.blocked():
            return
        self.leave()
        self.wizard.goto(self.INDEX + 1)

    def blocked(self) -> bool:
        """Whether the screen has problems; if so every message is shown and the first field focused."""
        self.revalidate()
        if not self.query_one("#next", Button).disabled:
            return False
        # Every problem is drawn now, "is required" too, and stays drawn while another box is typed in.
        self.touched.update(self.problems)
        first: Widget | None = None
        shown: dict[str, str] = {}
        for row in self.query(FormField):
            message = self.problems.get(row.spec.key)
            if message is None:
                continue  # revalidate drew it: nothing, or a note
            row.show_message(message)
            if row.display:
                shown[row.spec.key] = message
                if first is None:
                    first = row.query_one("#" + field_id(row.spec.key))
        shown.update(self.show_extra_messages(force=True))
        self.show_summary(shown)
        if first is None:
            first = next((self.query_one("#" + k) for k in self.problems if self.query("#" + k)), None)
        if first is not None:
            self.set_focus(first)
        count = problem_count(shown)
        self.notify(f"{count} problem{'s' if count != 1 else ''} to fix: each is written under its field.",
                    severity="warning")
        return True

    def action_back(self) -> None:
        if self.INDEX > 0:
            self.leave()
            self.wizard.goto(self.INDEX - 1)

    def leave(self) -> None:
        """Called before the screen goes away (clear secrets from widgets here)."""

    def action_save_draft(self) -> None:
        path = self.wizard.save_draft()
        self.notify(f"Draft saved to {path} (without the Anthropic key).")


def _same(value: Any, answer: Any) -> bool:
    """Whether a widget's value is the answer already held (text compared as the box shows it)."""
    if isinstance(value, bool) or isinstance(answer, bool):
        return bool(value == answer)
    if isinstance(answer, list):
        answer = ", ".join(str(a) for a in answer)
    return str(value) == str("" if answer is None else answer)
