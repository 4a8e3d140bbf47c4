"""A day-2 command on every host of ``hosts:`` (status, logs, check, smoke-test, audit, backup, rollback,
renew, uninstall).

::

    runs = on_every_host(cfg, connect, "status", lambda host_cfg, connector: status(host_cfg, connector))
    runs.ok            # every host answered
    runs.failed        # the hosts that did not, each with its error
    runs.error()       # one ClaudegateError naming every failing host (None when all went well)

Each host gets the one-host function with ``target`` set to it, through
its own verified connection (opened, used, closed: one at a time, in
rollout order). A host that fails (unreachable, a changed host key, a
failing step) is recorded by name with its error and the next host is
still done: an operator who asks "how is my fleet" must not lose the
answer for host 3 because host 2 is down. Only a cancel stops the loop.

What is not a :class:`~claudegate.errors.ClaudegateError` (a bug) is not
swallowed either: it propagates. :func:`for_every_host` is the same loop
without an SSH connection (the smoke test reaches each host over HTTPS).

:func:`first_answering` is for what any one host can answer for the whole
fleet (the client keys, in the shared PostgreSQL): the first host, in
rollout order, that answers does; the hosts before it that did not are
named beside the answer, and only when no host answers does it fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.control.progress import Reporter, StepEvent
from claudegate.deploy.fleet import host_name
from claudegate.deploy.results import DeployResult
from claudegate.errors import Cancelled, ClaudegateError

__all__ = [
    "Answered",
    "EveryHost",
    "FleetCommandFailed",
    "HostRun",
    "first_answering",
    "for_every_host",
    "on_every_host",
    "same_release_everywhere",
]

T = TypeVar("T")

#: Opens (and verifies) the connection to one host; the caller of ``fn`` closes it.
Connect = Callable[[DeployConfig], Connector]


class FleetCommandFailed(ClaudegateError):
    """A day-2 command failed on some hosts of ``hosts:`` (each named; the others were done)."""


@dataclass(frozen=True)
class HostRun(Generic[T]):
    """One host's outcome: its result, or the error it failed with."""

    index: int  # 1-based, rollout order
    total: int
    host: str
    result: T | None = None
    error: ClaudegateError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return f"host {self.index}/{self.total} ({self.host})"

    def failure_text(self) -> str:
        assert self.error is not None
        hint = f" (fix: {self.error.hint})" if self.error.hint else ""
        return f"{self.label}: FAILED: {self.error}{hint}"


@dataclass(frozen=True)
class EveryHost(Generic[T]):
    """A day-2 command's outcome on every host, in rollout order."""

    command: str
    runs: tuple[HostRun[T], ...]
    #: What holds across the hosts (e.g. "every host serves the certificate with serial ...").
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def failed(self) -> tuple[HostRun[T], ...]:
        return tuple(r for r in self.runs if not r.ok)

    @property
    def results(self) -> tuple[T, ...]:
        """The results of the hosts that succeeded, in rollout order."""
        return tuple(r.result for r in self.runs if r.ok and r.result is not None)

    def text(self, render: Callable[[T], str]) -> str:
        """Every host under its own ``[host i/n] name`` header; a failed host says its error there."""
        parts = []
        for run in self.runs:
            if run.ok and run.result is not None:
                body = render(run.result).rstrip("\n")
                parts.append(f"[{run.label}]\n{body}\n")
            else:
                parts.append(f"[{run.label}] {run.failure_text().split(': ', 1)[1]}\n")
        parts += [f"note: {note}\n" for note in self.notes]
        return "".join(parts)

    def to_json(self, render: Callable[[T], Any]) -> dict[str, Any]:
        hosts = []
        for run in self.runs:
            entry: dict[str, Any] = {"host": run.host, "index": run.index, "ok": run.ok}
            if run.ok and run.result is not None:
                entry["result"] = render(run.result)
            elif run.error is not None:
                entry["error"] = str(run.error)
                entry["hint"] = run.error.hint
            hosts.append(entry)
        return {"command": self.command, "ok": self.ok, "hosts": hosts, "notes": list(self.notes)}

    def error(self) -> FleetCommandFailed | None:
        """An error naming every failing host (exit code: the first failure's), or None when all went well."""
        failed = self.failed
        if not failed:
            return None
        done = [r.label for r in self.runs if r.ok]
        lines = [f"{self.command} failed on {len(failed)} of {len(self.runs)} hosts:"]
        lines += [f"  {r.failure_text()}" for r in failed]
        if done:
            lines.append(f"done on: {', '.join(done)}")
        error = FleetCommandFailed("\n".join(lines))
        first = failed[0].error
        assert first is not None
        error.exit_code = first.exit_code
        return error


def on_every_host(
    cfg: DeployConfig,
    connect: Connect,
    command: str,
    fn: Callable[[DeployConfig, Connector], T],
    *,
    reporter: Reporter | None = None,
) -> EveryHost[T]:
    """``fn(host_cfg, connector)`` on every host of ``cfg.fleet``, one at a time; see the module docstring."""

    def one(host_cfg: DeployConfig) -> T:
        connector = connect(host_cfg)
        try:
            return fn(host_cfg, connector)
        finally:
            connector.close()

    return for_every_host(cfg, command, one, reporter=reporter)


