"""Run the probes in order, report each as it ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from claudegate.audit import probes_auth, probes_edge, probes_limits, probes_tls
from claudegate.audit.context import Run, Untestable
from claudegate.audit.result import FAILED, UNTESTED, AuditReport, ProbeResult
from claudegate.audit.target import AuditTarget
from claudegate.errors import ConfigError
from claudegate.redact import redact

ProbeFn = Callable[[Run], ProbeResult]

#: Every probe by the name of its result, in the order they run. The order
#: matters: the bursts come late (they fill the per-address bucket), and the
#: audit-log proof after every request it checks.
FULL: tuple[tuple[str, ProbeFn], ...] = (
    ("tls.protocols", probes_tls.protocols),
    ("tls.ciphers", probes_tls.ciphers),
    ("tls.certificate", probes_tls.certificate),
    ("tls.hsts", probes_tls.hsts),
    ("tls.redirect", probes_tls.redirect),
    ("edge.errors_shaped", probes_edge.errors_shaped),
    ("edge.internal_endpoints", probes_edge.internal_endpoints),
    ("edge.open_ports", probes_edge.open_ports),
    ("edge.stream_unbuffered", probes_edge.stream_unbuffered),
    ("auth.keys_refused", probes_auth.authentication),
    ("authz.path_tricks", probes_auth.path_tricks),
    ("authz.scopes", probes_auth.scopes),
    ("authz.other_clients_objects", probes_auth.other_clients_objects),
    ("limits.body_size", probes_limits.body_size),
    ("limits.slow_clients", probes_limits.slow_clients),
    ("limits.connection_cap", probes_limits.connection_cap),
    ("allowlist.outside_refused", probes_limits.allowlist),
    ("limits.large_body_fairness", probes_limits.fairness),
    ("limits.key_rpm_exact", probes_limits.key_rate),
    ("limits.rpm_on_lists", probes_limits.rpm_on_lists),
    ("limits.per_ip_burst", probes_limits.burst),
    ("authz.nothing_reached_upstream", probes_auth.upstream_proof),
)
#: What ``deploy`` runs after the smoke test when the config says ``audit: true``:
#: seconds, not minutes, and no burst.
QUICK_NAMES = frozenset({
    "tls.protocols", "tls.certificate", "edge.errors_shaped", "edge.stream_unbuffered", "auth.keys_refused", "authz.path_tricks",
    "limits.body_size", "allowlist.outside_refused", "authz.nothing_reached_upstream",
})  # fmt: skip


def probe_names(quick: bool = False) -> list[str]:
    return [name for name, _ in FULL if not quick or name in QUICK_NAMES]


def select_probes(quick: bool, only: tuple[str, ...] = ()) -> list[tuple[str, ProbeFn]]:
    chosen = [(n, fn) for n, fn in FULL if not quick or n in QUICK_NAMES]
    if only:
        chosen = [(n, fn) for n, fn in chosen if any(n == o or n.startswith(o.rstrip(".") + ".") for o in only)]
        if not chosen:
            known = ", ".join(n for n, _ in FULL)
            raise ConfigError(f"--only {', '.join(only)} names no probe", hint=f"known probes: {known}")
    return chosen


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
    for name, fn in select_probes(quick, only):
        group = name.split(".")[0]
        try:
            result = fn(run)
        except Untestable as exc:
            result = ProbeResult(group, name, UNTESTED, str(exc))
        except Exception as exc:  # a probe must not take the scan down: say what happened
            text = redact(f"{type(exc).__name__}: {exc}", run.secrets)
            result = ProbeResult(group, name, FAILED, f"the probe itself failed: {text}", "report this bug")
        report.results.append(result)
        if progress is not None:
            progress(result)
    report.elapsed = time.monotonic() - started
    return report
