"""The core both front ends drive: a :class:`Session` on a config, with an interaction.

Modules (each importable alone; none imports textual, rich or typer):

- :mod:`.core` -- :class:`Session`: plan/deploy/rollback/status/logs/smoke_test/
  keys/renew/uninstall/render, ``test_connection``, ``cancel``;
- :mod:`.interaction` -- the questions (:class:`HostKeyQuestion`,
  :class:`ConsentQuestion`, :class:`SecretQuestion`), the :class:`Interaction`
  protocol and :class:`NonInteractive` (flags only);
- :mod:`.scripted` -- :class:`ScriptedInteraction` and :class:`RecordingInteraction` (tests);
- :mod:`.cancel` -- :class:`CancelToken` and the one cancellable ``sleep``;
- :mod:`.controls` -- how a session's token and interaction reach the steps;
- :mod:`.connection` -- "Test connection": :class:`ConnectionReport`;
- :mod:`.document` -- configs built in code: ``validate_document`` -> Problems,
  ``config_from_document``, ``document_yaml``;
- :mod:`.examples` -- the commented example configs shipped in the wheel.

Progress: one event type, :class:`claudegate.deploy.progress.StepEvent`
(re-exported here as :data:`ProgressEvent`), for steps, sub-step ``work`` and
smoke ``check``\\s.

The names below are imported lazily, so that the leaf modules (``cancel``,
``interaction``, ``controls``) can be used by the deploy steps without this
package pulling the deploy facade in (no import cycle).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claudegate.deploy.progress import StepEvent as ProgressEvent
    from claudegate.session.cancel import CancelToken
    from claudegate.session.connection import ConnectionReport, PortUse
    from claudegate.session.core import Session
    from claudegate.session.document import config_from_document, document_yaml, validate_document
    from claudegate.session.interaction import (
        ConsentQuestion,
        HostKeyQuestion,
        Interaction,
        NonInteractive,
        Question,
        SecretQuestion,
    )
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

_WHERE = {
    "CancelToken": ("claudegate.session.cancel", "CancelToken"),
    "ConnectionReport": ("claudegate.session.connection", "ConnectionReport"),
    "PortUse": ("claudegate.session.connection", "PortUse"),
    "Session": ("claudegate.session.core", "Session"),
    "config_from_document": ("claudegate.session.document", "config_from_document"),
    "document_yaml": ("claudegate.session.document", "document_yaml"),
    "validate_document": ("claudegate.session.document", "validate_document"),
    "ConsentQuestion": ("claudegate.session.interaction", "ConsentQuestion"),
    "HostKeyQuestion": ("claudegate.session.interaction", "HostKeyQuestion"),
    "Interaction": ("claudegate.session.interaction", "Interaction"),
    "NonInteractive": ("claudegate.session.interaction", "NonInteractive"),
    "Question": ("claudegate.session.interaction", "Question"),
    "SecretQuestion": ("claudegate.session.interaction", "SecretQuestion"),
    "RecordingInteraction": ("claudegate.session.scripted", "RecordingInteraction"),
    "ScriptedInteraction": ("claudegate.session.scripted", "ScriptedInteraction"),
    "ProgressEvent": ("claudegate.deploy.progress", "StepEvent"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'claudegate.session' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)
