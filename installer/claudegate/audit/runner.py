"""Run the probes in order, report each as it ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from claudegate.audit import probes_auth, probes_edge, probes_limits, probes_tls
from claudegate.audit.context import Run, Untestable
from claudegate.audit.result import FAILED, UNTESTED, AuditReport, ProbeResult
from claudegate.audit.target import AuditTarget
from claudegate.redact import redact

ProbeFn = Callable[[Run], ProbeResult]

#: The order matters: bursts last but one (they fill the per-address bucket),
#: the audit-log proof after every request it checks.
FULL: tuple[ProbeFn, ...] = (
    *probes_tls.PROBES,
    *probes_edge.PROBES,
    probes_auth.authentication,
    probes_auth.path_tricks,
    probes_auth.scopes,
    probes_auth.other_clients_objects,
    probes_limits.body_size,
    probes_limits.slow_clients,
    probes_limits.connection_cap,
    probes_limits.allowlist,
    probes_limits.key_rate,
    probes_limits.burst,
    probes_auth.upstream_proof,
)
QUICK: tuple[ProbeFn, ...] = tuple(
    fn for fn in FULL if fn in (*probes_tls.QUICK, *probes_edge.QUICK, *probes_auth.QUICK, *probes_limits.QUICK)
)


def probe_names(quick: bool = False) -> list[str]:
    return [fn.__name__ for fn in (QUICK if quick else FULL)]


def run_audit(
    target: AuditTarget,
    *,
    quick: bool = False,
    only: tuple[str, ...] = (),
    timeout: float = 10.0,
    progress: Callable[[ProbeResult], None] | None = None,
) -> AuditReport:
    """Attack ``target`` with every probe (or the quick subset); never raises for a weak stack."""
    run = Run.open(target, timeout)
    report = AuditReport(target.base_url)
    started = time.monotonic()
    for fn in QUICK if quick else FULL:
        try:
            result = fn(run)
        except Untestable as exc:
            result = ProbeResult("?", fn.__name__, UNTESTED, str(exc))
        except Exception as exc:  # a probe must not take the scan down: say what happened
            text = redact(f"{type(exc).__name__}: {exc}", run.secrets)
            result = ProbeResult("?", fn.__name__, FAILED, f"the probe itself failed: {text}", "report this")
        if only and not any(result.name.startswith(o) or result.group == o for o in only):
            continue
        report.results.append(result)
        if progress is not None:
            progress(result)
    report.elapsed = time.monotonic() - started
    return report
