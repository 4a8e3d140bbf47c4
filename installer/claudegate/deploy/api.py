"""The public functions the CLI and the TUI call (re-exported by :mod:`claudegate.deploy`)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from claudegate.config.files import check_secret_files
from claudegate.config.model import DeployConfig
from claudegate.config.state_files import state_files
from claudegate.connectors.base import Connector
from claudegate.connectors.local import LocalConnector
from claudegate.control.progress import Reporter, StepEvent, null_reporter
from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.build_contexts import certbot_context, gateway_context, nginx_context
from claudegate.deploy.cert_status import certificate_status, fleet_served_serial
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import StepOutcome, run_steps
from claudegate.deploy.facts import parse_container, parse_links
from claudegate.deploy.fleet import FleetResult, deploy_fleet
from claudegate.deploy.gateway_keys import expiry_warnings
from claudegate.deploy.image_status import image_status
from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import LABEL_GATEWAY, LABEL_ROLE, HostLayout
from claudegate.deploy.lock import read_holder
from claudegate.deploy.playbook import load_playbook
from claudegate.deploy.release import Release, build_release, parse_manifest
from claudegate.deploy.results import (
    EXPIRY_WARNING_DAYS,
    ClientExpiry,
    ContainerStatus,
    DeployResult,
    RenderResult,
    StatusReport,
    StepReport,
)
from claudegate.deploy.secret_inputs import key_fingerprint, read_upstream_key
from claudegate.deploy.serving import current_release, serving_gateway
from claudegate.deploy.smoke_target import target_for
from claudegate.deploy.state_host import as_url_state
from claudegate.deploy.state_secrets import state_fingerprint
from claudegate.deploy.steps.clients import SMOKE_CLIENT, read_saved_key
from claudegate.deploy.tls_material import cert_summary
from claudegate.errors import ClaudegateError, ConfigError
from claudegate.smoke import run_smoke

__all__ = [
    "connector_for",
    "deploy",
    "deploy_hosts",
    "logs",
    "mixed_release_notes",
    "plan",
    "render",
    "renew",
    "rollback",
    "served_serial_notes",
    "smoke_test",
    "status",
    "uninstall",
]

if TYPE_CHECKING:
    from claudegate.smoke import Check, SmokeReport

SERVICES = ("gateway", "nginx")


def connector_for(cfg: DeployConfig, *, accept_host_key: str | None = None) -> Connector:
    """The connector for ``cfg.target``: this machine, or SSH with the tool's own known_hosts.

    ``accept_host_key`` (``SHA256:...``, from ``--accept-host-key``) accepts
    exactly that key on first contact; ``target.host_key_fingerprint`` in
    the config does the same. Otherwise an unknown host raises
    :class:`~claudegate.errors.HostKeyUnknown` with the fingerprint to confirm.
    Nothing connects until the first command.
    """
    target = cfg.target
    if target.is_local:
        return LocalConnector(default_timeout=300)
    # Only for a server: paramiko takes ~100 ms to import, which a local deploy need not pay.
    from claudegate.connectors.ssh import SSHConnector

    return SSHConnector(
        target.host,
        user=target.user,
        port=target.port,
        key_filename=target.ssh_key,
        known_hosts=target.known_hosts,
        expected_fingerprint=accept_host_key or target.host_key_fingerprint,
        connect_timeout=15.0,
        default_timeout=300.0,
    )


def _release_for(
    cfg: DeployConfig, layout: HostLayout, ctx: Context | None, *, strict: bool, refresh: str = ""
) -> tuple[Release, list[str]]:
    """Render the release; with ``strict`` the key must be readable (a deploy), else it is noted."""
    notes: list[str] = []
    try:
        if strict:
            check_secret_files(cfg)
        key = read_upstream_key(cfg)
    except ConfigError as exc:
        if strict:
            raise
        notes.append(f"the Anthropic key could not be read ({exc}); the release id assumes it is unchanged")
        fingerprint = "unknown"
    else:
        fingerprint = key_fingerprint(key)
        if cfg.state is not None:  # only then: one-host release ids stay as they were
            fingerprint += "+" + state_fingerprint([f.source for f in state_files(cfg)])
        if ctx is not None:
            ctx.state.upstream_key = key
            ctx.connector.add_secret(key)
    return build_release(cfg, layout, key_fingerprint=fingerprint, refresh=refresh), notes


def _refresh_stamp(connector: Connector, layout: HostLayout, sudo: bool, *, new: bool) -> str:
    """A new stamp for ``--refresh``; else the serving release's, so its refreshed images stay."""
    if new:
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = connector.get_file(f"{layout.current_link}/release.json", sudo=sudo)
    if not data:
        return ""
    try:
        return parse_manifest("current", data).images_refresh
    except ValueError:
        return ""


