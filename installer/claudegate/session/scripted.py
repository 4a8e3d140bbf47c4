"""Interactions for tests and for recording: scripted answers, and a recorder around any interaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from claudegate.control.interaction import (
    ConsentQuestion,
    HostKeyQuestion,
    Interaction,
    Question,
    SecretQuestion,
)
from claudegate.errors import Cancelled
from claudegate.redact import Secret

__all__ = ["RecordingInteraction", "ScriptedInteraction"]


@dataclass
class ScriptedInteraction:
    """Answers every question from fixed answers and records what was asked, in order.

    ``host_key``: True trusts any first-contact key, a ``SHA256:`` string trusts
    only that one; ``consent``: the answer to every consent question, or a
    dict by topic; ``secret``: the answer to a secret question.
    """

    host_key: bool | str = False
    consent_answers: bool | dict[str, bool] = False
    secret: str | None = None
    asked: list[Question] = field(default_factory=list)
    cancellations: list[Cancelled] = field(default_factory=list)

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        self.asked.append(question)
        if isinstance(self.host_key, str):
            return self.host_key == question.fingerprint
        return self.host_key

    def consent(self, question: ConsentQuestion) -> bool:
        self.asked.append(question)
        if isinstance(self.consent_answers, dict):
            return self.consent_answers.get(question.topic, False)
        return self.consent_answers

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        self.asked.append(question)
        return Secret(self.secret) if self.secret is not None else None

    def cancelled(self, error: Cancelled) -> None:
        self.cancellations.append(error)


class RecordingInteraction:
    """Wraps another interaction and records every question passed through, in order."""

    def __init__(self, inner: Interaction) -> None:
        self.inner = inner
        self.asked: list[Question] = []

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        self.asked.append(question)
        return self.inner.confirm_host_key(question)

    def consent(self, question: ConsentQuestion) -> bool:
        self.asked.append(question)
        return self.inner.consent(question)

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        self.asked.append(question)
        return self.inner.ask_secret(question)

    def cancelled(self, error: Cancelled) -> None:
        self.inner.cancelled(error)
