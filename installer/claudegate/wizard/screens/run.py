"""Deploy (steps with status and time, progress, live log, Cancel) and Result (smoke table, keys, snippets)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Label,
    ProgressBar,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
)

from claudegate.errors import Cancelled, ClaudegateError
from claudegate.wizard import core
from claudegate.wizard.snippets import snippets
from claudegate.wizard.widgets import StepBar, copy_asked

if TYPE_CHECKING:
    from claudegate.control.progress import StepEvent
    from claudegate.deploy.results import DeployResult
    from claudegate.session import Session
    from claudegate.wizard.app import WizardApp

__all__ = ["DeployScreen", "ResultScreen"]


class DeployScreen(Screen[None]):
    INDEX = 7
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "cancel", "Cancel deploy", priority=True),
        Binding("ctrl+q", "app.quit", "Quit", show=False),
    ]

    def __init__(self, session: Session, *, autostart: bool = False) -> None:
        """``autostart`` only after the operator confirmed the deploy (Review's "Deploy now")."""
        super().__init__(id="step-deploy")
        self.session = session
        self.autostart = autostart
        self.rows: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.running: str | None = None
        self.finished = False
        #: Cancel was pressed: the step that stops next stopped because of it, it did not fail.
        self.cancelling = False

    @property
    def wizard(self) -> WizardApp:
        return cast("WizardApp", self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The footer offers Cancel only while there is something to cancel.
        if action == "cancel":
            return not (self.finished or self.cancelling)
        return True

    def compose(self) -> ComposeResult:
        yield StepBar(self.INDEX)
        yield Static(self._title(), id="deploy-title", classes="intro")
        yield DataTable(id="steps", cursor_type="none")
        with Horizontal(id="progress-line"):
            yield Label("", id="work")
            yield ProgressBar(id="progress", show_eta=False)
        yield RichLog(id="log", wrap=True, max_lines=2000, markup=False)
        yield Static("", id="error", classes="error")
        with Horizontal(id="nav"):
            yield Button("Cancel", id="cancel", variant="error", compact=True)
            yield Button("Back to review", id="back", compact=True, disabled=True)
            yield Button("Retry", id="retry", compact=True, disabled=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        # Fixed widths for the columns whose text changes, so "no changes" and "123.4s" are never cut.
        table.add_column("#", width=2)
        table.add_column("Step")
        table.add_column("Status", width=10)
        table.add_column("Time", width=7)
        self.set_interval(0.5, self._tick)
        if self.autostart:
            self._start()

    def _title(self, outcome: str | None = None) -> str:
        """The line above the steps: what runs now, or how it ended (it said "Deploying…" after a failure)."""
        host = self.session.config.target.host
        if outcome is None:
            return f"Deploying to {host}…"
        return f"The deploy to {host} {outcome}: Retry resumes it, Back to review changes the answers."

    def _start(self) -> None:
        self.finished = False
        self.cancelling = False
        self.query_one("#deploy-title", Static).update(self._title())
        self.query_one("#error", Static).update("")
        if self.rows:  # a retry: its own rows, not the last run's FAILED / cancelled ones
            self.query_one("#steps", DataTable).clear()
            self.rows.clear()
            self.query_one("#log", RichLog).write("— retry: the deploy resumes where it stopped —")
        for wid, disabled in (("#cancel", False), ("#back", True), ("#retry", True)):
            self.query_one(wid, Button).disabled = disabled
        self.wizard.progress_target = self.show_event
        self.refresh_bindings()
        self._run()

    @work(thread=True, exclusive=True, group="deploy")
    def _run(self) -> None:
        try:
            result = core.deploy(self.session)
        except ClaudegateError as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        except Exception as exc:  # a bug must not take the app (and the log on screen) down with it
            error = ClaudegateError(f"unexpected {type(exc).__name__}: {exc}", hint="a rerun resumes; report this")
            self.app.call_from_thread(self._failed, error)
            return
        self.app.call_from_thread(self._done, result)

    # --- events from the core (already on the UI thread) ------------------------------

    def show_event(self, event: StepEvent) -> None:
        table = self.query_one("#steps", DataTable)
        log = self.query_one("#log", RichLog)
        if event.kind == "start":
            if event.step not in self.rows:
                self.rows[event.step] = table.add_row(str(event.index), event.title, "running", "")
            self.started[event.step] = time.monotonic()
            self.running = event.step
            bar = self.query_one("#progress", ProgressBar)
            bar.update(total=None, progress=0)
            self.query_one("#work", Label).update(event.title)
            log.write(f"[{event.index}/{event.total}] {event.title}")
        elif event.kind == "plan":
            for change in event.changes:
                log.write(f"  + {change}")
        elif event.kind == "note" and event.message:
            log.write(f"  {event.message}")
        elif event.kind == "work" and event.heartbeat:
            # The engine's "still ..." after a quiet spell: the label says it; the log stays readable.
            self.query_one("#work", Label).update(f"{event.message[:32]} {event.done or 0:.0f}s")
        elif event.kind == "work":
            if event.message:
                log.write(f"    {event.message}")
                self.query_one("#work", Label).update(event.message[:40])
            if event.expected:
                self.query_one("#progress", ProgressBar).update(total=event.expected, progress=event.done or 0)
        elif event.kind == "check":
            log.write(f"  smoke {event.message}: {event.status} {event.detail}")
        elif event.kind in ("finish", "fail"):
            if event.kind == "finish":
                status = "changed" if event.changed else "no changes"
            else:
                status = "cancelled" if self.cancelling else "FAILED"
            row = self.rows.get(event.step)
            if row is not None:
                table.update_cell(row, table.ordered_columns[2].key, status)
                table.update_cell(row, table.ordered_columns[3].key, f"{event.elapsed:.1f}s")
            if event.kind == "fail":
                log.write(f"  {status}: {event.message}")
            self.running = None

    def _tick(self) -> None:
        if self.running is None or self.running not in self.rows:
            return
        table = self.query_one("#steps", DataTable)
        elapsed = time.monotonic() - self.started[self.running]
        table.update_cell(self.rows[self.running], table.ordered_columns[3].key, f"{elapsed:.0f}s")

    # --- the end ---------------------------------------------------------------------------

    def _failed(self, exc: ClaudegateError) -> None:
        self.finished = True
        cancelled = isinstance(exc, Cancelled) or self.cancelling
        if cancelled:
            text = ("Cancelled at a safe point, as you asked. Retry resumes the deploy where it stopped;"
                    " Back to review changes the answers first.")
        else:
            text = f"Deploy failed: {exc.message}" + (f"\nFix: {exc.hint}" if exc.hint else "")
        self.query_one("#error", Static).update(text)
        self.query_one("#deploy-title", Static).update(self._title("was cancelled" if cancelled else "failed"))
        self.query_one("#log", RichLog).write(text)
        # The progress line stops too: nothing is running any more.
        self.query_one("#work", Label).update("Cancelled" if cancelled else "Failed")
        self.query_one("#progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#cancel", Button).disabled = True
        self.query_one("#back", Button).disabled = False
        self.query_one("#retry", Button).disabled = False
        self.refresh_bindings()

    def _done(self, result: DeployResult) -> None:
        self.finished = True
        self.wizard.show_result(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.finished:
            return
        self.cancelling = True
        self.refresh_bindings()
        core.cancel(self.session)
        self.query_one("#cancel", Button).disabled = True
        self.query_one("#log", RichLog).write("Cancelling at the next safe point…")

    @on(Button.Pressed, "#retry")
    def _retry(self) -> None:
        self.session = self.wizard.session_for_retry(self.session)
        self._start()

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.wizard.goto(self.INDEX - 1)


class ResultScreen(Screen[None]):
    INDEX = 8
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
        Binding("c", "copy_key", "Copy key"),
    ]

    def __init__(
        self, result: DeployResult, base_url: str, ca_file: Any, config_path: Any, *,
        model: str = "claude-sonnet-4-5", client: str | None = None,
    ) -> None:
        super().__init__(id="step-result")
        self.model = model
        self.client = client
        self.result = result
        self.base_url = base_url
        self.ca_file = ca_file
        self.config_path = config_path

    def compose(self) -> ComposeResult:
        result = self.result
        smoke = result.smoke
        ok = smoke is None or smoke.ok
        yield StepBar(self.INDEX)
        yield Static(
            ("Done: " if ok else "Deployed, but the smoke test failed: ")
            + f"{self.base_url}  (release {result.release_id}, {result.elapsed:.0f}s)",
            id="result-title", classes="intro",
        )
        with TabbedContent(id="result-tabs"):
            with TabPane("Smoke test", id="tab-smoke"):
                yield DataTable(id="smoke", cursor_type="row")
            with TabPane("Keys", id="tab-keys"), VerticalScroll():
                yield Static(
                    "Each new key is shown only now. Copy it into your secret store; the gateway keeps"
                    " only its hash.", classes="help",
                )
                if not result.new_client_keys:
                    yield Static("No new keys in this deploy (existing clients keep theirs).")
                for name, key in sorted(result.new_client_keys.items()):
                    with Horizontal(classes="key-line"):
                        yield Label(name, classes="field-label")
                        yield Static(key.reveal(), classes="client-key", id=f"key-{name}")
                        yield Button("Copy", id=f"copy-{name}", compact=True, classes="copy")
            whose = f"the key of {self.client}" if self.client else "a key from the Keys tab"
            for title, text in snippets(self.base_url, ca_file=self.ca_file, config_path=self.config_path,
                                        model=self.model).items():
                with TabPane(title), VerticalScroll():
                    yield Static(f"export CLAUDEGATE_KEY=<{whose}>  (it may use {self.model})", classes="help")
                    yield Static(text, classes="snippet", markup=False)
        with Horizontal(id="nav"):
            yield Static(f"Config saved to {self.config_path}", id="saved")
            yield Button("Done", id="done", variant="primary", compact=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#smoke", DataTable)
        table.add_columns("Check", "Result", "Detail")
        if self.result.smoke is not None:
            for check in self.result.smoke.checks:
                table.add_row(check.name, check.status, check.detail)

    @on(Button.Pressed, ".copy")
    def _copy(self, event: Button.Pressed) -> None:
        name = (event.button.id or "").removeprefix("copy-")
        key = self.result.new_client_keys.get(name)
        if key is not None:
            copy_asked(self.app, key.reveal(), f"the key of {name}")

    def action_copy_key(self) -> None:
        if len(self.result.new_client_keys) == 1:
            (name, key), = self.result.new_client_keys.items()
            copy_asked(self.app, key.reveal(), f"the key of {name}")

    @on(Button.Pressed, "#done")
    def _done(self) -> None:
        self.app.exit(message=f"Redeploy any time with: claudegate deploy --config {self.config_path}")