def for_every_host(
    cfg: DeployConfig, command: str, fn: Callable[[DeployConfig], T], *, reporter: Reporter | None = None
) -> EveryHost[T]:
    """``fn(host_cfg)`` on every host of ``cfg.fleet`` (no SSH connection: e.g. the smoke test, over HTTPS)."""
    hosts = cfg.fleet
    runs: list[HostRun[T]] = []
    for index, host in enumerate(hosts, 1):
        name = host_name(host)
        if reporter is not None:
            reporter(StepEvent(kind="note", step="", title="", index=0, total=0,
                               message=f"host {index}/{len(hosts)}: {name}"))  # fmt: skip
        try:
            result = fn(cfg.for_host(host))
        except Cancelled:
            raise
        except ClaudegateError as exc:
            runs.append(HostRun(index, len(hosts), name, error=exc))
            continue
        runs.append(HostRun(index, len(hosts), name, result=result))
    return EveryHost(command, tuple(runs))


def same_release_everywhere(planned: EveryHost[DeployResult]) -> None:
    """A fleet rollback's check before it changes any host: every host can roll back, to one release.

    ``planned`` is the rollback's dry run on every host. A host with no
    previous release (it never switched: e.g. the host a failed roll stopped
    at), or hosts whose previous releases differ, would leave the fleet
    serving two releases: refused, naming the hosts, before any is touched.
    """
    error = planned.error()
    if error is not None:
        error.message += "\nnothing was rolled back: every host must be able to go back to the same release"
        raise error
    targets: dict[str, list[str]] = {}
    for run in planned.runs:
        assert run.result is not None
        targets.setdefault(run.result.release_id or "none", []).append(run.label)
    if len(targets) > 1:
        which = "; ".join(f"{', '.join(labels)} -> release {rid}" for rid, labels in targets.items())
        raise FleetCommandFailed(
            f"the hosts would roll back to different releases ({which}); nothing was rolled back",
            hint="deploy the release you want on every host instead (claudegate deploy)",
        )


@dataclass(frozen=True)
class Answered(Generic[T]):
    """The answer of the first host that gave one, and the hosts before it that did not."""

    served: HostRun[T]
    skipped: tuple[HostRun[T], ...] = ()

    @property
    def result(self) -> T:
        assert self.served.result is not None
        return self.served.result

    def note(self) -> str:
        """``answered by host 2/2 (b); host 1/2 (a) did not answer: <error>``."""
        text = f"answered by {self.served.label}"
        for run in self.skipped:
            assert run.error is not None
            text += f"; {run.label} did not answer: {run.error}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.served.host,
            "index": self.served.index,
            "skipped": [{"host": r.host, "index": r.index, "error": str(r.error)} for r in self.skipped],
        }


def first_answering(
    cfg: DeployConfig,
    connect: Connect,
    command: str,
    fn: Callable[[DeployConfig, Connector], T],
    *,
    reporter: Reporter | None = None,
    retry_after_sent: bool = True,
) -> Answered[T]:
    """``fn(host_cfg, connector)`` on the first host of ``cfg.fleet`` that answers, in rollout order.

    A host that cannot be connected to (unreachable, a changed host key) is
    skipped, and so is one whose ``fn`` fails, unless ``retry_after_sent``
    is False: a command that changes something (creating a key) is sent to
    one host only, and tried on the next only when the connection failed
    before anything was sent (a second try could make a second key). Raises
    :class:`FleetCommandFailed` naming every host's error when none answers.
    """
    hosts = cfg.fleet
    tried: list[HostRun[T]] = []
    for index, host in enumerate(hosts, 1):
        name = host_name(host)
        if reporter is not None:
            reporter(StepEvent(kind="note", step="", title="", index=0, total=0,
                               message=f"host {index}/{len(hosts)}: {name}"))  # fmt: skip
        host_cfg = cfg.for_host(host)
        try:
            connector = connect(host_cfg)
        except Cancelled:
            raise
        except ClaudegateError as exc:
            tried.append(HostRun(index, len(hosts), name, error=exc))
            continue
        try:
            result = fn(host_cfg, connector)
        except Cancelled:
            raise
        except ClaudegateError as exc:
            if not retry_after_sent:
                if tried:
                    exc.message += "\n" + Answered(HostRun(index, len(hosts), name), tuple(tried)).note().replace(
                        "answered by", "tried on", 1)  # fmt: skip
                raise
            tried.append(HostRun(index, len(hosts), name, error=exc))
            continue
        finally:
            connector.close()
        return Answered(HostRun(index, len(hosts), name, result=result), tuple(tried))
    error = EveryHost(command, tuple(tried)).error()
    assert error is not None
    error.message += "\nno host answered"
    raise error
