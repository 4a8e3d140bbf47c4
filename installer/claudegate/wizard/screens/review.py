"""Review: the deploy.yaml to be saved, the core's plan with file diffs; save only, or deploy."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Button, TabbedContent, TabPane, TextArea

from claudegate.errors import ClaudegateError
from claudegate.wizard import core
from claudegate.wizard.form import document
from claudegate.wizard.screens.base import StepScreen
from claudegate.wizard.screens.dialogs import ConfirmDialog

__all__ = ["ReviewScreen"]


class ReviewScreen(StepScreen):
    INDEX = 6
    next_label = "Save and deploy…"
    next_help = "Save deploy.yaml and the key file, then deploy (Ctrl+N); asks you to confirm the target first."
    BINDINGS: ClassVar[list[BindingType]] = [
        *[b for b in StepScreen.BINDINGS if not (isinstance(b, Binding) and b.key in ("ctrl+n", "ctrl+s"))],
        # The footer says what Ctrl+N does here; it asks before anything is deployed.
        Binding("ctrl+n", "after_typing('next')", "Save and deploy…", priority=True),
        Binding("ctrl+o", "save_only", "Save only"),
        Binding("ctrl+r", "plan", "Plan"),
        Binding("ctrl+s", "save_draft", "Save draft", show=False),  # 80 columns hold the others
    ]

    def compose_extra(self) -> ComposeResult:
        with TabbedContent(id="review-tabs"):
            with TabPane("deploy.yaml", id="tab-yaml"):
                yaml_box = TextArea("", id="yaml", read_only=True, soft_wrap=True, show_line_numbers=False)
                yaml_box.tooltip = ("The deploy.yaml that Save writes (read only here: change the answers on their"
                                    " screens); arrows and PgUp/PgDn scroll it.")
                yield yaml_box
            with TabPane("Plan", id="tab-plan"):
                yield Button("Show the plan (connects, changes nothing)", id="plan", compact=True,
                             tooltip="The core's dry run: what the deploy would change, with file diffs (Ctrl+R).")
                plan_box = TextArea("", id="plan-text", read_only=True, soft_wrap=False)
                plan_box.tooltip = "What the deploy would change on the host; arrows and PgUp/PgDn scroll it."
                yield plan_box

    def compose_nav(self) -> ComposeResult:
        yield Button("Save only", id="save-only", compact=True,
                     tooltip="Save deploy.yaml and the key file and quit (Ctrl+O); deploy later with"
                     " claudegate deploy --config PATH.")

    def compose(self) -> ComposeResult:
        if not self.state.values.get("save_path"):
            self.state.values["save_path"] = str(self.wizard.config_path)
        yield from super().compose()

    def on_mount(self) -> None:
        super().on_mount()
        self._show_yaml()

    def on_value_changed(self, key: str) -> None:
        self._show_yaml()

    @property
    def save_path(self) -> Path:
        return Path(str(self.state.values.get("save_path") or self.wizard.config_path)).expanduser()

    def _show_yaml(self) -> None:
        text = core.config_yaml(document(self.state), self.save_path)
        self.query_one("#yaml", TextArea).load_text(text)

    def extra_problems(self) -> dict[str, str]:
        problem = core.where_to_save_problem(self.save_path)
        return {"save_path": f"{problem[0]}; {problem[1]}"} if problem else {}

    def _save(self) -> bool:
        try:
            core.save(document(self.state), self.save_path, upstream_key=self.state.upstream_key)
        except ClaudegateError as exc:
            self.notify(f"{exc.message}" + (f"\n{exc.hint}" if exc.hint else ""), severity="error", timeout=10)
            return False
        self.wizard.saved(self.save_path)
        return True

    def _replaces(self) -> bool:
        """Whether saving replaces a file the wizard did not load (then the operator is asked)."""
        path = self.save_path
        return path.exists() and path.resolve() != self.wizard.loaded_from

    @on(Button.Pressed, "#save-only")
    def action_save_only(self) -> None:
        if self.blocked():
            return

        def answered(yes: bool | None) -> None:
            if yes and self._save():
                self.wizard.exit(message=f"Saved {self.save_path}. Deploy it with:"
                                 f" claudegate deploy --config {self.save_path}")

        if self._replaces():
            self.app.push_screen(ConfirmDialog(
                "Replace the existing file?", f"{self.save_path} already exists. Saving replaces it with these"
                " answers (its comments and anything the wizard does not ask are lost).",
                yes="Replace it", no="Keep it",
            ), answered)
        else:
            answered(True)

    def action_next(self) -> None:
        if self.blocked():
            return
        target = self.state.values.get("target.host") if self.state.values.get("target.mode") != "local" else None
        where = f"the server {target}" if target else "this machine"
        text = (f"This saves {self.save_path}" + (" (replacing the file there)" if self._replaces() else "")
                + f" and the Anthropic key file, then deploys to {where}: it installs Docker if missing, builds"
                " the images, starts nginx and the gateway on ports 80/443 and runs the smoke test.")

        def answered(yes: bool | None) -> None:
            if yes and self._save():
                self.wizard.goto(self.INDEX + 1, confirmed=True)

        self.app.push_screen(ConfirmDialog(f"Deploy to {where} now?", text, yes="Deploy now", no="Not yet"),
                             answered)

    @on(Button.Pressed, "#plan")
    def action_plan(self) -> None:
        self.query_one("#review-tabs", TabbedContent).active = "tab-plan"
        self.query_one("#plan-text", TextArea).load_text("Connecting and reading the host…")
        self._run_plan()

    @work(thread=True, exclusive=True, group="plan")
    def _run_plan(self) -> None:
        try:
            session = self.wizard.session_for(document(self.state), self.save_path.parent)
            text = core.plan(session).plan_text(diffs=True)
        except ClaudegateError as exc:
            text = f"Failed: {exc.message}" + (f"\nFix: {exc.hint}" if exc.hint else "")
        self.app.call_from_thread(self.query_one("#plan-text", TextArea).load_text, text)

