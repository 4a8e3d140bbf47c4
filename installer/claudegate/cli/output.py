"""What the CLI prints: progress and errors to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
import time
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


def each_host(runs: Any, *, json_out: bool, text: Any = None, data: Any = None) -> None:
    """A day-2 command's result on every host (``EveryHost``): each under its header, then raise its error.

    ``text``/``data`` render one host's result (default: its ``text()``/``to_json()``).
    A host that failed is shown where it belongs; after everything is printed,
    the error naming the failing hosts is raised (its exit code: the first failure's).
    """
    if json_out:
        print(json.dumps(runs.to_json(data or (lambda r: r.to_json())), indent=2, default=str))
    else:
        print(runs.text(text or (lambda r: r.text())), end="")
    error = runs.error()
    if error is not None:
        raise error


def deploy_text(result: Any) -> str:
    """A playbook's result as ``deploy_result`` prints it (without the new keys: day-2 playbooks make none)."""
    text: str = result.plan_text(diffs=result.dry_run)
    if result.smoke is not None:
        text += "\n" + result.smoke.table()
    return text


class StepPrinter:
    """Progress of a playbook on stderr: one line per step as it starts and ends.

    Sub-step ``work`` events come often (every poll of a wait, every build
    line); a line is printed when what is being done changes, or every
    ``every`` seconds while it goes on, and always for a heartbeat (the
    engine's "still ..." after a quiet spell): so stderr, a terminal or a CI
    log alike, gets a line at least every 5 s. Smoke ``check`` events print one line each.
    """

    def __init__(self, every: float = 4.0, *, brief: bool = False) -> None:
        self.every = every
        #: Only what shows the run is alive or failed (work, heartbeats, notes, failures): the steps and
        #: their changes are summed up once at the end (``plan`` without --verbose).
        self.brief = brief
        self._last_work = ""
        self._last_at = 0.0

    def __call__(self, event: Any) -> None:
        where = f"[{event.index}/{event.total}]"
        if self.brief and event.kind in ("start", "plan", "finish"):
            return
        if event.kind == "work":
            self._work(event)
        elif event.kind == "check":
            mark = {"pass": "✓", "fail": "✗", "skip": "-"}.get(event.status, "?")
            err(f"  {mark} {event.message}: {event.detail}")
        elif event.kind == "start":
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


    def _work(self, event: Any) -> None:
        now = time.monotonic()
        if getattr(event, "heartbeat", False):
            self._last_at = now
            err(f"      {event.message} ({event.done:.0f} s in {event.title})")
            return
        if event.message == self._last_work and now - self._last_at < self.every:
            return
        self._last_work, self._last_at = event.message, now
        err(f"      {event.message}{_amount(event)}")


def _amount(event: Any) -> str:
    if event.done is None:
        return ""
    if event.unit == "bytes":
        done = f"{event.done / 1e6:.1f} MB"
        return f" ({done} of {event.expected / 1e6:.1f} MB)" if event.expected else f" ({done})"
    if event.unit == "s":
        return f" ({event.done:.0f} s of at most {event.expected:.0f} s)" if event.expected else f" ({event.done:.0f} s)"
    return f" ({event.done:g} {event.unit})"


def check_line(check: Any) -> None:
    mark = {"pass": "✓", "fail": "✗", "skip": "-"}.get(check.status, "?")
    err(f"  {mark} {check.name}: {check.detail}")


def smoke_report(report: Any, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())


def deploy_result(result: Any, *, json_out: bool, brief: bool = False) -> None:
    """The result on stdout; ``brief`` (a plan without --verbose): one line per changing step."""
    if json_out:
        print(json.dumps(result.to_json(), indent=2, default=str))
        return
    if brief:
        print(result.summary_text(), end="")
        if result.changed:
            print("every change and the diff of each file: claudegate plan --verbose")
        return
    print(result.plan_text(diffs=result.dry_run))
    if result.smoke is not None:
        print(result.smoke.table())
    for name, key in result.new_client_keys.items():
        # Shown once, here; a copy is in state_dir/keys (0600).
        print(f"new key for {name}: {key.reveal()}")
