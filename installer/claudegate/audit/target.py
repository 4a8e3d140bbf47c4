"""What the audit attacks, and what it expects of it.

An :class:`AuditTarget` is the public endpoint (as the smoke test sees it)
plus the protections the config promises: the TLS profile, the limits, the
allowlist, and the narrowly scoped clients made for this run. The probes
compare what the stack does with these promises; a promise the target does
not make (no allowlist, say) makes its probes ``untested``, never ``held``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudegate.knobs import probe_defaults
from claudegate.redact import Secret

#: Reads the gateway's audit records (newest last); None when it cannot be read.
AuditReader = Callable[[], Sequence[dict[str, Any]]]
#: Opens a TCP connection from another vantage point: (host, port, timeout) -> socket.
RemoteDial = Callable[[str, int, float], socket.socket]


@dataclass(frozen=True)
class RunClients:
    """The temporary clients the run created (all revoked at its end).

    ``run`` may call models, count_tokens, messages (``allowed_model`` only,
    max_tokens up to ``max_tokens_cap``, no streaming, only ``allowed_beta``)
    and files, at ``rpm`` requests a minute. ``other`` owns a file that
    ``run`` must not see. ``revoked`` was revoked before the run;
    ``expired`` expired a few seconds into it; ``rate`` has ``rate_rpm``.
    """

    run: Secret
    rpm: int
    allowed_model: str
    forbidden_model: str
    max_tokens_cap: int
    allowed_beta: str
    other: Secret | None = None
    revoked: Secret | None = None
    expired: Secret | None = None
    # A client used only by the exact-rate probe (nothing else spends its window).
    rate: Secret | None = None
    rate_rpm: int = 10
    names: tuple[str, ...] = ()

    def secrets(self) -> list[str]:
        keys = (self.run, self.other, self.revoked, self.expired, self.rate)
        return [s.reveal() for s in keys if s is not None]


_DEFAULTS = probe_defaults()


@dataclass(frozen=True)
class AuditTarget:
    base_url: str  # https://gw.example.com[:port]
    connect_host: str | None = None
    http_port: int = 80
    ca_file: Path | None = None
    # What the config promises: the knob table's defaults (claudegate.knobs),
    # or a deployed config's values (claudegate.deploy.audit_run.target_for).
    tls_profile: str = _DEFAULTS["tls_profile"]  # intermediate: TLS 1.2 + 1.3; modern: 1.3 only
    hsts_min_age: int = 15_552_000
    max_body_bytes: int = _DEFAULTS["max_body_bytes"]
    per_ip_burst: int = _DEFAULTS["per_ip_burst"]
    per_ip_rate: float = _DEFAULTS["per_ip_rate"]  # requests a second the bucket drains at
    per_key_burst: int = _DEFAULTS["per_key_burst"]
    per_key_rate: float = _DEFAULTS["per_key_rate"]
    conn_per_ip: int = _DEFAULTS["conn_per_ip"]
    client_header_timeout: int = _DEFAULTS["client_header_timeout"]
    client_body_timeout: int = _DEFAULTS["client_body_timeout"]
    allowlist: tuple[str, ...] = ()  # CIDRs; empty: no allowlist promised
    # A local address outside the allowlist to send from (tests, or an operator
    # machine with a second address); or a probe run from another host.
    probe_source: str | None = None
    remote_dial: RemoteDial | None = None
    remote_name: str | None = None
    clients: RunClients | None = None
    audit_records: AuditReader | None = None
    # Ports expected open on connect_host; every other port probed must be closed.
    open_ports: tuple[int, ...] = (80, 443)
    scan_ports: tuple[int, ...] = field(default=())
