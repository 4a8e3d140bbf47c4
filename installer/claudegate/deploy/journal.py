"""The step journal on the host (``state/journal.json``, root 0600).

It records, for the run in progress, which release it deploys, the release
that served before it (``fallback``: where a failed smoke test switches
back to), and which steps finished. Every step re-checks the host anyway
(steps are idempotent), so what the journal adds after an interrupted run is
what the host alone cannot tell:

- which release was the last *good* one. After a run that switched nginx
  and then lost its connection, ``releases/current`` points at a release
  that never passed its smoke test; the rerun must still switch back to the
  journal's ``fallback`` if it fails;
- that a resume is happening, and from where (reported to the operator).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Journal"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Journal:
    playbook: str
    release: str | None
    fallback: str | None
    started_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    steps: dict[str, str] = field(default_factory=dict)  # step -> "changed" | "unchanged"
    finished: bool = False
    outcome: str = ""  # "ok", or what failed

    def mark(self, step: str, changed: bool) -> None:
        self.steps[step] = "changed" if changed else "unchanged"
        self.updated_at = _now()

    def finish(self, outcome: str) -> None:
        self.finished = True
        self.outcome = outcome
        self.updated_at = _now()

    def stop(self, outcome: str) -> None:
        """Record why the run stopped early; it stays unfinished, so the next run resumes it."""
        self.outcome = outcome
        self.updated_at = _now()

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Journal | None:
        if not data:
            return None
        try:
            raw: dict[str, Any] = json.loads(data)
            return cls(
                playbook=str(raw["playbook"]),
                release=raw.get("release"),
                fallback=raw.get("fallback"),
                started_at=str(raw.get("started_at", "")),
                updated_at=str(raw.get("updated_at", "")),
                steps={str(k): str(v) for k, v in (raw.get("steps") or {}).items()},
                finished=bool(raw.get("finished")),
                outcome=str(raw.get("outcome", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # A journal we cannot read is treated as absent: the host's own
            # state (symlinks, containers) still decides what each step does.
            return None

    @property
    def interrupted(self) -> bool:
        return not self.finished
