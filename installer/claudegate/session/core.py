"""The :class:`Session`: one object both front ends (CLI, wizard) drive.

::

    from claudegate.session import Session, CancelToken
    from claudegate.control.interaction import NonInteractive

    with Session.open("deploy.yaml", NonInteractive(yes=True), progress=print) as s:
        report = s.test_connection()      # SSH + host key, sudo, distro, Docker, ports 80/443
        result = s.plan()                 # every change and diff, nothing changed
        result = s.deploy()               # same connection as test_connection
        s.status(); s.logs("nginx", 50); s.smoke_test(); s.usage()
        s.list_clients(); s.create_client(client_spec("ci", rpm=60)); s.rotate_client("ci"); s.revoke_client("ci")
        s.backup("gw.cgbackup"); s.restore("gw.cgbackup")   # restore asks first, through the interaction
        s.rollback(); s.renew(); s.uninstall(keep_data=True)

A session owns, for its lifetime: the config, the interaction (questions a
person answers), the :class:`~claudegate.control.cancel.CancelToken` (any
thread may call :meth:`Session.cancel`), the progress callback (one
:class:`~claudegate.control.progress.StepEvent` type for steps, sub-step work
and smoke checks) and one verified connection, opened on first use and reused
by every method until :meth:`Session.close`.

The methods wrap the deploy facade (:mod:`claudegate.deploy.api`), the
day-2 modules (:mod:`claudegate.keys`, :mod:`claudegate.usage`,
:mod:`claudegate.backup`) and the audit without changing them: they set the
run controls (:mod:`claudegate.control.controls`) for the call, so
cancellation, questions and progress reach the steps, the wait loops and
the smoke test. The CLI's commands and the wizard's screens call these
methods, never those modules, so both ask the same questions. Every method may raise the
:class:`~claudegate.errors.ClaudegateError` tree; a cancelled run raises
:class:`~claudegate.errors.Cancelled` (exit 130) after telling the
interaction, with the host's journal saying where it stopped and the lock
released, so the next run resumes.

Methods block; the wizard calls them from a worker thread. One method runs at
a time per session (a second concurrent call waits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from claudegate.config.api_key import key_problem
from claudegate.control.cancel import CancelToken
from claudegate.control.controls import RunControls, using
from claudegate.control.interaction import ConsentQuestion, Interaction, SecretQuestion
from claudegate.errors import Cancelled, ClaudegateError, ConfigError, Declined
from claudegate.private_files import write_private

# The deploy, the audit, the day-2 modules and the config loader are imported
# inside the methods that use them: the front ends import this module at start, and
# `claudegate --help` or the wizard's first screen should not wait for the
# deploy's modules (and paramiko, ~100 ms) to load. Start-up time only: none
# of them imports this module back (tests/session/test_import_hygiene.py).

if TYPE_CHECKING:
    from datetime import date

    from claudegate.audit import AuditReport
    from claudegate.backup import BackupResult, RestoreResult
    from claudegate.config.model import Client, DeployConfig
    from claudegate.connectors.base import Connector
    from claudegate.control.progress import Reporter, StepEvent
    from claudegate.deploy.every_host import Answered, EveryHost
    from claudegate.deploy.fleet import FleetResult
    from claudegate.deploy.gateway_cli import ClientRecord
    from claudegate.deploy.layout import HostLayout
    from claudegate.deploy.results import DeployResult, RenderResult, StatusReport
    from claudegate.keys import IssuedKey
    from claudegate.redact import Secret
    from claudegate.session.connection import ConnectionReport
    from claudegate.smoke import SmokeReport
    from claudegate.usage import UsageReport

__all__ = ["Session"]

T = TypeVar("T")


class Session:
    """A config, an interaction, a cancel token, a progress callback and one verified connection."""

    def __init__(
        self,
        config: DeployConfig,
        interaction: Interaction,
        *,
        cancel: CancelToken | None = None,
        progress: Reporter | None = None,
        accept_host_key: str | None = None,
        host_keys: Mapping[str, str] | None = None,
        layout: HostLayout | None = None,
    ) -> None:
        self._config = config
        self.interaction = interaction
        self.cancel_token = cancel or CancelToken()
        self.progress = progress
        #: ``--accept-host-key``: the one first-contact key to trust without asking.
        self.accept_host_key = accept_host_key
        #: ``--accept-host-key HOST=SHA256:...``: a first-contact key per host (several hosts).
        self.host_keys = dict(host_keys or {})
        self._check_host_keys()
        self.layout = layout
        self._connector: Connector | None = None
        self._busy = threading.RLock()
        #: Several hosts: which host answered the last keys command (and which did not), else None.
        self.answered_by: Answered[Any] | None = None

    # -- building ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], interaction: Interaction, **options: Any) -> Session:
        """A session on a deploy.yaml; raises DeployConfigError (``.problems``) when it has problems."""
        from claudegate.config import load_config

        return cls(load_config(path), interaction, **options)

    @property
    def config(self) -> DeployConfig:
        return self._config

    # -- cancelling ----------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the running method at its next check (between steps, in any wait). Any thread."""
        self.cancel_token.cancel(reason)

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    # -- the connection ----------------------------------------------------------
    @property
    def connector(self) -> Connector | None:
        """The open connection, once :meth:`connect` (or any remote method) made it."""
        return self._connector

    def connect(self) -> Connector:
        """Open and verify the connection (an unknown host key is asked through the interaction).

        Reused by every later method; a changed host key always raises
        :class:`~claudegate.errors.HostKeyChanged`.
        """
        with self._busy, self._controls():
            return self._connect()

    @contextlib.contextmanager
    def _state_host(self) -> Iterator[Connector | None]:
        """A verified connection to ``state.host`` when the config has one (closed on the way out)."""
        cfg = self._config
        if cfg.state is None or cfg.state.host is None:
            yield None
            return
        from claudegate.deploy.state_host import state_config

        state_cfg = state_config(cfg)
        connector = self._verified(state_cfg, self._host_key_for(state_cfg))
        try:
            yield connector
        finally:
            connector.close()

    def _connect(self) -> Connector:
        if self._connector is not None:
            return self._connector
        self._connector = self._verified(self._config, self._host_key_for(self._config))
        return self._connector

    def _host_key_for(self, cfg: DeployConfig) -> str | None:
        """The first-contact key given for ``cfg.target`` (``HOST=SHA256:...``), else the one key."""
        from claudegate.deploy.fleet import host_name

        target = cfg.target
        return self.host_keys.get(host_name(target)) or self.host_keys.get(target.host) or self.accept_host_key

    def _check_host_keys(self) -> None:
        """Every ``HOST=`` of ``--accept-host-key`` is a host of the config (a typo must not go unnoticed)."""
        if not self.host_keys:
            return
        from claudegate.deploy.fleet import host_name

        cfg = self._config
        known = {name for t in cfg.fleet for name in (host_name(t), t.host)}
        if cfg.state is not None and cfg.state.host is not None:
            known |= {host_name(cfg.state.host), cfg.state.host.host}
        unknown = sorted(set(self.host_keys) - known)
        if unknown:
            raise ConfigError(
                f"--accept-host-key names {', '.join(unknown)}, not a host of this config",
                hint=f"the hosts are: {', '.join(host_name(t) for t in cfg.fleet)}",
            )

    def _verified(self, cfg: DeployConfig, accept_host_key: str | None) -> Connector:
        """A connection to ``cfg.target``, its host key checked (an unknown one asked through the interaction)."""
        from claudegate.deploy.api import connector_for

        self.cancel_token.raise_if_cancelled()
        connector = connector_for(cfg, accept_host_key=accept_host_key)
        if hasattr(connector, "confirm_new_key"):
            connector.confirm_new_key = self.interaction.confirm_host_key
        connect = getattr(connector, "connect", None)
        if callable(connect):
            try:
                connect()
            except BaseException:
                connector.close()
                raise
        return connector

    def _open_host(self, host_cfg: DeployConfig) -> Connector:
        """A verified connection to one host of ``hosts:`` (the rolling deploy closes it)."""
        self._one_key_for_one_host()
        return self._verified(host_cfg, self._host_key_for(host_cfg))

    def _one_key_for_one_host(self) -> None:
        if self.accept_host_key is not None:
            raise ConfigError(
                "--accept-host-key names one host's key, and this config lists several hosts",
                hint="name each host's key (--accept-host-key HOST=SHA256:..., once per host), give each entry "
                "of hosts: its host_key_fingerprint, or confirm each key when asked",
            )

    def _each_host(self, command: str, fn: Callable[[DeployConfig, Connector], T]) -> EveryHost[T]:
        """``fn(host_cfg, connector)`` on every host of ``hosts:``; a failing host is named, the rest still done."""
        from claudegate.deploy.every_host import on_every_host

        self._one_key_for_one_host()  # a wrong flag is one error, not one per host
        return on_every_host(self._config, self._open_host, command, fn, reporter=self._reporter())

    @contextlib.contextmanager
    def _fleet_locked(self, playbook: str, *, dry_run: bool) -> Iterator[None]:
        """Hold the fleet's lock (:mod:`claudegate.deploy.fleet_lock`) while a run changes several hosts.

        Taken in the shared Redis through the first host whose SSH lets a
        TCP connection through to it; a second run is refused at once,
        naming the holder. A lock lost mid-run (not renewed within its
        lease) cancels this run at its next safe point. Not for a dry run.
        """
        if dry_run or not self._config.several_hosts:
            yield
            return
        from claudegate.deploy.fleet_lock import FleetLock

        with self._state_tunnel() as (endpoint, dial):
            lock = FleetLock(endpoint, dial, playbook=playbook, on_lost=self.cancel)
            lock.acquire()
            try:
                yield
            finally:
                lock.release()

    @contextlib.contextmanager
    def _state_tunnel(self) -> Iterator[tuple[Any, Callable[[], Any]]]:
        """The state tier's Redis endpoint and a dial to it through the first host that lets one through."""
        from claudegate.deploy.every_host import EveryHost, HostRun
        from claudegate.deploy.fleet import host_name
        from claudegate.deploy.fleet_lock import RedisEndpoint
        from claudegate.deploy.state_host import as_url_state
        from claudegate.errors import ConnectionFailed

        state = self._config.state
        assert state is not None  # several hosts need state: (config rules)
        redis = state.redis if state.redis is not None else as_url_state(self._config).redis
        assert redis is not None
        password = redis.password_file.read_text().strip() if redis.password_file is not None else None
        endpoint = RedisEndpoint.from_url(redis.url, password, redis.tls_ca_file)
        opened: list[Connector] = []

        def dial() -> Any:
            hosts = self._config.fleet
            failed: list[HostRun[None]] = []
            for index, host in enumerate(hosts, 1):
                try:
                    connector = self._open_host(self._config.for_host(host))
                except Cancelled:
                    raise
                except ClaudegateError as exc:
                    failed.append(HostRun(index, len(hosts), host_name(host), error=exc))
                    continue
                opened.append(connector)
                open_tcp = getattr(connector, "open_tcp", None)
                try:
                    if open_tcp is None:
                        raise ConnectionFailed("this connection cannot carry a TCP connection",
                                               target=connector.target)  # fmt: skip
                    return open_tcp(endpoint.host, endpoint.port)
                except ClaudegateError as exc:
                    failed.append(HostRun(index, len(hosts), host_name(host), error=exc))
            error = EveryHost("fleet lock", tuple(failed)).error()
            assert error is not None
            error.message = (
                f"the fleet's lock is kept in the state tier's Redis ({endpoint.address}), reached through a "
                f"host's SSH, and no host got a connection through: nothing was changed\n{error.message}"
            )
            error.hint = "a host must reach that address (through its sshd's forwarding, or else bash on the host)"
            raise error

        try:
            yield endpoint, dial
        finally:
            for connector in opened:
                connector.close()

    def test_connection(self) -> ConnectionReport | EveryHost[ConnectionReport]:
        """Connect, verify and look around (sudo, distro, Docker, ports, what a deploy installs). Read-only.

        On several hosts: every host's report (a host that cannot be reached is named).
        """
        from claudegate.session.connection import check_target

        if self._config.several_hosts:
            return self._call(lambda: self._each_host(
                "check", lambda cfg, connector: check_target(cfg, connector, layout=self.layout)))  # fmt: skip
        return self._call(lambda: check_target(self._config, self._connect(), layout=self.layout))

    # -- playbooks ---------------------------------------------------------------
    def plan(self, *, prune: bool = False) -> DeployResult | FleetResult:
        """What a deploy would change, with file diffs; the host stays as it was (every host of ``hosts:``)."""
        from claudegate.deploy import api

        if self._config.several_hosts:
            return self._call(
                lambda: api.deploy_hosts(
                    self._config, self._open_host, dry_run=True, reporter=self._reporter(), layout=self.layout,
                    prune=prune,
                )
            )  # fmt: skip
        return self._call(
            lambda: api.plan(self._config, self._connect(), reporter=self._reporter(), layout=self.layout, prune=prune)
        )

    def deploy(
        self, *, dry_run: bool = False, prune: bool = False, refresh: bool = False
    ) -> DeployResult | FleetResult:
        """Deploy and smoke-test; asks (through the interaction) before installing Docker or replacing a certificate.

        A missing Anthropic key file is asked for and saved 0600 where
        ``upstream.api_key_file`` says, before anything happens on the host.
        """
        from claudegate.deploy import api

        def run() -> DeployResult | FleetResult:
            if not dry_run:
                self._ensure_upstream_key()
            if self._config.several_hosts:  # host by host, each smoke-tested (deploy/fleet.py)
                with self._fleet_locked("deploy", dry_run=dry_run):
                    return api.deploy_hosts(
                        self._config, self._open_host, dry_run=dry_run, reporter=self._reporter(),
                        layout=self.layout, prune=prune, refresh=refresh,
                    )  # fmt: skip
            return api.deploy(
                self._config, self._connect(), dry_run=dry_run, reporter=self._reporter(), layout=self.layout,
                prune=prune, refresh=refresh,
            )

        return self._call(run)

    def rollback(self, *, dry_run: bool = False) -> DeployResult | EveryHost[DeployResult]:
        """Serve the previous release again (smoke-tested).

        On several hosts: each host in turn, after a dry run on every host
        showed that they all go back to the same release (else nothing is
        touched and the error names the hosts).
        """
        from claudegate.deploy import api

        if self._config.several_hosts:
            from claudegate.deploy.every_host import same_release_everywhere

            def on_hosts() -> EveryHost[DeployResult]:
                with self._fleet_locked("rollback", dry_run=dry_run):
                    return rolled()

            def rolled() -> EveryHost[DeployResult]:
                if dry_run:
                    return self._each_host("rollback", lambda cfg, connector: api.rollback(
                        cfg, connector, dry_run=True, reporter=self._reporter(), layout=self.layout))  # fmt: skip
                # Every host can go back, to one release, before any host is touched.
                same_release_everywhere(self._each_host("rollback", lambda cfg, connector: api.rollback(
                    cfg, connector, dry_run=True, layout=self.layout)))  # fmt: skip
                # Host by host; one that fails: the ones already back go forward again (deploy/fleet_rollback.py).
                from claudegate.deploy.fleet_rollback import rollback_fleet
                from claudegate.deploy.serving import current_release

                origin = self._config.origin
                return rollback_fleet(
                    self._config, self._open_host, reporter=self._reporter(),
                    roll_back=lambda cfg, connector: api.rollback(
                        cfg, connector, reporter=self._reporter(), layout=self.layout),
                    read_current=lambda cfg, connector: current_release(cfg, connector, self.layout),
                    config_path=origin.source if origin is not None else "deploy.yaml",
                )  # fmt: skip

            return self._call(on_hosts)
        return self._call(
            lambda: api.rollback(
                self._config, self._connect(), dry_run=dry_run, reporter=self._reporter(), layout=self.layout
            )
        )

    def renew(self, *, dry_run: bool = False) -> DeployResult | EveryHost[DeployResult]:
        """Renew the ACME certificate when due, reload nginx (on every host of ``hosts:``)."""
        from claudegate.deploy import api

        if self._config.several_hosts:
            return self._call(lambda: self._each_host("renew", lambda cfg, connector: api.renew(
                cfg, connector, dry_run=dry_run, reporter=self._reporter(), layout=self.layout)))  # fmt: skip
        return self._call(
            lambda: api.renew(
                self._config, self._connect(), dry_run=dry_run, reporter=self._reporter(), layout=self.layout
            )
        )

    def uninstall(
        self, *, keep_data: bool = True, keep_images: bool = False, dry_run: bool = False
    ) -> DeployResult | EveryHost[DeployResult]:
        """Remove the gateway from the host (every host of ``hosts:``), after one yes through the interaction.

        Not asked in a dry run. On several hosts the question names them all
        before any is touched; the state tier (``state:``) is left alone.
        """
        from claudegate.deploy import api

        def remove(cfg: DeployConfig, connector: Connector) -> DeployResult:
            return api.uninstall(
                cfg, connector, keep_data=keep_data, keep_images=keep_images, dry_run=dry_run,
                reporter=self._reporter(), layout=self.layout,
            )  # fmt: skip

        def ask(target: str) -> None:
            what = "keeping the keystore, audit log and certificates" if keep_data else "INCLUDING all data"
            question = ConsentQuestion(
                topic="remove-gateway", target=target,
                detail=f"remove claudegate's containers, networks and images, {what}",
            )  # fmt: skip
            if not self.interaction.consent(question):
                raise Declined(f"{question.text()} -- answered no; nothing was removed", flag=question.flag)

        def run() -> DeployResult | EveryHost[DeployResult]:
            if self._config.several_hosts:
                from claudegate.deploy.fleet import host_name

                if not dry_run:
                    ask(f"{len(self._config.fleet)} hosts ({', '.join(host_name(h) for h in self._config.fleet)})")
                with self._fleet_locked("uninstall", dry_run=dry_run):
                    return self._each_host("uninstall", remove)
            connector = self._connect()
            if not dry_run:
                ask(connector.target)
            return remove(self._config, connector)

        return self._call(run)

    # -- looking ---------------------------------------------------------------------
    def status(self, *, expiry_days: int | None = None) -> StatusReport | EveryHost[StatusReport]:
        """Releases, containers, certificate, lock, last run and expiring client keys. Changes nothing.

        On several hosts: every host's report (a host that cannot be reached
        is named with its error, the others still shown) and a note on
        whether they all serve the same certificate serial.
        """
        from claudegate.deploy import api

        def one(cfg: DeployConfig, connector: Connector) -> StatusReport:
            return api.status(cfg, connector, layout=self.layout, expiry_days=expiry_days)

        def run() -> StatusReport | EveryHost[StatusReport]:
            if not self._config.several_hosts:
                return one(self._config, self._connect())
            runs = self._each_host("status", one)
            served = [(r.host, r.result) for r in runs.runs if r.result is not None]
            releases = [(r.label, r.result.current_release) for r in runs.runs if r.result is not None]
            notes = [*api.served_serial_notes(served), *api.mixed_release_notes(releases), self._lock_note()]
            return dataclasses.replace(runs, notes=tuple(notes))

        return self._call(run)

    def _lock_note(self) -> str:
        from claudegate.deploy.fleet_lock import holder_note

        try:
            with self._state_tunnel() as (endpoint, dial):
                return holder_note(endpoint, dial)
        except ClaudegateError as exc:  # no host reached the state tier: said, the hosts' reports still shown
            return f"the fleet's lock could not be read: {exc.message.splitlines()[0]}"

    def logs(self, service: str = "gateway", tail: int = 100) -> str | EveryHost[str]:
        """The last ``tail`` lines of ``service`` (``gateway`` or ``nginx``), redacted; every host's, labelled."""
        from claudegate.deploy import api

        if self._config.several_hosts:
            return self._call(lambda: self._each_host("logs", lambda cfg, connector: api.logs(
                cfg, connector, service, tail, layout=self.layout)))  # fmt: skip
        return self._call(lambda: api.logs(self._config, self._connect(), service, tail, layout=self.layout))

    def smoke_test(self) -> SmokeReport | EveryHost[SmokeReport]:
        """The smoke test against what is deployed, as a client sees it; each check is a ``check`` event.

        On several hosts: every host's (its own address, the same domain).
        """
        from claudegate.control.progress import StepEvent
        from claudegate.deploy import api

        def on_check(check: Any) -> None:
            self._emit(
                StepEvent(
                    kind="check",
                    step="smoke",
                    title="Smoke test",
                    index=1,
                    total=1,
                    message=check.name,
                    status=check.status,
                    detail=check.detail,
                )
            )

        if self._config.several_hosts:  # each host's own HTTPS port, as a client reaching it would
            from claudegate.deploy.every_host import for_every_host

            return self._call(lambda: for_every_host(
                self._config, "smoke-test", lambda cfg: api.smoke_test(cfg, progress=on_check),
                reporter=self._reporter()))  # fmt: skip
        return self._call(lambda: api.smoke_test(self._config, progress=on_check))

    def audit(
        self,
        *,
        quick: bool = False,
        only: Sequence[str] = (),
        probe_source: str | None = None,
        vantage: str | None = None,
        vantage_host_key: str | None = None,
    ) -> AuditReport | EveryHost[AuditReport]:
        """Attack the deployed stack from outside (:mod:`claudegate.audit`); each probe is a ``check`` event.

        Temporary narrowly scoped clients are made on the serving gateway and
        revoked at the end (the next deploy revokes any a killed run left).
        On several hosts every host's edge is attacked in turn (its own
        nginx, its own audit log), each with its own run's clients.
        """
        from claudegate.control.progress import StepEvent
        from claudegate.deploy.audit_run import audit_deployment, connector_keys_and_log

        def on_probe(result: Any) -> None:
            status = {"held": "pass", "failed": "fail"}.get(result.verdict, "skip")
            self._emit(StepEvent(kind="check", step="audit", title="Security audit", index=1, total=1,
                                 message=result.name, status=status, detail=result.detail))  # fmt: skip

        def one(cfg: DeployConfig, connector: Connector) -> AuditReport:
            keys, read_log = connector_keys_and_log(cfg, connector, self.layout)
            if vantage is None:
                return audit_deployment(
                    cfg, keys, read_log, quick=quick, only=tuple(only), probe_source=probe_source,
                    progress=on_probe,
                )
            from claudegate.audit.vantage import vantage_connector
            from claudegate.probes.wire import tunnel_dial

            with vantage_connector(cfg, vantage, vantage_host_key) as far:
                return audit_deployment(
                    cfg, keys, read_log, quick=quick, only=tuple(only), probe_source=probe_source,
                    remote=(far.target, tunnel_dial(far.open_tcp)), progress=on_probe,
                )

        if self._config.several_hosts:
            return self._call(lambda: self._each_host("audit", one))
        return self._call(lambda: one(self._config, self._connect()))

    def usage(
        self, *, client: str | None = None, since: date | None = None, source: str | None = None
    ) -> UsageReport:
        """Requests and tokens per client per UTC day (read-only).

        ``source``: ``"ledger"`` (state.postgres's durable daily totals, read
        through the first host that answers, see :meth:`_any_host`; the
        default on several hosts) or ``"audit-logs"`` (the default on one
        host). From the audit logs on several hosts every host's log is
        summed (each host logs the requests it served); a host that cannot
        be read is named in the report (``missing_hosts``), and only when
        none can be read does it fail.
        """
        from claudegate.usage import audit_lines, fleet_usage, ledger_usage, read_usage

        if source is None:
            source = "ledger" if self._config.several_hosts else "audit-logs"
        if source == "ledger":
            if self._config.state is None:
                raise ConfigError("--from ledger: the durable usage ledger is in state.postgres, and this config has"
                                  " no state:", hint="use --from audit-logs")  # fmt: skip

            def from_ledger() -> UsageReport:
                report = self._any_host("usage", lambda cfg, connector: ledger_usage(
                    cfg, connector, client=client, since=since, layout=self.layout))  # fmt: skip
                if self.answered_by is None:
                    return report
                return dataclasses.replace(report, answered_by=self.answered_by.note())

            return self._call(from_ledger)
        if not self._config.several_hosts:
            return self._call(
                lambda: read_usage(self._config, self._connect(), client=client, since=since, layout=self.layout)
            )

        def run() -> UsageReport:
            runs = self._each_host("usage", lambda cfg, connector: audit_lines(cfg, connector, self.layout))
            error = runs.error()
            read = [(r.label, *r.result) for r in runs.runs if r.result is not None]
            if not read:
                assert error is not None
                error.message += "\nno host's audit log could be read"
                raise error
            missing = [f"{r.label}: {r.error}" for r in runs.failed]
            return fleet_usage(read, missing, client=client, since=since)

        return self._call(run)

    # -- day 2: client keys, backup, restore ---------------------------------------------
    def list_clients(self) -> list[ClientRecord]:
        """Every client in the serving gateway's keystore: state, key prefixes (never secrets), scopes.

        On several hosts: through the first host that answers (see :meth:`_any_host`).
        """
        from claudegate import keys

        return self._call(lambda: self._any_host("keys list", lambda cfg, connector: keys.list_clients(
            cfg, connector, layout=self.layout)))  # fmt: skip

    def create_client(self, client: Client) -> IssuedKey:
        """Create ``client`` (see :func:`claudegate.keys.client_spec`); its key is returned once and saved 0600."""
        from claudegate import keys

        return self._call(lambda: self._any_host("keys create", lambda cfg, connector: keys.create_client(
            cfg, connector, client, layout=self.layout), change=True))  # fmt: skip

    def rotate_client(self, name: str, *, overlap_seconds: int = 0) -> IssuedKey:
        """A new key for ``name``; the old ones keep working ``overlap_seconds`` longer (0: stop now)."""
        from claudegate import keys

        keys.client_spec(name)  # a bad name fails before connecting
        return self._call(lambda: self._any_host("keys rotate", lambda cfg, connector: keys.rotate_client(
            cfg, connector, name, overlap_seconds=overlap_seconds, layout=self.layout), change=True))  # fmt: skip

    def revoke_client(self, name: str) -> None:
        """Revoke ``name``: every key of it is refused from its next request on."""
        from claudegate import keys

        keys.client_spec(name)

        def revoke(cfg: DeployConfig, connector: Connector) -> str:
            keys.revoke_client(cfg, connector, name, layout=self.layout)
            return name  # an answer (None would read as "no host answered")

        self._call(lambda: self._any_host("keys revoke", revoke, change=True))

    def _any_host(self, command: str, fn: Callable[[DeployConfig, Connector], T], *, change: bool = False) -> T:
        """``fn`` on the connection (one host), or on the first host of ``hosts:`` that answers.

        The client keys live in the shared PostgreSQL, so any host answers
        for the whole fleet. Which host did (and why the ones before it did
        not) is kept in :attr:`answered_by` for the front end to say. A
        change (``change``) goes to the next host only when the connection
        failed before anything was sent.
        """
        self.answered_by = None
        if not self._config.several_hosts:
            return fn(self._config, self._connect())
        from claudegate.deploy.every_host import first_answering

        self._one_key_for_one_host()
        answer = first_answering(self._config, self._open_host, command, fn, reporter=self._reporter(),
                                 retry_after_sent=not change)  # fmt: skip
        self.answered_by = answer
        return answer.result

    def backup(self, out: str | os.PathLike[str], *, passphrase: Secret | None = None, force: bool = False) -> BackupResult:
        """Save the keystore, the pepper and the ACME state of the deployed gateway to ``out`` (0600).

        On several hosts: the state tier once (``state.host``'s dump) and
        each host's own files (pepper, TLS and ACME trees) in one file. A
        host that cannot be read is left out and named: the file is written
        with the others, then :class:`~claudegate.deploy.every_host.FleetCommandFailed`
        says which host is missing from it.
        """
        from claudegate.backup import create_backup

        if self._config.several_hosts:
            return self._call(lambda: self._backup_hosts(Path(out), passphrase, force))

        def run() -> BackupResult:
            with self._state_host() as state_connector:  # state.host: its PostgreSQL dump goes in too
                return create_backup(
                    self._config, self._connect(), Path(out), passphrase=passphrase, force=force,
                    layout=self.layout, state_connector=state_connector,
                )  # fmt: skip

        return self._call(run)

    def _backup_hosts(self, out: Path, passphrase: Secret | None, force: bool) -> BackupResult:
        from claudegate.backup import STATE_ROWS, export_state_rows, fleet_members, host_members, write_backup

        # No keystore snapshot: several hosts keep their clients in the shared PostgreSQL (state:).
        runs = self._each_host("backup", lambda cfg, connector: host_members(cfg, connector, self.layout,
                                                                          keystore=False))  # fmt: skip
        read = [(r.index, r.host, r.result) for r in runs.runs if r.result is not None]
        failed = runs.error()
        if not read:
            assert failed is not None
            raise failed
        members, hosts, notes = fleet_members(read)
        # state.postgres's rows, once (any host reads the same database): what a fleet restore puts back.
        members[STATE_ROWS] = self._any_host("backup", lambda cfg, connector: export_state_rows(
            cfg, connector, self.layout))  # fmt: skip
        with self._state_host() as state_connector:  # the state tier once, whatever the number of hosts
            result = write_backup(
                self._config, members, out, source=read[0][1], passphrase=passphrase, force=force,
                state_connector=state_connector, hosts=hosts, notes=notes,
            )  # fmt: skip
        if failed is not None:
            failed.message += f"\n{result.text()}\nit lacks the files of the hosts that failed"
            raise failed
        return result

    def restore(self, source: str | os.PathLike[str], *, passphrase: Secret | None = None) -> RestoreResult:
        """Put a backup onto the deployed host, after a yes through the interaction.

        The file is read and checked first (a wrong passphrase or a damaged
        file fails before anything is asked); the question comes before the
        connection, and a no raises :class:`~claudegate.errors.Declined` with
        nothing read from or written to the host.
        """
        from claudegate.backup import read_backup, restore_backup

        def run() -> RestoreResult:
            if self._config.several_hosts:
                return self._restore_hosts(Path(source), passphrase)
            backup = read_backup(Path(source), passphrase)
            question = ConsentQuestion(
                topic="restore-backup",
                target=self._target_name(),
                detail=(
                    f"replace the keystore and pepper with {backup.summary()}; clients made there since are "
                    "gone and the gateway stops for a few seconds"
                ),
            )
            if not self.interaction.consent(question):
                raise Declined(f"{question.text()} -- answered no; nothing was restored", flag=question.flag)
            with self._state_host() as state_connector:  # a PostgreSQL dump goes back to state.host
                return restore_backup(
                    self._config, self._connect(), backup, layout=self.layout, state_connector=state_connector
                )

        return self._call(run)

    def _restore_hosts(self, source: Path, passphrase: Secret | None) -> RestoreResult:
        """A fleet backup onto every host of ``hosts:``, all or none (:func:`claudegate.backup.restore_fleet`).

        Checked before anything is asked (a one-host backup, another
        domain's, a damaged file are refused); asked once, naming every
        host; then under the fleet's lock (a deploy or rollback on the fleet
        cannot run meanwhile), with every host connected before anything
        changes: one host unreachable refuses the restore, nothing changed.
        """
        from datetime import UTC, datetime

        from claudegate.backup import FleetHost, check_fleet_backup, read_backup, restore_fleet
        from claudegate.deploy.every_host import EveryHost, HostRun
        from claudegate.deploy.fleet import host_name

        cfg = self._config
        backup = read_backup(source, passphrase)
        check_fleet_backup(cfg, backup)
        names = [host_name(t) for t in cfg.fleet]
        question = ConsentQuestion(
            topic="restore-backup",
            target=f"{len(names)} hosts ({', '.join(names)})",
            detail=(
                f"replace state.postgres's keys, owned objects and usage, and every host's pepper, with "
                f"{backup.summary()}; clients made since are gone, keys revoked since work again"
            ),
        )
        if not self.interaction.consent(question):
            raise Declined(f"{question.text()} -- answered no; nothing was restored", flag=question.flag)
        with self._fleet_locked("restore", dry_run=False):
            hosts: list[FleetHost] = []
            failed: list[HostRun[None]] = []
            try:
                for index, target in enumerate(cfg.fleet, 1):
                    host_cfg = cfg.for_host(target)
                    try:
                        connector = self._open_host(host_cfg)
                    except Cancelled:
                        raise
                    except ClaudegateError as exc:
                        failed.append(HostRun(index, len(names), host_name(target), error=exc))
                        continue
                    hosts.append(FleetHost(f"host {index}/{len(names)} ({host_name(target)})", host_cfg, connector))
                if failed:
                    error = EveryHost("restore", tuple(failed)).error()
                    assert error is not None
                    error.message = f"restore needs every host, and not every host answered: nothing was restored\n{error.message}"
                    raise error
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # two restores in one second: two files
                safety = Path(cfg.state_dir) / f"before-restore-{stamp}.cgbackup"
                with self._state_host() as state_connector:
                    return restore_fleet(cfg, hosts, backup, safety_copy=safety, passphrase=passphrase,
                                         layout=self.layout, state_connector=state_connector)  # fmt: skip
            finally:
                for host in hosts:
                    host.connector.close()

    def render(self, out_dir: str | os.PathLike[str]) -> RenderResult:
        """Every file a deploy writes, into a local directory (secrets excluded). No connection."""
        from claudegate.deploy import api

        return self._call(lambda: api.render(self._config, Path(out_dir), layout=self.layout))

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------
    @contextmanager
    def _controls(self) -> Iterator[RunControls]:
        with using(RunControls(cancel=self.cancel_token, interaction=self.interaction, progress=self.progress)) as c:
            yield c

    def _call(self, fn: Callable[[], T]) -> T:
        with self._busy, self._controls():
            try:
                self.cancel_token.raise_if_cancelled()
                return fn()
            except Cancelled as exc:
                self.interaction.cancelled(exc)
                raise

    def _target_name(self) -> str:
        """The target as a question names it before the connection is open."""
        target = self._config.target
        if target.is_local:
            return "this machine"
        return f"{target.user}@{target.host}" if target.user else target.host

    def _reporter(self) -> Reporter | None:
        return self._emit if self.progress is not None else None

    def _emit(self, event: StepEvent) -> None:
        if self.progress is not None:
            with suppress(Exception):
                self.progress(event)

    def _ensure_upstream_key(self) -> None:
        """Ask for the Anthropic key when its file is missing or empty; save it 0600 there."""
        from claudegate.deploy.secret_inputs import read_upstream_key

        try:
            read_upstream_key(self._config)
            return
        except ConfigError as exc:
            error = exc
        path = self._config.upstream.api_key_file
        if path is None or (path.exists() and path.read_text().strip()):
            raise error  # an environment variable, or a file that is there but wrong: nothing to ask
        question = SecretQuestion(
            name="anthropic-api-key",
            field="upstream.api_key_file",
            save_to=str(path),
            reason=f"{path} is missing or empty",
        )
        answer = self.interaction.ask_secret(question)
        if answer is None:
            raise error
        value = answer.reveal().strip()
        problem = key_problem(value)
        if problem is not None:
            raise ConfigError(f"the Anthropic API key given {problem}", hint="paste only the key")
        _write_secret(Path(path), value)


def _write_secret(path: Path, value: str) -> None:
    """Create ``path`` 0600 (parents 0700) with ``value``; the mode is set before the content is written."""
    write_private(path, value.encode() + b"\n")