def _collect_notes(reporter: Reporter, notes: list[str]) -> Reporter:
    def report(event: StepEvent) -> None:
        if event.kind == "note":
            notes.append(f"{event.step}: {event.message}" if event.step else event.message)
        reporter(event)

    return report


def _run(
    cfg: DeployConfig,
    connector: Connector,
    options: RunOptions,
    *,
    reporter: Reporter | None,
    layout: HostLayout | None,
) -> DeployResult:
    if cfg.state is not None and cfg.state.host is not None:
        # state.host: the gateways use the Redis and PostgreSQL `claudegate state deploy`
        # set up there (its recorded address and generated password files); before that
        # first run this names the command to run.
        cfg = cfg.model_copy(update={"state": as_url_state(cfg)})
    started = time.monotonic()
    layout = layout or HostLayout()
    playbook, dry_run = options.playbook, options.dry_run
    notes: list[str] = []
    ctx = Context(
        cfg=cfg,
        connector=connector,
        layout=layout,
        options=options,
        reporter=_collect_notes(reporter or null_reporter, notes),
    )
    if playbook == "deploy":
        stamp = _refresh_stamp(connector, layout, ctx.sudo, new=ctx.options.refresh)
        ctx.state.release, render_notes = _release_for(cfg, layout, ctx, strict=not dry_run, refresh=stamp)
        notes += render_notes
    steps = load_playbook(playbook).build()
    try:
        outcomes = run_steps(ctx, steps)
    except ClaudegateError as exc:
        if ctx.state.new_keys:
            # The run failed after making keys: they are not lost, say where they are.
            where = f"new client keys ({', '.join(sorted(ctx.state.new_keys))}) were saved in {cfg.state_dir}/keys (0600)"
            exc.hint = f"{exc.hint}; {where}" if exc.hint else where
        raise
    return DeployResult(
        playbook=playbook,
        dry_run=dry_run,
        target=connector.target,
        release_id=ctx.state.release.rid if ctx.state.release is not None else None,
        previous_release=ctx.state.fallback,
        steps=tuple(_report(o) for o in outcomes),
        new_client_keys=dict(ctx.state.new_keys),
        smoke=ctx.state.smoke,
        elapsed=time.monotonic() - started,
        notes=tuple(notes),
    )


def _report(outcome: StepOutcome) -> StepReport:
    return StepReport(
        name=outcome.name,
        title=outcome.title,
        changes=tuple(c.summary for c in outcome.changes),
        diffs=tuple(c.diff for c in outcome.changes if c.diff),
        elapsed=outcome.elapsed,
    )


def deploy(
    cfg: DeployConfig,
    connector: Connector,
    *,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
    prune: bool = False,
    refresh: bool = False,
) -> DeployResult:
    """Deploy ``cfg`` onto the connector's host, following ``playbooks/deploy.yaml``.

    Idempotent: a second run with the same config changes nothing
    (``result.changed`` is False) and restarts nothing. Resumable: a run cut
    short (lost connection, Ctrl-C, crash) is picked up by the next one.
    With ``dry_run`` nothing on the host changes: the result lists every
    change and the diff of every rendered file (``result.plan_text()``).

    Raises :class:`~claudegate.errors.DeployFailed` when a step fails -- the
    release that served before keeps serving (after a failed smoke test
    nginx is switched back to it) -- and the other
    :class:`~claudegate.errors.ClaudegateError` subclasses for config,
    connection and host-key problems. Never prints; progress goes to
    ``reporter``.

    Clients converge to ``cfg.clients`` (created, or updated in place); a
    client the keystore holds but the config does not list is noted, and
    revoked only with ``prune``.

    ``refresh`` rebuilds the images without cache from a freshly fetched
    base (Debian security updates) under a new tag: a new release, switched
    to only after its smoke test passes, like any other.
    """
    options = RunOptions("deploy", dry_run=dry_run, prune=prune, refresh=refresh)
    return _run(cfg, connector, options, reporter=reporter, layout=layout)


