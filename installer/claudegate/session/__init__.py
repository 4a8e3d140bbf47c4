"""The core both front ends drive: a :class:`Session` on a config, with an interaction.

Modules (each importable alone; none imports textual, rich or typer):

- :mod:`.core` -- :class:`Session`: plan/deploy/rollback/status/logs/smoke_test/
  renew/uninstall/render/audit, day 2 (usage, list/create/rotate/revoke_client,
  backup, restore), ``test_connection``, ``cancel``;
- :mod:`claudegate.control.interaction` -- the questions
  (:class:`HostKeyQuestion`, :class:`ConsentQuestion`, :class:`SecretQuestion`),
  the :class:`Interaction` protocol and :class:`NonInteractive` (flags only);
- :mod:`.scripted` -- :class:`ScriptedInteraction` and :class:`RecordingInteraction` (tests);
- :mod:`claudegate.control.cancel` -- :class:`CancelToken` and the one
  cancellable ``sleep``;
- :mod:`claudegate.control.controls` -- how a session's token and
  interaction reach the steps;
- :mod:`.connection` -- "Test connection": :class:`ConnectionReport`;
- :mod:`.document` -- configs built in code: ``validate_document`` -> Problems,
  ``config_from_document``, ``document_yaml``;
- :mod:`.examples` -- the commented example configs shipped in the wheel.

Progress: one event type, :class:`claudegate.control.progress.StepEvent`
(re-exported here as :data:`ProgressEvent`), for steps, sub-step ``work`` and
smoke ``check``\\s.

The run controls (cancel, questions, progress) live in
:mod:`claudegate.control`, below the deploy and the probes that use them.
"""

from __future__ import annotations

from claudegate.control.cancel import CancelToken
from claudegate.control.interaction import (
    ConsentQuestion,
    HostKeyQuestion,
    Interaction,
    NonInteractive,
    Question,
    SecretQuestion,
)
from claudegate.control.progress import StepEvent as ProgressEvent
from claudegate.session.connection import ConnectionReport, PortUse
from claudegate.session.core import Session
from claudegate.session.document import config_from_document, document_yaml, validate_document
from claudegate.session.scripted import RecordingInteraction, ScriptedInteraction

__all__ = [
    "CancelToken",
    "ConnectionReport",
    "ConsentQuestion",
    "HostKeyQuestion",
    "Interaction",
    "NonInteractive",
    "PortUse",
    "ProgressEvent",
    "Question",
    "RecordingInteraction",
    "ScriptedInteraction",
    "SecretQuestion",
    "Session",
    "config_from_document",
    "document_yaml",
    "validate_document",
]
