"""What the CLI prints: progress and errors to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from claudegate.errors import ClaudegateError


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def error(exc: ClaudegateError) -> None:
    err(f"error: {exc}")
    if exc.hint:
        err(f"fix: {exc.hint}")


def status_report(report: Any, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(report.text())


class StepPrinter:
    """Progress of a playbook on stderr: one line per step as it starts and ends."""

    def __call__(self, event: Any) -> None:
        where = f"[{event.index}/{event.total}]"
        if event.kind == "start":
            err(f"{where} {event.title} …")
        elif event.kind == "plan" and event.changes:
            for change in event.changes:
                err(f"      + {change}")
        elif event.kind == "note" and event.message:
            err(f"      {event.message}")
        elif event.kind == "finish":
            err(f"{where} {event.title}: {'changed' if event.changed else 'no changes'} ({event.elapsed:.1f}s)")
        elif event.kind == "fail":
            err(f"{where} {event.title}: FAILED ({event.elapsed:.1f}s) {event.message}")


def check_line(check: Any) -> None:
    mark = {"pass": "✓", "fail": "✗", "skip": "-"}.get(check.status, "?")
    err(f"  {mark} {check.name}: {check.detail}")


def smoke_report(report: Any, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())


def deploy_result(result: Any, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    print(result.plan_text(diffs=result.dry_run))
    if result.smoke is not None:
        print(result.smoke.table())
    for name, key in result.new_client_keys.items():
        # Shown once, here; a copy is in state_dir/keys (0600).
        print(f"new key for {name}: {key.reveal()}")
