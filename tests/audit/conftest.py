"""The audit against local stacks: real nginx rendered from EdgeSettings, the real
gateway, the fake upstream; weakened variants are the same stack with one
protection removed (a patched rendered file, or other settings)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claudegate.audit import AuditTarget, RunClients
from claudegate.redact import Secret
from tests.smoke.conftest import (  # noqa: F401  (fixtures)
    CA,
    DOMAIN,
    Edge,
    EdgeFactory,
    ca,
    good_leaf,
    make_edge,
    smoke_gateway,
)
from tests.support.gateway_proc import GatewayProc

SCOPE = [
    "--models", "claude-haiku-*",
    # A wildcard, as most clients have: path tricks must not walk past the other scopes.
    "--endpoints", "/v1/*", "/v1/claudegate/pace",
    "--betas", "files-api-2025-04-14",
    "--max-tokens", "16",
    "--no-stream",
]


def make_clients(gw: GatewayProc) -> RunClients:
    tag = secrets.token_hex(3)
    run = gw.create_key(f"audit-run-{tag}", *SCOPE, "--rpm", "600")
    other = gw.create_key(f"audit-other-{tag}", *SCOPE, "--rpm", "600")
    revoked = gw.create_key(f"audit-revoked-{tag}", *SCOPE)
    gw.cli("keys", "revoke", f"audit-revoked-{tag}")
    # Already past: the gateway refuses it exactly as one that ran out a moment ago (both compare
    # expires_at with now, tests/gateway/test_lifecycle.py), and no test waits for it to run out.
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = gw.create_key(f"audit-expired-{tag}", *SCOPE, "--expires", past)
    rate = gw.create_key(f"audit-rate-{tag}", *SCOPE, "--rpm", "10")
    return RunClients(
        run=Secret(run), rpm=600, allowed_model="claude-haiku-4-5", forbidden_model="claude-opus-4-1",
        max_tokens_cap=16, allowed_beta="files-api-2025-04-14", other=Secret(other), revoked=Secret(revoked),
        expired=Secret(expired), rate=Secret(rate), rate_rpm=10,
    )


AuditFactory = Callable[..., AuditTarget]


@pytest.fixture
def audit_target(ca: CA, smoke_gateway: GatewayProc) -> AuditFactory:  # noqa: F811
    def make(edge: Edge, **overrides: Any) -> AuditTarget:
        s = edge.settings
        values: dict[str, Any] = {
            "base_url": f"https://{DOMAIN}:{s.https_port}",
            "connect_host": "127.0.0.1",
            "http_port": s.http_port,
            "ca_file": ca.root,
            "tls_profile": s.tls_profile,
            "max_body_bytes": s.max_body_bytes,
            "per_ip_burst": s.per_ip.burst,
            "per_ip_rate": s.per_ip.per_second,
            "per_key_burst": s.per_key.burst,
            "per_key_rate": s.per_key.per_second,
            "conn_per_ip": s.conn_per_ip,
            "client_header_timeout": s.client_header_timeout,
            "client_body_timeout": s.client_body_timeout,
            "clients": make_clients(smoke_gateway),
            "audit_records": lambda: smoke_gateway.audit(0, timeout=0),
            "open_ports": (s.http_port, s.https_port),
            "scan_ports": (s.http_port, s.https_port),
        }
        values.update(overrides)
        return AuditTarget(**values)

    return make