def deploy_hosts(
    cfg: DeployConfig,
    connect: Callable[[DeployConfig], Connector],
    *,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
    prune: bool = False,
    refresh: bool = False,
) -> FleetResult:
    """Deploy ``cfg`` to every host of ``hosts:``, host by host (see :mod:`claudegate.deploy.fleet`).

    ``connect(host_cfg)`` opens the verified connection to ``host_cfg.target``.
    Each host gets :func:`deploy`; the first one also runs the schema
    migrations (``state:``). A failing host stops the roll and the hosts
    already switched are rolled back (:class:`~claudegate.errors.DeployFailed`
    says which). With ``dry_run``: every host's plan, nothing changed.
    """

    def run_one(
        host_cfg: DeployConfig, connector: Connector, *, dry_run: bool, reporter: Reporter | None,
        layout: HostLayout | None, options: RunOptions,
    ) -> DeployResult:
        options = dataclasses.replace(options, playbook="deploy", dry_run=dry_run)
        return _run(host_cfg, connector, options, reporter=reporter, layout=layout)

    def roll_back(
        host_cfg: DeployConfig, connector: Connector, *, reporter: Reporter | None, layout: HostLayout | None,
    ) -> DeployResult:
        return _run(host_cfg, connector, RunOptions("rollback"), reporter=reporter, layout=layout)

    result = deploy_fleet(
        cfg, connect, run_one=run_one, roll_back=roll_back, dry_run=dry_run, reporter=reporter, layout=layout,
        options=RunOptions("deploy", prune=prune, refresh=refresh),
        read_current=lambda host_cfg, connector: current_release(host_cfg, connector, layout),
        contract=lambda host_cfg, connector: migrate_contract(host_cfg, connector, layout),
    )  # fmt: skip
    if not dry_run and cfg.tls.mode == "acme" and cfg.several_hosts:
        # One ACME certificate for the fleet: every host must serve the issuer's.
        serial = fleet_served_serial(cfg)
        note = f"every host serves the ACME certificate with serial {serial}"
        result = dataclasses.replace(result, notes=(*result.notes, note))
    return result


def migrate_contract(cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None) -> str:
    """``claudegate-gateway migrate --contract`` in the host's serving gateway; what it says.

    Only once every host serves the release whose code no longer needs what
    the contract steps remove (the rolling deploy calls it after a roll that
    succeeded everywhere); a gateway of an older release then refuses to
    start on the contracted schema rather than serve on it.
    """
    from claudegate.deploy.gateway_cli import gateway_command
    from claudegate.deploy.serving import serving_gateway_container, uses_sudo
    from claudegate.errors import DeployFailed

    container = serving_gateway_container(cfg, connector, layout)
    argv = docker_cli.exec_in(container, gateway_command(["migrate", "--contract"]))
    done = connector.run(argv, sudo=uses_sudo(cfg, connector), timeout=600, check=False)
    if not done.ok:
        stderr = connector.redact(done.stderr.decode("utf-8", errors="replace")).strip()
        raise DeployFailed(f"claudegate-gateway migrate --contract failed on {connector.target}: "
                           f"{stderr.splitlines()[-1] if stderr else 'failed'}")  # fmt: skip
    return done.text.strip()


def plan(
    cfg: DeployConfig,
    connector: Connector,
    *,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
    prune: bool = False,
    refresh: bool = False,
) -> DeployResult:
    """``deploy(..., dry_run=True)``: every change and diff, and the host stays byte-for-byte as it was."""
    return deploy(
        cfg, connector, dry_run=True, reporter=reporter, layout=layout, prune=prune, refresh=refresh
    )


def rollback(
    cfg: DeployConfig,
    connector: Connector,
    *,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
) -> DeployResult:
    """Serve the previous release again (its gateway restarted, nginx switched, smoke-tested)."""
    return _run(cfg, connector, RunOptions("rollback", dry_run=dry_run), reporter=reporter, layout=layout)


def uninstall(
    cfg: DeployConfig,
    connector: Connector,
    *,
    keep_data: bool = False,
    keep_images: bool = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
) -> DeployResult:
    """Remove containers, networks, images and files.

    ``keep_data`` keeps the keystore and the secrets (a later deploy finds the
    same clients); ``keep_images`` keeps the images (a later deploy builds nothing).
    """
    options = RunOptions("uninstall", dry_run=dry_run, keep_data=keep_data, keep_images=keep_images)
    return _run(cfg, connector, options, reporter=reporter, layout=layout)


