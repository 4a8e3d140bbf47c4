"""A rollback of several hosts (``hosts:``) that never leaves them on two releases without saying so.

::

    rollback host 1, host 2, ... in rollout order (each smoke-tested), stopping at the first that fails
      -> the hosts this run had already rolled back are rolled forward again (a second rollback
         swaps ``current`` and ``previous`` back: the release they served a minute ago, smoke-tested)
      -> every host's release is read again, and the error says which host serves which
         release and, if they still differ, the one command that brings them back to one

Rolling forward is the safe automatic fix: those hosts go back to what they
served before this rollback, whose files and images are still on them, and
which the hosts not reached yet still serve. (Rolling the failing host's
neighbours *back* instead would mean going on with a rollback that has just
failed.) What it cannot fix (a host whose roll forward fails too, or that
cannot be read) is named with its release, and ``claudegate deploy`` is
the command that puts every host on one release again (the config's).

The per-host rollback and the read of a host's release are passed in
(:func:`claudegate.deploy.api.rollback`, :func:`claudegate.deploy.serving.current_release`),
so the decisions here are tested with canned facts (tests/deploy/test_fleet_rollback.py).
"""

from __future__ import annotations

from collections.abc import Callable

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.control.progress import Reporter, StepEvent, null_reporter
from claudegate.deploy.every_host import EveryHost, FleetCommandFailed, HostRun
from claudegate.deploy.fleet import host_name
from claudegate.deploy.results import DeployResult
from claudegate.errors import Cancelled, ClaudegateError

__all__ = ["rollback_fleet"]

Connect = Callable[[DeployConfig], Connector]
RollBack = Callable[[DeployConfig, Connector], DeployResult]
ReadCurrent = Callable[[DeployConfig, Connector], "str | None"]


def rollback_fleet(
    cfg: DeployConfig,
    connect: Connect,
    *,
    roll_back: RollBack,
    read_current: ReadCurrent,
    reporter: Reporter | None = None,
    config_path: str = "deploy.yaml",
) -> EveryHost[DeployResult]:
    """Roll every host of ``cfg.fleet`` back, in rollout order; see the module docstring.

    Call it after the dry run showed every host goes back to one release
    (:func:`~claudegate.deploy.every_host.same_release_everywhere`). Raises
    :class:`~claudegate.deploy.every_host.FleetCommandFailed` (the failing
    host's exit code) when a host fails.
    """
    say = reporter or null_reporter
    hosts = cfg.fleet
    total = len(hosts)

    def label(index: int) -> str:
        return f"host {index + 1}/{total} ({host_name(hosts[index])})"

    def on(index: int, fn: Callable[[DeployConfig, Connector], object]) -> object:
        host_cfg = cfg.for_host(hosts[index])
        connector = connect(host_cfg)
        try:
            return fn(host_cfg, connector)
        finally:
            connector.close()

    def note(message: str) -> None:
        say(StepEvent(kind="note", step="", title="", index=0, total=0, message=message))

    done: list[tuple[int, DeployResult]] = []
    for index in range(total):
        note(f"host {index + 1}/{total}: {host_name(hosts[index])}")
        try:
            result = on(index, roll_back)
        except Cancelled:
            raise
        except ClaudegateError as exc:
            raise _after_failure(index, exc, done, on, label, note, roll_back, read_current, total,
                                 config_path) from exc  # fmt: skip
        assert isinstance(result, DeployResult)
        done.append((index, result))
    runs = tuple(HostRun(i + 1, total, host_name(hosts[i]), result=r) for i, r in done)
    return EveryHost("rollback", runs)


def _after_failure(
    failed: int,
    exc: ClaudegateError,
    done: list[tuple[int, DeployResult]],
    on: Callable[[int, Callable[[DeployConfig, Connector], object]], object],
    label: Callable[[int], str],
    note: Callable[[str], None],
    roll_back: RollBack,
    read_current: ReadCurrent,
    total: int,
    config_path: str,
) -> FleetCommandFailed:
    lines = [f"rollback failed on {label(failed)}: {exc}"]
    for index, result in reversed(done):
        went_to, came_from = result.release_id, result.previous_release
        note(f"rolling {label(index)} forward again to {came_from}: {label(failed)} failed")
        try:
            on(index, roll_back)  # a second rollback swaps current and previous back
        except Cancelled:
            raise
        except ClaudegateError as problem:
            lines.append(f"{label(index)} had rolled back to {went_to}; rolling it forward again FAILED: {problem}")
        else:
            lines.append(f"{label(index)} had rolled back to {went_to}: rolled forward again to {came_from}"
                         " (smoke-tested)")  # fmt: skip
    if failed + 1 < total:
        lines.append(f"not started: {', '.join(label(i) for i in range(failed + 1, total))}")
    serving: dict[int, str] = {}
    for index in range(total):
        try:
            current = on(index, read_current)
        except Cancelled:
            raise
        except ClaudegateError as problem:
            serving[index] = f"unknown ({problem})"
        else:
            serving[index] = str(current) if current else "nothing"
    lines.append("now: " + "; ".join(f"{label(i)} on {rid}" for i, rid in serving.items()))
    releases = set(serving.values())
    if len(releases) == 1 and not next(iter(releases)).startswith("unknown"):
        lines.append(f"every host serves release {releases.pop()}, as before this rollback")
        hint = (exc.hint + "; " if exc.hint else "") + "fix the failing host, then run claudegate rollback again"
    else:
        lines.append("the hosts serve DIFFERENT releases (or one could not be read)")
        hint = (
            f"claudegate deploy --config {config_path} puts every host on one release (this config's); "
            f"then fix {label(failed)} and roll back again if you still want to"
        )
    error = FleetCommandFailed("\n".join(lines), hint=hint)
    error.exit_code = exc.exit_code
    return error
