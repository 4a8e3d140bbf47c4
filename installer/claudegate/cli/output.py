"""What the CLI prints: progress and errors to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from claudegate.errors import ClaudegateError


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def error(exc: ClaudegateError) -> None:
    err(f"error: {exc}")
    if exc.hint:
        err(f"fix: {exc.hint}")


def _plain(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def data(value: Any, *, json_out: bool) -> None:
    value = _plain(value)
    if json_out or not isinstance(value, dict):
        print(json.dumps(value, indent=2, default=str))
        return
    width = max((len(k) for k in value), default=0)
    for key, item in value.items():
        shown = item if isinstance(item, str | int | float) or item is None else json.dumps(item, default=str)
        print(f"{key:<{width}}  {shown}")


class StepPrinter:
    """Progress of a playbook, one line per step, with timings."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def __call__(self, event: str, step: str, detail: str = "") -> None:
        if event == "start":
            self._started[step] = time.monotonic()
            err(f"  … {step}{': ' + detail if detail else ''}")
        else:
            took = time.monotonic() - self._started.get(step, time.monotonic())
            mark = {"done": "✓", "changed": "✓", "unchanged": "·", "failed": "✗", "skipped": "-"}.get(event, "·")
            err(f"  {mark} {step} ({took:.1f}s){': ' + detail if detail else ''}")


def check_line(check: Any) -> None:
    mark = {"pass": "✓", "fail": "✗", "skip": "-"}.get(check.status, "?")
    err(f"  {mark} {check.name}: {check.detail}")


def smoke_report(report: Any, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())


def deploy_result(result: Any, *, json_out: bool, state_dir: Path) -> None:
    if json_out:
        print(json.dumps(_plain(result), indent=2, default=str))
        return
    summary = getattr(result, "summary", None)
    print(summary() if callable(summary) else result)
