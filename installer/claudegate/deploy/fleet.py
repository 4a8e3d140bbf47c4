"""A deploy to several gateway hosts (deploy.yaml ``hosts:``): host by host, each smoke-tested.

::

    host 1 alone (it runs the schema migrations: once, before any new gateway serves)
      -> then batches of rollout.batch hosts (default 1), each host smoke-tested
      -> a host that fails stops the roll; every host this run switched is
         rolled back to the release it served before (the rollback playbook,
         smoke-tested too), the failing one was never switched
      -> every host done: each host's release read again; all on this
         roll's release -> the schema's contract steps, once (host 1)

Each host gets the one-host deploy (:func:`claudegate.deploy.api.deploy`)
with ``target`` set to it, so everything a one-host deploy guarantees holds
per host (idempotent, resumable, the old release serves until the new one
passed its smoke test). The hosts share state (``state:``): keys, usage and
limits live in PostgreSQL and Redis, and every host holds the fleet's pepper.

A one-host config never comes here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from claudegate.config.model import DeployConfig, Target
from claudegate.connectors.base import Connector
from claudegate.control.progress import Reporter, StepEvent, null_reporter
from claudegate.deploy.context import RunOptions
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.results import DeployResult
from claudegate.errors import ClaudegateError, DeployFailed
from claudegate.redact import Secret

__all__ = ["FleetResult", "deploy_fleet", "host_name", "rollout_batches"]

#: Opens (and verifies) the connection to one host; the fleet closes it.
Connect = Callable[[DeployConfig], Connector]


def host_name(host: Target) -> str:
    return host.host if host.port == 22 else f"{host.host}:{host.port}"


def rollout_batches(count: int, batch: int) -> list[list[int]]:
    """Host indexes in rollout order: the first host alone (the canary), then groups of ``batch``."""
    if count == 0:
        return []
    rest = list(range(1, count))
    return [[0]] + [rest[i : i + batch] for i in range(0, len(rest), batch)]


@dataclass(frozen=True)
class FleetResult:
    """What a deploy (or plan) did on every host, in rollout order."""

    playbook: str
    dry_run: bool
    hosts: tuple[DeployResult, ...]
    elapsed: float = 0.0
    batch: int = 1
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.hosts)

    @property
    def release_id(self) -> str | None:
        ids = {r.release_id for r in self.hosts}
        return ids.pop() if len(ids) == 1 else None

    @property
    def smoke(self) -> None:
        """Per host, in :attr:`hosts` (``plan_text`` says each one's outcome)."""
        return None

    @property
    def new_client_keys(self) -> dict[str, Secret]:
        keys: dict[str, Secret] = {}
        for result in self.hosts:
            keys.update(result.new_client_keys)
        return keys

    def plan_text(self, *, diffs: bool = True) -> str:
        verb = "plan" if self.dry_run else self.playbook
        pace = "one at a time" if self.batch == 1 else f"the first alone, then {self.batch} at a time"
        parts = [f"{verb} on {len(self.hosts)} hosts, {pace}\n"]
        for index, result in enumerate(self.hosts, 1):
            text = result.plan_text(diffs=diffs)
            if result.smoke is not None:
                counts = result.smoke.counts()
                text += f"  smoke test: {'passed' if result.smoke.ok else 'FAILED'} ({counts})\n"
            parts.append(f"[host {index}/{len(self.hosts)}] {text}")
        parts += [f"note: {n}\n" for n in self.notes]
        return "".join(parts)

    def summary_text(self, width: int = 80) -> str:
        """Each host's one-line-per-step summary (``plan`` without ``--verbose``)."""
        verb = "plan" if self.dry_run else self.playbook
        parts = [f"{verb} on {len(self.hosts)} hosts\n"]
        parts += [f"[host {i}/{len(self.hosts)}] {r.summary_text(width)}" for i, r in enumerate(self.hosts, 1)]
        parts += [f"note: {n}\n" for n in self.notes]
        return "".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "release_id": self.release_id,
            "hosts": [r.to_json() for r in self.hosts],
            "new_clients": sorted(self.new_client_keys),
            "elapsed_seconds": round(self.elapsed, 3),
            "notes": list(self.notes),
        }


