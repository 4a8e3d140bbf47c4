"""The session's questions, answered by the wizard's dialogs.

The session runs in a worker thread; a question blocks that thread until the
operator answers in a dialog on the UI thread. :class:`DialogInteraction`
implements :class:`claudegate.control.interaction.Interaction` (the same
protocol the CLI answers with prompts or flags) over an :class:`Asker` that
the app provides.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from claudegate.control.interaction import ConsentQuestion, HostKeyQuestion, SecretQuestion
    from claudegate.errors import Cancelled
    from claudegate.redact import Secret

__all__ = ["Asker", "DialogInteraction"]


class Asker(Protocol):
    """Shows ``question`` on the UI thread and puts the reply in ``answer`` (the app implements it)."""

    def ask(self, question: Any, answer: queue.SimpleQueue[Any]) -> None: ...

    def told_cancelled(self, message: str) -> None: ...


class DialogInteraction:
    """Blocks the calling (worker) thread on a dialog; :meth:`stop` answers every open question "no"."""

    def __init__(self, asker: Asker) -> None:
        self._asker = asker
        self._stopped = threading.Event()
        self._waiting: list[queue.SimpleQueue[Any]] = []
        self._lock = threading.Lock()

    def _ask(self, question: Any, *, refused: Any) -> Any:
        if self._stopped.is_set():
            return refused
        answer: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            self._waiting.append(answer)
        try:
            self._asker.ask(question, answer)
            return answer.get()
        finally:
            with self._lock:
                self._waiting.remove(answer)

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        return bool(self._ask(question, refused=False))

    def consent(self, question: ConsentQuestion) -> bool:
        return bool(self._ask(question, refused=False))

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        answer = self._ask(question, refused=None)
        return answer if answer is not None else None

    def cancelled(self, error: Cancelled) -> None:
        self._asker.told_cancelled(str(error))

    def stop(self) -> None:
        """Answer "no" to the question on screen and to any later one (the screen went away)."""
        self._stopped.set()
        with self._lock:
            for waiting in self._waiting:
                waiting.put(None)
