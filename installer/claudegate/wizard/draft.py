"""The half-finished wizard, saved after each screen so ``claudegate init`` can resume it.

The draft holds every answer except the Anthropic key (which is never
written anywhere but its 0600 key file). It lives beside the tool's other
files, mode 0600 (it names servers and paths).
"""

from __future__ import annotations

import json
from pathlib import Path

from claudegate.private_files import write_private
from claudegate.wizard.form import WizardState

__all__ = ["clear_draft", "draft_path", "load_draft", "save_draft"]


def draft_path() -> Path:
    from claudegate.config.model import config_home

    return config_home() / "wizard-draft.json"


def save_draft(state: WizardState, path: Path | None = None) -> Path:
    path = path or draft_path()
    return write_private(path, json.dumps(state.to_draft(), indent=2, sort_keys=True).encode())


def load_draft(path: Path | None = None) -> WizardState | None:
    """The saved draft, or None when there is none (or it cannot be read: a draft is a convenience)."""
    path = path or draft_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != 1:
        return None
    return WizardState.from_draft(data)


def clear_draft(path: Path | None = None) -> None:
    (path or draft_path()).unlink(missing_ok=True)