@dataclass
class _Roll:
    cfg: DeployConfig
    connect: Connect
    reporter: Reporter
    stack: ExitStack
    connectors: dict[int, Connector] = field(default_factory=dict)

    def connector(self, index: int) -> Connector:
        if index not in self.connectors:
            connector = self.connect(self.cfg.for_host(self.cfg.fleet[index]))
            self.stack.callback(connector.close)
            self.connectors[index] = connector
        return self.connectors[index]

    def say(self, message: str) -> None:
        self.reporter(StepEvent(kind="note", step="", title="", index=0, total=0, message=message))


def _switched(result: DeployResult) -> bool:
    """Did this run move the host's ``releases/current``? (a host that was already there needs no rollback)"""
    return "switch" in result.changed_steps


@contextmanager
def _rolling(cfg: DeployConfig, connect: Connect, reporter: Reporter | None) -> Iterator[_Roll]:
    with ExitStack() as stack:
        yield _Roll(cfg, connect, reporter or null_reporter, stack)


def deploy_fleet(
    cfg: DeployConfig,
    connect: Connect,
    *,
    run_one: Callable[..., DeployResult],
    roll_back: Callable[..., DeployResult],
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
    options: RunOptions | None = None,
    read_current: Callable[[DeployConfig, Connector], str | None] | None = None,
    contract: Callable[[DeployConfig, Connector], str] | None = None,
) -> FleetResult:
    """Deploy ``cfg`` to every host of ``cfg.fleet`` (see the module docstring); a plan with ``dry_run``.

    ``run_one(host_cfg, connector, dry_run=, reporter=, layout=, options=)``
    deploys one host; ``roll_back(host_cfg, connector, reporter=, layout=)``
    rolls one back (the api module passes its own, so this module needs no
    import of it). Raises :class:`~claudegate.errors.DeployFailed` naming
    the failing host and what was rolled back; with ``read_current(host_cfg,
    connector)`` (the release a host serves) it also says which release
    each host serves afterwards, and the command that puts them on one when
    they differ.
    """
    started = time.monotonic()
    options = options or RunOptions("deploy")
    hosts = cfg.fleet
    done: list[tuple[int, DeployResult]] = []
    with _rolling(cfg, connect, reporter) as roll:
        for group in rollout_batches(len(hosts), cfg.rollout.batch):

            def one(index: int) -> DeployResult:
                host_cfg = cfg.for_host(hosts[index])
                roll.say(f"host {index + 1}/{len(hosts)}: {host_name(hosts[index])}")
                # Migrations once per deploy, by the first host, before any new gateway serves.
                host_options = RunOptions(
                    "deploy", refresh=options.refresh, prune=options.prune and index == 0, migrate=index == 0
                )
                return run_one(
                    host_cfg, roll.connector(index), dry_run=dry_run, reporter=roll.reporter, layout=layout,
                    options=host_options,
                )  # fmt: skip

            outcomes = _run_group(group, one)
            failed = [(i, exc) for i, exc in outcomes if isinstance(exc, BaseException)]
            done += [(i, r) for i, r in outcomes if isinstance(r, DeployResult)]
            if failed:
                index, exc = failed[0]
                if dry_run or not isinstance(exc, ClaudegateError):
                    raise exc
                others = [i for i, _ in failed[1:]]  # a batch's other failures: said, never "not started"
                raise _rolled_back(roll, cfg, index, exc, done, roll_back, layout, others, read_current) from exc
        results = tuple(r for _, r in sorted(done, key=lambda item: item[0]))
        notes: tuple[str, ...] = ()
        if contract is not None and read_current is not None and not dry_run and cfg.state is not None:
            notes = (_contract_after_roll(roll, cfg, results, read_current, contract),)
    return FleetResult(
        playbook="deploy",
        dry_run=dry_run,
        hosts=results,
        elapsed=time.monotonic() - started,
        batch=cfg.rollout.batch,
        notes=notes,
    )


