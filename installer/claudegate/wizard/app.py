"""The Textual app: the wizard's steps in order, the day-2 console, and the dialogs the core's questions open."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from claudegate.wizard import core
from claudegate.wizard.draft import clear_draft, draft_path, load_draft, save_draft
from claudegate.wizard.form import SCREENS, WizardState, state_from_document
from claudegate.wizard.interaction import DialogInteraction

if TYPE_CHECKING:
    from claudegate.config import DeployConfig
    from claudegate.control.progress import StepEvent
    from claudegate.deploy.results import DeployResult
    from claudegate.session import Session

__all__ = ["WizardApp", "make_app"]


class WizardApp(App[None]):
    """``claudegate init``: the steps of :data:`claudegate.wizard.form.SCREENS`, or the console."""

    CSS_PATH = "wizard.tcss"
    TITLE = "claudegate setup"
    # Ctrl+P: the command palette lists the keys' actions of the screen it was opened on, by name
    # (get_system_commands). It is in the F1 help, not the footer: the footer holds the step's own keys.
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Priority: the app moves the focus the moment Tab arrives. As a plain binding the Tab went to the
        # focused box's queue first, and a burst typed right after it (a fast typist, a paste, a script)
        # was already routed to the box being left (seen in a real terminal, never under Pilot).
        Binding("tab", "focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous field", show=False, priority=True),
        Binding("f1", "help", "Help"),
        # Not a priority: in a text box "?" is typed, elsewhere it opens the help.
        Binding("question_mark", "help", "Help", show=False),
    ]

    def __init__(
        self,
        state: WizardState,
        *,
        config_path: Path,
        draft_file: Path | None = None,
        console_config: DeployConfig | None = None,
        resumed: bool = False,
    ) -> None:
        super().__init__()
        self.state = state
        self.config_path = config_path
        self.draft_file = draft_file or draft_path()
        self.console_config = console_config
        self.resumed = resumed
        #: The deploy.yaml the answers were loaded from (saving over it needs no question).
        self.loaded_from: Path | None = None
        #: Said once the first screen is up (a loaded or existing deploy.yaml).
        self.start_note: str | None = None
        self.session: Session | None = None
        #: Where progress events go (the deploy or console screen showing a run).
        self.progress_target: Callable[[StepEvent], None] | None = None
        self._interactions: list[DialogInteraction] = []
        #: True once the typed Anthropic key is in its key file (quitting then loses nothing).
        self.key_saved = False

    def on_mount(self) -> None:
        if self.console_config is not None:
            from claudegate.wizard.screens.console import ConsoleScreen

            self.push_screen(ConsoleScreen(self.console_config))
            return
        self.goto(self.state.screen, save=False)
        if self.resumed:
            self.notify("Resumed your saved draft (the Anthropic key is never saved: type it again).")
        if self.start_note:
            self.notify(self.start_note, timeout=10)

    # --- navigation --------------------------------------------------------------------------

    def goto(self, index: int, *, save: bool = True, confirmed: bool = False) -> None:
        """Show step ``index``. The deploy step starts only ``confirmed`` (Review's "Deploy now")."""
        from claudegate.wizard.screens.clients import ClientsScreen
        from claudegate.wizard.screens.review import ReviewScreen
        from claudegate.wizard.screens.run import DeployScreen
        from claudegate.wizard.screens.steps import STEP_SCREENS

        index = max(0, min(index, len(SCREENS) - 1))
        name = SCREENS[index].name
        screen: Screen[Any]
        if name in STEP_SCREENS:
            screen = STEP_SCREENS[name]()
        elif name == "clients":
            screen = ClientsScreen()
        elif name == "review":
            screen = ReviewScreen()
        elif name == "deploy":
            from claudegate.wizard.form import document

            if not confirmed:
                return

            try:
                session = self.session_for(document(self.state), self.config_path.parent)
            except Exception as exc:  # a config problem: stay on Review and say it
                self.notify(str(exc), severity="error", timeout=10)
                return
            screen = DeployScreen(session, autostart=True)
        else:
            return
        if index < SCREENS.index(SCREENS[7]):
            self.state.screen = index
            if save:
                self.save_draft()
        if len(self.screen_stack) <= 1:
            self.push_screen(screen)
        else:
            self.switch_screen(screen)

    def show_result(self, result: DeployResult) -> None:
        from claudegate.wizard.screens.run import ResultScreen

        cfg = self.session.config if self.session is not None else None
        assert cfg is not None
        port = cfg.ports.https
        base_url = f"https://{cfg.domain}" + ("" if port == 443 else f":{port}")
        ca_file = Path(cfg.state_dir) / "ca.pem" if cfg.tls.mode == "internal-ca" else None
        # The snippets ask for a model the (first) new client may use: pasted, they answer 200, not 403.
        from claudegate.wizard.snippets import snippet_model

        new = sorted(result.new_client_keys)
        client = next((c for c in cfg.clients if new and c.name == new[0]), None)
        model = snippet_model(list(client.models)) if client is not None else snippet_model(["*"])
        who = client.name if client is not None else None
        self.switch_screen(ResultScreen(result, base_url, ca_file, self.config_path, model=model, client=who))

    # --- the draft and the saved config ------------------------------------------------------

    def save_draft(self) -> Path:
        self.state.draft_for = str(self.config_path)
        return save_draft(self.state, self.draft_file)

    def draft_changed(self) -> None:
        """An answer changed: the draft follows at once, so a crash or a quit loses nothing but the key."""
        try:
            self.save_draft()
        except OSError as exc:  # a full disk must not stop the typing; say it once
            if not getattr(self, "_draft_warned", False):
                self._draft_warned = True
                self.notify(f"The draft cannot be saved ({exc.strerror}): finish in one go.", severity="warning")

    def saved(self, path: Path) -> None:
        self.config_path = path
        self.key_saved = True
        clear_draft(self.draft_file)

    # --- sessions ----------------------------------------------------------------------------

    def interaction(self) -> DialogInteraction:
        interaction = DialogInteraction(self)
        self._interactions.append(interaction)
        return interaction

    def session_for(self, doc: dict[str, Any], base_dir: Path) -> Session:
        """A session on ``doc`` (replacing the previous one), its questions answered by dialogs."""
        cfg = core.build_config(doc, base_dir=base_dir)
        return self.session_on(cfg)

    def session_on(self, cfg: DeployConfig) -> Session:
        if self.session is not None:
            self.session.close()
        self.session = core.open_session(cfg, self.interaction(), progress=self._progress_from_thread)
        return self.session

    def session_for_retry(self, session: Session) -> Session:
        return self.session_on(session.config)

    def _progress_from_thread(self, event: StepEvent) -> None:
        self._on_ui(self._progress, event)

    def _progress(self, event: StepEvent) -> None:
        if self.progress_target is not None:
            self.progress_target(event)

    def _on_ui(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._thread_id:
            fn(*args)
        else:
            self.call_from_thread(fn, *args)

    # --- Asker: the core's questions as dialogs ----------------------------------------------

    def ask(self, question: Any, answer: queue.SimpleQueue[Any]) -> None:
        self._on_ui(self._show_question, question, answer)

    def _show_question(self, question: Any, answer: queue.SimpleQueue[Any]) -> None:
        from claudegate.wizard.screens.dialogs import ConfirmDialog, SecretDialog, host_key_dialog

        kind = getattr(question, "kind", "")
        dialog: Screen[Any]
        if kind == "host-key":
            dialog = host_key_dialog(question.where, question.key_type, question.fingerprint, question.compare_command)
        elif kind == "consent":
            dialog = ConfirmDialog("Go ahead?", question.text(), yes="Yes, go ahead", no="No, stop")
        elif kind == "secret":
            dialog = SecretDialog(question.text())
        else:
            answer.put(None)
            return
        self.push_screen(dialog, answer.put)

    def told_cancelled(self, message: str) -> None:
        self._on_ui(lambda: self.notify(f"Cancelled: {message}", title="Cancelled", severity="warning"))

    # --- the end -----------------------------------------------------------------------------

    def action_help(self) -> None:
        from claudegate.wizard.screens.dialogs import HelpDialog

        if not isinstance(self.screen, HelpDialog):
            # A toast ("3 problems to fix") is drawn above every screen: it would sit on the help's text.
            self.clear_notifications()
            self.push_screen(HelpDialog(console=self.console_config is not None))

    #: Actions that are not worth a line in the palette (moving between fields; the palette itself).
    _NOT_IN_PALETTE = frozenset({"focus_next", "focus_previous", "enter_key", "command_palette", "help", "quit"})

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: what the keys of ``screen`` do right now (the footer's and the hidden ones),
        each with its key, then Help and Quit. Made from the bindings, so it never lists a stale action."""
        # One entry per name, with all its keys ("Back  key: ^b, esc"), not one per key.
        entries: dict[str, tuple[list[str], Any]] = {}
        for active in screen.active_bindings.values():
            binding = active.binding
            if not active.enabled or not binding.description or binding.action in self._NOT_IN_PALETTE:
                continue
            keys, _run = entries.setdefault(
                binding.description, ([], partial(self.run_action, binding.action, active.node))
            )
            shown = self.get_key_display(binding)
            if shown not in keys:
                keys.append(shown)
        for name, (keys, run) in entries.items():
            yield SystemCommand(name, "key: " + ", ".join(keys), run)
        yield SystemCommand("Help", "key: F1  every key of the wizard", self.action_help)
        yield SystemCommand("Quit", "key: ^q  asks first if something would be lost", self.action_quit)

    async def action_quit(self) -> None:
        from claudegate.wizard.screens.dialogs import ConfirmDialog

        if isinstance(self.screen, ConfirmDialog) and self.screen.id == "quit-dialog":
            self._quit()  # Ctrl+Q twice: the operator means it
            return
        question = self._quit_question()
        if question is None:
            self._quit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._quit()

        dialog = ConfirmDialog("Quit?", question, yes="Quit", no="Stay")
        dialog.id = "quit-dialog"
        self.push_screen(dialog, answered)

    def _quit_question(self) -> str | None:
        """What quitting now would lose, or None when nothing is lost."""
        from claudegate.wizard.screens.base import StepScreen
        from claudegate.wizard.screens.run import DeployScreen, ResultScreen

        screens = [type(s) for s in self.screen_stack]
        if any(issubclass(s, DeployScreen) for s in screens):
            deploy = next(s for s in self.screen_stack if isinstance(s, DeployScreen))
            if not deploy.finished:
                return "A deploy is running: quitting cancels it at the next safe point (a rerun resumes it)."
            return None
        if any(issubclass(s, ResultScreen) for s in screens):
            return "The client keys on this screen are shown only now: copy them before you quit."
        if any(issubclass(s, StepScreen) for s in screens) and self.state.upstream_key is not None and not self.key_saved:
            # Every other answer is in the draft already (it follows each change).
            return (f"Your answers are kept in the draft {self.draft_file} (`claudegate init` resumes it),"
                    " but not the Anthropic key you typed: it is never written to the draft. You would type it"
                    " again.")
        return None

    def _quit(self) -> None:
        if self.session is not None:
            core.cancel(self.session)
        for interaction in self._interactions:
            interaction.stop()
        from claudegate.wizard.screens.base import StepScreen

        message = None
        if isinstance(self.screen, StepScreen) and self.draft_file.exists():
            message = f"Your answers are in the draft {self.draft_file}; `claudegate init` resumes it."
        self.exit(return_code=self.return_code or 0, message=message)

    def on_unmount(self) -> None:
        # However the app ends (Quit, an error, a test's teardown), a worker waiting for a dialog's answer
        # gets "no" and a running method stops at its next safe point: no thread outlives the screen.
        for interaction in self._interactions:
            interaction.stop()
        if self.session is not None:
            core.cancel(self.session)
            self.session.close()


def make_app(
    config: Path | None = None,
    *,
    fresh: bool = False,
    draft_file: Path | None = None,
    save_to: Path | None = None,
) -> WizardApp:
    """The one factory the CLI and the tests use.

    ``config``: an existing deploy.yaml opens the day-2 console on it; otherwise
    the wizard starts (resuming the saved draft unless ``fresh``) and saves to
    ``save_to`` (default ``./deploy.yaml``).
    """
    draft_file = draft_file or draft_path()
    if config is not None and config.exists():
        _doc, cfg = core.load_document(config)
        return WizardApp(WizardState(), config_path=config, draft_file=draft_file, console_config=cfg)
    target = (save_to or config or Path(os.getcwd()) / "deploy.yaml").absolute()
    state = None if fresh else load_draft(draft_file)
    note = None
    if state is not None and not state.has_answers():
        state = None  # nothing was typed in it
    elif state is not None and state.draft_for and Path(state.draft_for) != target and target.is_file():
        # The draft of another deploy.yaml: edit this one as asked; the draft stays until an answer changes.
        note = (f"The unfinished draft is for {state.draft_for} (`claudegate init --out {state.draft_for}`"
                f" resumes it); an answer changed here replaces it.")
        state = None
    resumed = state is not None
    loaded_from = None
    if state is None and target.is_file():
        # An existing deploy.yaml is edited, not silently replaced by empty answers.
        try:
            doc, cfg = core.load_document(target)
        except Exception as exc:  # unreadable or invalid: start empty, and Save will ask before replacing it
            note = (f"{target} exists but could not be loaded ({getattr(exc, 'message', exc)}); saving asks"
                    " before replacing it.")
        else:
            core.refuse_several_hosts(cfg, target)
            state = state_from_document(doc)
            loaded_from = target.resolve()
            note = " ".join(filter(None, (
                f"Loaded the answers of {target}: change what you need; Save writes them back there.", note,
            )))
    if state is not None and target.is_file() and loaded_from is None and note is None:
        note = f"{target} already exists: saving asks before replacing it."
    app = WizardApp(state or WizardState(), config_path=target, draft_file=draft_file, resumed=resumed)
    app.loaded_from = loaded_from
    app.start_note = note
    return app
