"""Audit a deployment made from a deploy.yaml: temporary clients, the target, the audit log.

Here, above :mod:`claudegate.audit`, because it reaches the deployment the
deploy's way (the serving gateway's keys command, its audit log over the
connector, the smoke test's view of the endpoint); the audit itself only
attacks an :class:`~claudegate.audit.target.AuditTarget`.

The run creates narrowly scoped clients named ``claudegate-audit-<role>-<run id>`` on the
serving gateway, attacks the public endpoint with them, reads the gateway's
audit log over the connector to prove that refused requests reached nothing
upstream, and revokes every client it made in a ``finally``. A run that is
killed before that leaves clients whose names say what they are; the next
deploy revokes them (see :data:`AUDIT_CLIENT_PREFIX`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from claudegate.audit.result import AuditReport, ProbeResult
from claudegate.audit.runner import run_audit, select_probes
from claudegate.audit.target import AuditTarget, RunClients
from claudegate.config.derive import GATEWAY_AUDIT_LOG as AUDIT_LOG
from claudegate.config.derive import value_at
from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy import docker_cli
from claudegate.deploy.gateway_cli import AUDIT_CLIENT_PREFIX
from claudegate.deploy.gateway_keys import run_gateway_keys
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.deploy.smoke_target import target_for as smoke_target_for
from claudegate.knobs import probe_values
from claudegate.probes.pace import PACE_PATH
from claudegate.probes.wait import pause
from claudegate.probes.wire import Dial
from claudegate.redact import Secret

ALLOWED_MODEL = "claude-haiku-4-5"
FORBIDDEN_MODEL = "claude-opus-4-1"
ALLOWED_BETA = "files-api-2025-04-14"
MAX_TOKENS_CAP = 16
RATE_RPM = 10
_SCOPE = [
    "--models", "claude-haiku-*",
    # A wildcard, as most clients have: path tricks must not walk past the other scopes.
    "--endpoints", "/v1/*", PACE_PATH,
    "--betas", ALLOWED_BETA,
    "--max-tokens", str(MAX_TOKENS_CAP),
    "--no-stream",
]  # fmt: skip
_AUDIT_TAIL_LINES = 20_000

KeysRunner = Callable[[list[str]], str]


def _new_key(output: str) -> Secret:
    lines = output.strip().splitlines()
    if not lines or not lines[-1].startswith("cgk_"):
        raise RuntimeError("the gateway did not print a new key")
    return Secret(lines[-1].strip())


def make_clients(keys: KeysRunner, run_id: str) -> tuple[RunClients, list[str]]:
    """Create the run's clients; returns them and the names to revoke at the end."""
    made: list[str] = []

    def create(role: str, *extra: str) -> Secret:
        name = f"{AUDIT_CLIENT_PREFIX}{role}-{run_id}"
        key = _new_key(keys(["create", name, *_SCOPE, *extra]))
        made.append(name)
        return key

    try:
        run = create("run", "--rpm", "600")
        other = create("other", "--rpm", "120")
        rate = create("rate", "--rpm", str(RATE_RPM))
        revoked = create("revoked")
        keys(["revoke", made[-1]])
        made.pop()  # revoked already
        soon = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        expired = create("expired", "--expires", soon)
    except BaseException:
        revoke_all(keys, made)
        raise
    clients = RunClients(
        run=run, rpm=600, allowed_model=ALLOWED_MODEL, forbidden_model=FORBIDDEN_MODEL,
        max_tokens_cap=MAX_TOKENS_CAP, allowed_beta=ALLOWED_BETA, other=other, revoked=revoked,
        expired=expired, rate=rate, rate_rpm=RATE_RPM, names=tuple(made),
    )
    return clients, made


def revoke_all(keys: KeysRunner, names: Sequence[str]) -> list[str]:
    """Revoke each name; the names that could not be revoked (said in the report)."""
    left = []
    for name in names:
        try:
            keys(["revoke", name])
        except Exception:
            left.append(name)
    return left


