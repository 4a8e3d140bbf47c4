"""``claudegate audit``: attack a deployed gateway from the outside and report what held.

The probes (TLS, edge, authentication, authorization, limits, allowlist)
send what a hostile client would, byte for byte, and compare the answers
with what the config promises. Each result is ``held``, ``failed`` (with the
config key or component to fix) or ``untested`` (with why). Refused
requests are then looked up in the gateway's audit log to prove that none
reached the upstream API.

This package is core code: it imports no UI library.
"""

from claudegate.audit.result import FAILED, HELD, UNTESTED, AuditReport, Evidence, ProbeResult
from claudegate.audit.runner import probe_names, run_audit
from claudegate.audit.target import AuditTarget, RunClients

__all__ = [
    "FAILED",
    "HELD",
    "UNTESTED",
    "AuditReport",
    "AuditTarget",
    "Evidence",
    "ProbeResult",
    "RunClients",
    "probe_names",
    "run_audit",
]