def _contract_after_roll(
    roll: _Roll,
    cfg: DeployConfig,
    results: tuple[DeployResult, ...],
    read_current: Callable[[DeployConfig, Connector], str | None],
    contract: Callable[[DeployConfig, Connector], str],
) -> str:
    """The schema's contract steps, once every host serves this roll's release (read again, not assumed).

    Only after a roll that succeeded on every host: a contract step removes
    what the previous release needs, so it must not run while any host may
    still serve (or roll back to) that release. A failed roll never gets
    here. A host that cannot be read, or serves another release, leaves the
    contract steps for the next deploy; a failing contract step is a
    WARNING, never a rollback (every host already serves the new release).
    """
    release = results[0].release_id if results else None
    serving = _serving_now(roll, cfg, read_current)
    if release is None or any(current != release for current in serving.values()):
        now = "; ".join(f"host {i + 1}/{len(cfg.fleet)} on {serving[i]}" for i in sorted(serving))
        return (f"WARNING: the schema's contract steps were not run: not every host serves release {release} ({now});"
                " the next claudegate deploy that leaves every host on one release runs them")  # fmt: skip
    roll.say("every host serves the new release: the schema's contract steps (migrate --contract)")
    try:
        said = contract(cfg.for_host(cfg.fleet[0]), roll.connector(0))
    except ClaudegateError as exc:
        return (f"WARNING: the schema's contract steps failed ({exc}); every host serves release {release};"
                " the next claudegate deploy tries them again")  # fmt: skip
    return f"migrate --contract (every host serves release {release}): {said or 'schema up to date'}"


def _run_group(group: list[int], one: Callable[[int], DeployResult]) -> list[tuple[int, DeployResult | BaseException]]:
    def guarded(index: int) -> tuple[int, DeployResult | BaseException]:
        try:
            return index, one(index)
        except BaseException as exc:  # handed back, re-raised by the caller
            return index, exc

    if len(group) == 1:
        return [guarded(group[0])]
    with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="claudegate-host") as pool:
        return list(pool.map(guarded, group))


def _rolled_back(
    roll: _Roll,
    cfg: DeployConfig,
    failed: int,
    exc: ClaudegateError,
    done: list[tuple[int, DeployResult]],
    roll_back: Callable[..., DeployResult],
    layout: HostLayout | None,
    others: list[int],
    read_current: Callable[[DeployConfig, Connector], str | None] | None = None,
) -> DeployFailed:
    hosts = cfg.fleet
    name = host_name(hosts[failed])
    back: list[str] = []
    kept: list[str] = []
    for index, result in reversed(done):
        if not _switched(result):
            continue
        where = host_name(hosts[index])
        roll.say(f"rolling {where} back: {name} failed")
        try:
            roll_back(cfg.for_host(hosts[index]), roll.connector(index), reporter=roll.reporter, layout=layout)
        except ClaudegateError as problem:
            kept.append(f"{where} ({problem})")
        else:
            back.append(where)
    parts = [f"host {failed + 1}/{len(hosts)} ({name}) failed: {exc}"]
    if back:
        parts.append(f"rolled back to the release they served before: {', '.join(back)}")
    if kept:
        parts.append(f"NOT rolled back (they serve the new release): {'; '.join(kept)}")
    if others:
        parts.append(f"also failed (in the same batch): {', '.join(host_name(hosts[i]) for i in others)}")
    seen = {failed, *others, *(j for j, _ in done)}
    untouched = [host_name(h) for i, h in enumerate(hosts) if i not in seen]
    if untouched:
        parts.append(f"not started: {', '.join(untouched)}")
    hint = (exc.hint + "; " if exc.hint else "") + "fix the failing host, then deploy again (the roll starts over)"
    if read_current is not None:
        serving = _serving_now(roll, cfg, read_current)
        parts.append("now: " + "; ".join(f"host {i + 1}/{len(hosts)} ({host_name(hosts[i])}) on {rid}"
                                         for i, rid in serving.items()))  # fmt: skip
        if len(set(serving.values())) > 1:
            origin = cfg.origin
            parts.append("the hosts serve DIFFERENT releases (or one could not be read)")
            hint = (
                f"claudegate deploy --config {origin.source if origin else 'deploy.yaml'} puts every host on "
                "this config's release once the failing host is fixed; until then they serve two releases"
            )
    return DeployFailed("\n".join(parts), hint=hint)


def _serving_now(
    roll: _Roll, cfg: DeployConfig, read_current: Callable[[DeployConfig, Connector], str | None]
) -> dict[int, str]:
    """Which release each host serves, read again after a failed roll (``unknown (why)`` if it cannot be)."""
    serving: dict[int, str] = {}
    for index, host in enumerate(cfg.fleet):
        try:
            current = read_current(cfg.for_host(host), roll.connector(index))
        except ClaudegateError as problem:
            serving[index] = f"unknown ({problem})"
        else:
            serving[index] = current or "nothing"
    return serving