def target_for(
    cfg: DeployConfig,
    clients: RunClients | None,
    audit_records: Callable[[], Sequence[dict[str, Any]]] | None,
    *,
    ca_file: Path | None = None,
    probe_source: str | None = None,
) -> AuditTarget:
    """The audit's view of a deployment: the public endpoint and what its config promises."""
    # Where clients connect and what they trust: exactly as the smoke test sees it.
    smoke = smoke_target_for(cfg, trust=ca_file, client_key=None)
    https = cfg.ports.https
    open_ports = [cfg.ports.http, https]
    if not cfg.target.is_local:
        open_ports.append(cfg.target.port)  # the SSH port the deploy itself uses
    # What the config promises, knob by knob (the knob table names the target's fields).
    promised = probe_values(lambda loc: value_at(cfg, loc))
    return AuditTarget(
        base_url=smoke.base_url,
        connect_host=smoke.connect_host,
        http_port=smoke.http_port,
        ca_file=smoke.ca_file,
        **promised,
        allowlist=tuple(str(c) for c in cfg.allowlist),
        probe_source=probe_source,
        clients=clients,
        audit_records=audit_records,
        open_ports=tuple(open_ports),
        # On this machine other services listen too: scan only what the stack could have opened.
        scan_ports=(cfg.ports.http, https, 8080, 9090) if cfg.target.is_local else (),
    )


def parse_audit_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by rotation or a crash
        if isinstance(record, dict):
            records.append(record)
    return records


def tokens_spent(records: Sequence[dict[str, Any]], names: Sequence[str]) -> int:
    wanted = set(names)
    total = 0
    for r in records:
        if r.get("key_name") in wanted:
            for field in ("input_tokens", "output_tokens"):
                value = r.get(field)
                if isinstance(value, int):
                    total += value
    return total


def audit_deployment(
    cfg: DeployConfig,
    keys: KeysRunner,
    read_audit_log: Callable[[], str] | None,
    *,
    quick: bool = False,
    only: tuple[str, ...] = (),
    probe_source: str | None = None,
    remote: tuple[str, Dial] | None = None,
    progress: Callable[[ProbeResult], None] | None = None,
) -> AuditReport:
    """Create the run's clients, attack the deployment, revoke the clients (always)."""
    select_probes(quick, only)  # an unknown --only name fails before anything is created
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
    clients, made = make_clients(keys, run_id)
    names = [*made, f"{AUDIT_CLIENT_PREFIX}revoked-{run_id}"]

    def records() -> list[dict[str, Any]]:
        return parse_audit_lines(read_audit_log()) if read_audit_log is not None else []

    try:
        target = target_for(cfg, clients, records if read_audit_log is not None else None, probe_source=probe_source)
        if remote is not None:
            target = replace(target, remote_name=remote[0], remote_dial=remote[1])
        pause(3.5)  # let the "expired" client's few seconds run out
        report = run_audit(target, quick=quick, only=only, progress=progress)
        if read_audit_log is not None:
            report.tokens_spent = tokens_spent(records(), names)
    finally:
        left = revoke_all(keys, made)
    if left:
        report.notes.append(f"could not revoke {', '.join(left)}: the next deploy revokes audit clients")
    return report


def connector_keys_and_log(
    cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None
) -> tuple[KeysRunner, Callable[[], str]]:
    """The keys runner and the audit-log reader for a deployment reached through ``connector``.

    Both run inside the serving gateway container (``docker exec``), as the
    gateway's user: the log is read where the gateway writes it, by the
    account that owns it, never by root along a path another uid controls.
    """
    def keys(args: list[str]) -> str:
        return run_gateway_keys(cfg, connector, args, layout=layout)

    def read_log() -> str:
        container = serving_gateway_container(cfg, connector, layout)
        argv = docker_cli.exec_in(container, ["tail", "-n", str(_AUDIT_TAIL_LINES), "--", AUDIT_LOG])
        result = connector.run(argv, sudo=uses_sudo(cfg, connector), timeout=60, check=False)
        return result.text if result.ok else ""

    return keys, read_log
