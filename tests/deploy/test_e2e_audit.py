"""End to end: `claudegate audit` against a stack deployed to a fresh server over SSH.

The stack is the one the end-to-end modules share (tests/deploy/shared_stack.py);
these tests run first on it and leave it as deployed (the allowlist test
deploys the base config again when it ends).

Every probe that can run must hold against the stack as deployed; the run's
temporary clients are revoked when it ends, and a deploy revokes any that a
killed run left behind. The weakened-stack cases (each protection removed in
turn) are in tests/audit/test_audit_weakened.py.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.config import DeployConfig
from claudegate.deploy.api import connector_for, deploy
from claudegate.keys import list_clients, run_gateway_keys
from tests.deploy.shared_stack import Stack
from tests.deploy.support import write_config
from tests.support.fresh_server import docker_client, start_fresh_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

runner = CliRunner()


@pytest.fixture
def deployed(shared_stack: Stack) -> tuple[Path, DeployConfig]:
    """The shared stack (tests/deploy/shared_stack.py) as deployed: its deploy.yaml, loaded."""
    return shared_stack.write()


def _audit_clients(cfg: DeployConfig) -> dict[str, bool]:
    with connector_for(cfg) as conn:
        return {c.name: c.active for c in list_clients(cfg, conn) if c.name.startswith("claudegate-audit-")}


def test_every_probe_holds_and_nothing_is_left_behind(
    deployed: tuple[Path, DeployConfig], tmp_path: Path
) -> None:
    path, cfg = deployed
    report_file = tmp_path / "audit.html"
    result = runner.invoke(app, ["audit", "--config", str(path), "--json", "--report", str(report_file)])
    assert result.stdout.startswith("{"), (result.exit_code, result.output, result.exception)
    doc = json.loads(result.stdout)
    failed = [(p["name"], p["detail"]) for p in doc["probes"] if p["verdict"] == "failed"]
    assert result.exit_code == 0 and not failed, failed or result.output
    verdicts = {p["name"]: p["verdict"] for p in doc["probes"]}
    # The probes that need nothing special from the target all ran and held.
    for name in ("tls.protocols", "tls.ciphers", "tls.certificate", "edge.errors_shaped", "edge.open_ports",
                 "auth.keys_refused", "authz.path_tricks", "authz.scopes", "authz.other_clients_objects",
                 "limits.body_size", "limits.slow_clients", "limits.key_rpm_exact", "limits.per_ip_burst",
                 "authz.nothing_reached_upstream"):  # fmt: skip
        assert verdicts[name] == "held", (name, verdicts[name])
    # No allowlist in this config: said, not counted as held.
    assert verdicts["allowlist.outside_refused"] == "untested"
    assert doc["tokens_spent"] == 0
    html = report_file.read_text()
    assert "authz.path_tricks" in html and "/v1/%6Dessages" in html
    # Every temporary client was revoked at the end, and no key is in the report.
    clients = _audit_clients(cfg)
    assert clients and not any(clients.values()), clients
    full_key = re.compile(r"cgk_[A-Za-z0-9]{10}_[A-Za-z0-9]{40}")
    assert not full_key.search(html) and not full_key.search(result.stdout)


def test_a_deploy_revokes_clients_a_killed_audit_left(deployed: tuple[Path, DeployConfig]) -> None:
    _path, cfg = deployed
    name = "claudegate-audit-run-killed" + secrets.token_hex(2)
    with connector_for(cfg) as conn:
        run_gateway_keys(cfg, conn, ["create", name, "--models", "claude-haiku-*"])
    assert _audit_clients(cfg)[name] is True
    with connector_for(cfg) as conn:
        again = deploy(cfg, conn)
    assert any(name in change for step in again.steps for change in step.changes), again.plan_text()
    assert _audit_clients(cfg)[name] is False


def test_an_unknown_probe_name_fails_before_anything_is_created(deployed: tuple[Path, DeployConfig]) -> None:
    path, cfg = deployed
    before = _audit_clients(cfg)
    result = runner.invoke(app, ["audit", "--config", str(path), "--only", "tls.nonsense"])
    assert result.exit_code == 2 and "names no probe" in result.output and "tls.protocols" in result.output
    assert _audit_clients(cfg) == before


def test_the_allowlist_probe_from_a_second_ssh_host(shared_stack: Stack, tmp_path: Path) -> None:
    """With an allowlist, the probe needs a vantage point outside it: --from a second server over SSH."""
    server = shared_stack.server
    path = shared_stack.dir / "allowlist.yaml"
    doc = yaml.safe_load(shared_stack.config_path.read_text())
    with start_fresh_server(tmp_path / "vantage", docker_in_docker=False) as vantage:
        docker_client().networks.get(server.network).connect(vantage.container_id)
        # The operator's one SSH key opens both hosts (as it would in life).
        line = server.client_key.public_line
        code, out = vantage.exec(
            ["sh", "-c", f"printf '%s\\n' '{line}' >> /etc/ssh/authorized_keys/{vantage.user}"]
        )
        assert code == 0, out
        # Only this machine's address on the server's network may call the gateway.
        doc["allowlist"] = [f"{server.host_address}/32"]
        cfg = write_config(path.parent, doc, path.name)
        try:
            with connector_for(cfg) as conn:
                again = deploy(cfg, conn)
            assert again.smoke is not None and again.smoke.ok, again.smoke.table() if again.smoke else ""
            alone = runner.invoke(app, ["audit", "--config", str(path), "--only", "allowlist", "--json"])
            assert alone.stdout.startswith("{"), (alone.exit_code, alone.output, alone.exception)
            got = json.loads(alone.stdout)["probes"][0]
            assert got["verdict"] == "untested" and "--from" in got["detail"]
            result = runner.invoke(app, [
                "audit", "--config", str(path), "--only", "allowlist", "--json",
                "--from", f"{vantage.user}@{vantage.ip}", "--from-host-key", vantage.host_key_fingerprint,
            ])  # fmt: skip
            assert result.stdout.startswith("{"), (result.exit_code, result.output, result.exception)
            got = json.loads(result.stdout)["probes"][0]
            assert result.exit_code == 0 and got["verdict"] == "held", (got, result.output)
            assert "403" in got["detail"] and vantage.ip in got["detail"]
        finally:
            shared_stack.restore()  # the modules after this one find the stack without the allowlist
