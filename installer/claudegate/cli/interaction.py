"""The CLI's answers to the core's questions: prompts on a terminal, flags otherwise.

On a terminal each question is shown on stderr and answered on stdin. Without
one (CI, a pipe, cron) nothing is ever prompted: a question that a flag
answers (``--yes``, ``--accept-host-key SHA256:...``) is answered by it, any
other ends the run with :class:`~claudegate.errors.Declined` naming that flag
(exit 8), as certbot's non-interactive display does.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from typing import TextIO

from claudegate.control.interaction import (
    ConsentQuestion,
    HostKeyQuestion,
    NonInteractive,
    SecretQuestion,
)
from claudegate.errors import Cancelled
from claudegate.redact import Secret

__all__ = ["CliInteraction"]


class CliInteraction:
    """Prompts when ``tty`` (default: stdin and stderr are terminals), else :class:`NonInteractive`."""

    def __init__(
        self,
        *,
        yes: bool = False,
        accept_host_key: str | None = None,
        tty: bool | None = None,
        read_line: Callable[[str], str] | None = None,
        read_secret: Callable[[str], str] | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.flags = NonInteractive(yes=yes, accept_host_key=accept_host_key)
        self.tty = tty if tty is not None else (sys.stdin.isatty() and sys.stderr.isatty())
        self._read_line = read_line or _input
        self._read_secret = read_secret or (lambda prompt: getpass.getpass(prompt, stream=self._out))
        self._out = out or sys.stderr

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def confirm_host_key(self, question: HostKeyQuestion) -> bool:
        if not self.tty or self.flags.accept_host_key is not None:
            return self.flags.confirm_host_key(question)
        self._say(
            f"The authenticity of host {question.where} can't be established.\n"
            f"  {question.key_type} key fingerprint: {question.fingerprint}\n"
            f"  Compare it with what the server itself prints (its console, not this connection):\n"
            f"    {question.compare_command}\n"
            f"  A yes records it in {question.known_hosts}."
        )
        answer = self._read_line("Trust this host key? Type yes or paste the fingerprint [no]: ").strip()
        return answer.lower() in ("yes", "y") or answer == question.fingerprint

    def consent(self, question: ConsentQuestion) -> bool:
        if self.flags.yes or not self.tty:
            return self.flags.consent(question)
        answer = self._read_line(f"{question.text()} [y/N]: ").strip().lower()
        return answer in ("y", "yes")

    def ask_secret(self, question: SecretQuestion) -> Secret | None:
        if not self.tty:
            return None
        self._say(question.text())
        value = self._read_secret("Anthropic API key (not shown): ")
        return Secret(value) if value.strip() else None

    def cancelled(self, error: Cancelled) -> None:
        # The command's error handler prints the Cancelled error (where, and how to resume) once.
        return None


def _input(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()  # "" at the end of input: the default answer, no
