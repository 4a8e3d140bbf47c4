"""The questions the core asks a person, and the interface a front end answers them through.

The core never prompts, prints or guesses from error text. When a run needs a
decision it builds one of the question types below and calls the session's
:class:`Interaction`:

- :class:`HostKeyQuestion` -- first contact with an SSH server whose key is not
  recorded: trust this fingerprint? (A *changed* key is never a question: it
  always stops the run with :class:`~claudegate.errors.HostKeyChanged`.)
- :class:`ConsentQuestion` -- a change the operator should agree to first:
  installing Docker from the distribution, replacing a certificate, removing
  the gateway, restoring a backup over the host's keystore.
- :class:`SecretQuestion` -- a secret the config points at is missing (the
  Anthropic key): the answer is saved where the config says, 0600.

Implementations: the CLI's prompts (``claudegate.cli.interaction``), the
wizard's dialogs, :class:`NonInteractive` (answers from flags, else fails with
the flag that answers), and :class:`~claudegate.session.scripted.ScriptedInteraction`
for tests. An implementation may raise :class:`~claudegate.errors.Cancelled`
from any method to stop the whole run (a dialog's Cancel), and is told through
:meth:`Interaction.cancelled` when a run stopped because it was cancelled.

Pure data and a Protocol: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from claudegate.errors import Cancelled, Declined, host_key_compare_command
from claudegate.redact import Secret

__all__ = [
    "ConsentQuestion",
    "ConsentTopic",
    "HostKeyQuestion",
    "Interaction",
    "NonInteractive",
    "Question",
    "SecretQuestion",
]

@dataclass(frozen=True)
class HostKeyQuestion:
    """First contact: the server offered a key nobody recorded. Trust it?"""

    host: str
    port: int
    key_type: str  # as SSH names it, e.g. ssh-ed25519
    fingerprint: str  # SHA256:... as ssh-keygen -lf prints it
    known_hosts: str  # where the answer yes is recorded

    kind: Literal["host-key"] = "host-key"

    @property
    def compare_command(self) -> str:
        """What to run on the server (its console, not over this connection) to see its own fingerprint."""
        return host_key_compare_command(self.key_type)

    @property
    def flag(self) -> str:
        """The command-line flag that answers yes without a terminal."""
        return f"--accept-host-key {self.fingerprint}"

    @property
    def where(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def text(self) -> str:
        return (
            f"{self.where} offered the {self.key_type} host key {self.fingerprint}, which is not recorded yet. "
            f"Compare it with the output of `{self.compare_command}` run on the server itself."
        )


ConsentTopic = Literal[
    "install-docker", "replace-certificate", "remove-gateway", "build-base-image", "restore-backup"
]


@dataclass(frozen=True)
class ConsentQuestion:
    """A change worth a yes before it is made (``detail`` says exactly what)."""

    topic: ConsentTopic
    target: str
    detail: str

    kind: Literal["consent"] = "consent"
    flag: str = "--yes"

    def text(self) -> str:
        return f"{self.target}: {self.detail}?"


@dataclass(frozen=True)
class SecretQuestion:
    """A secret the config points at is missing; the answer is saved at ``save_to`` (0600)."""

    name: Literal["anthropic-api-key"]
    field: str  # the config field that says where it lives, e.g. upstream.api_key_file
    save_to: str | None  # None: it cannot be saved from here (e.g. an environment variable)
    reason: str  # why it is asked ("the file does not exist")

    kind: Literal["secret"] = "secret"

    def text(self) -> str:
        where = f"; it will be saved to {self.save_to} (0600)" if self.save_to else ""
        return f"The Anthropic API key is needed ({self.reason}){where}."


Question = HostKeyQuestion | ConsentQuestion | SecretQuestion


@runtime_checkable
class Interaction(Protocol):
    """How the core asks a person. Every method may raise Cancelled (the run stops cleanly).

    Called from the thread that runs the session's method (a worker thread in
    the wizard): implementations that touch a UI must hand over to its thread
    and block until answered.
    """

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        """True: trust and record this key (first contact only)."""
        ...

    def consent(self, question: ConsentQuestion) -> bool:
        """True: go ahead with the change; False stops the run (exit 8) before it is made."""
        ...

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        """The secret, or None to stop (the run fails with the config error it would have had)."""
        ...

    def cancelled(self, error: Cancelled) -> None:
        """The run stopped because it was cancelled (``error.step``: where); show it, ask nothing."""
        ...


class NonInteractive:
    """Answers from flags only; anything else fails with the flag that answers it.

    ``yes`` answers every :class:`ConsentQuestion` (without it: Declined naming
    ``--yes``, exit 8); ``accept_host_key`` is the one fingerprint to trust on
    first contact (any other key: no, so the connector raises
    :class:`~claudegate.errors.HostKeyUnknown`, exit 4, naming
    ``--accept-host-key SHA256:...``). Secrets are never asked for: the config
    must point at them.
    """

    def __init__(self, *, yes: bool = False, accept_host_key: str | None = None) -> None:
        self.yes = yes
        self.accept_host_key = accept_host_key

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        # A no makes the connector raise HostKeyUnknown (exit 4), whose hint names
        # --accept-host-key with this fingerprint and how to compare it on the server.
        return self.accept_host_key is not None and self.accept_host_key == question.fingerprint

    def consent(self, question: ConsentQuestion) -> bool:
        if self.yes:
            return True
        raise Declined(
            f"{question.text()} (needs a yes, and there is no terminal to ask on)",
            flag=question.flag,
            hint=f"re-run with {question.flag} to agree",
        )

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        return None

    def cancelled(self, error: Cancelled) -> None:
        return None