def renew(
    cfg: DeployConfig,
    connector: Connector,
    *,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    layout: HostLayout | None = None,
) -> DeployResult:
    """Renew the ACME certificate now if a third of its lifetime is left (``tls.mode: acme``), reload nginx.

    The host renews by itself (the deploy's ``renewal`` step); this also
    (re)starts that renewer when it is missing.
    """
    return _run(cfg, connector, RunOptions("renew", dry_run=dry_run), reporter=reporter, layout=layout)


def render(cfg: DeployConfig, out_dir: str | Path, *, layout: HostLayout | None = None) -> RenderResult:
    """Write every file the deploy would put on the host below ``out_dir`` (secrets excluded).

    The tree mirrors the host's (``releases/<rid>/...``, ``gateways/<id>/...``),
    plus the image build contexts under ``images/`` (without wheels).
    """

    layout = layout or HostLayout()
    release, notes = _release_for(cfg, layout, None, strict=False)
    out = Path(out_dir)
    written: list[Path] = []
    trees: dict[str, dict[str, bytes]] = {
        f"releases/{release.rid}": release.files,
        f"gateways/{release.gateway_id}": release.gateway_files,
    }
    contexts = [gateway_context(), nginx_context()] + ([certbot_context()] if cfg.tls.mode == "acme" else [])
    for context in contexts:
        trees[f"images/{context.name}"] = dict(context.files)
    for prefix, files in trees.items():
        for rel, data in sorted(files.items()):
            path = out / prefix / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    notes.append("not written: the Anthropic key, the pepper and the TLS private key (secrets)")
    return RenderResult(release.rid, release.gateway_id, out, tuple(written), tuple(notes))


def _sudo(cfg: DeployConfig, connector: Connector) -> bool:
    return bool(cfg.target.sudo) and not connector.is_root


def status(
    cfg: DeployConfig,
    connector: Connector,
    *,
    layout: HostLayout | None = None,
    expiry_days: float | None = None,
) -> StatusReport:
    """What runs on the host now: releases, containers, certificate, lock, last run. Changes nothing.

    Client keys that stop working within ``expiry_days`` (default
    :data:`~claudegate.deploy.results.EXPIRY_WARNING_DAYS`) are listed as warnings.
    """
    layout = layout or HostLayout()
    expiry_days = EXPIRY_WARNING_DAYS if expiry_days is None else expiry_days
    sudo = _sudo(cfg, connector)

    def fact(argv: list[str]) -> str:
        result = connector.run(argv, sudo=sudo, timeout=60, check=False)
        return result.text if result.ok else ""

    docker = fact(docker_cli.docker_info()).strip() or None
    links = parse_links(fact(host_cli.read_links([layout.current_link, layout.previous_link])))
    containers: list[ContainerStatus] = []
    for name in sorted(fact(docker_cli.container_list(layout.prefix)).split()) if docker else []:
        state = parse_container(fact(docker_cli.container_inspect(name)))
        if state is not None:
            containers.append(
                ContainerStatus(
                    name=state.name,
                    role=state.labels.get(LABEL_ROLE, "?"),
                    status=state.status,
                    health=state.health,
                    image=state.image,
                    started_at=state.started_at,
                    gateway_id=state.labels.get(LABEL_GATEWAY),
                )
            )
    certificate = None
    chain = connector.get_file(f"{layout.tls}/fullchain.pem", sudo=sudo) if docker is not None else None
    if chain:
        try:
            certificate = cert_summary(chain)
        except ValueError:
            certificate = "unreadable"
    client_expiry, clients_unknown = _client_expiry(cfg, connector, layout, expiry_days, containers)
    certs = certificate_status(cfg, connector, layout, sudo=sudo)
    holder = read_holder(connector, layout.lock_dir, sudo=sudo)
    journal = Journal.from_bytes(connector.get_file(layout.journal, sudo=sudo))
    return StatusReport(
        target=connector.target,
        docker=docker,
        current_release=links.get(layout.current_link),
        previous_release=links.get(layout.previous_link),
        containers=tuple(containers),
        certificate=certificate,
        lock=holder.describe() if holder is not None else None,
        last_run=json.loads(journal.to_bytes()) if journal is not None else None,
        client_expiry=client_expiry,
        clients_unknown=clients_unknown,
        images=image_status(connector, layout, sudo=sudo) if docker is not None else None,
        served_certificate=certs.served,
        renewal=certs.renewal,
        warnings=certs.warnings,
    )


def _client_expiry(
    cfg: DeployConfig,
    connector: Connector,
    layout: HostLayout,
    days: float,
    containers: list[ContainerStatus],
) -> tuple[tuple[ClientExpiry, ...], str | None]:
    if not any(c.role == "gateway" and c.status == "running" for c in containers):
        return (), "no gateway runs"
    try:
        return expiry_warnings(cfg, connector, within_days=days, layout=layout), None
    except ClaudegateError as exc:
        return (), str(exc)


def logs(
    cfg: DeployConfig,
    connector: Connector,
    service: str = "gateway",
    tail: int = 100,
    *,
    layout: HostLayout | None = None,
) -> str:
    """The last ``tail`` log lines of ``service`` (``gateway``: the serving release's; ``nginx``), redacted."""
    if service not in SERVICES:
        raise ConfigError(f"unknown service {service!r}", hint=f"use one of: {', '.join(SERVICES)}")
    if tail < 1:
        raise ConfigError(f"tail must be at least 1, not {tail}")
    layout = layout or HostLayout()
    sudo = _sudo(cfg, connector)
    if service == "gateway":
        gateway_id = serving_gateway(connector, layout, sudo)
        # With state: two replicas serve (deploy/services.py); each one's lines under its name.
        names = [layout.gateway_container(gateway_id, n) for n in range(1, (2 if cfg.state is not None else 1) + 1)]
    else:
        names = [layout.nginx_container]
    parts = []
    for name in names:
        result = connector.run(docker_cli.container_logs(name, tail=tail), sudo=sudo, timeout=60, check=False)
        if not result.ok:
            connector.raise_failed(docker_cli.container_logs(name, tail=tail), result)
        # docker logs writes the container's stdout and stderr to its own two streams.
        text = connector.redact((result.stdout + result.stderr).decode("utf-8", errors="replace"))
        parts.append(text if len(names) == 1 else f"--- {name} ---\n{text}")
    return "".join(parts)


def served_serial_notes(reports: Sequence[tuple[str, StatusReport]]) -> list[str]:
    """A note when the hosts of ``hosts:`` do not all serve the same certificate (by serial).

    Every host is given the same certificate (one internal CA, the operator's
    files, or the shared ACME one): a host serving another serial missed a
    renewal's reload, or answers with something that is not claudegate.
    """
    serials: dict[str, list[str]] = {}
    for host, report in reports:
        found = _SERIAL.match(report.served_certificate or "")
        serials.setdefault(found.group(1) if found else "nothing", []).append(host)
    if len(serials) <= 1:
        return [f"every host serves the certificate with serial {next(iter(serials))}"] if serials else []
    which = "; ".join(f"serial {serial}: {', '.join(hosts)}" for serial, hosts in sorted(serials.items()))
    return [f"WARNING: the hosts serve different certificates ({which}); run claudegate renew, then status"]


def mixed_release_notes(releases: Sequence[tuple[str, str | None]]) -> list[str]:
    """A WARNING when the hosts of ``hosts:`` serve different releases (nothing when they serve one).

    Expected only while a deploy rolls; otherwise a roll or a rollback
    stopped half-way (its error said so) and ``claudegate deploy`` brings
    every host to one release.
    """
    which: dict[str, list[str]] = {}
    for label, release in releases:
        which.setdefault(release or "nothing", []).append(label)
    if len(which) <= 1:
        return []
    listed = "; ".join(f"release {rid}: {', '.join(labels)}" for rid, labels in which.items())
    return [
        f"WARNING: the hosts serve different releases ({listed}); unless a deploy is rolling right now, "
        "run claudegate deploy to put every host on this config's release"
    ]


_SERIAL = re.compile(r"serial ([0-9a-f]+),")


def smoke_test(cfg: DeployConfig, *, progress: Callable[[Check], None] | None = None) -> SmokeReport:
    """The smoke test against what is deployed, as a client sees it (no SSH needed)."""
    key = read_saved_key(Path(cfg.state_dir) / "keys", SMOKE_CLIENT)
    return run_smoke(target_for(cfg, trust=None, client_key=key), progress=progress)
