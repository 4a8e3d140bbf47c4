"""``claudegate audit``: attack the deployed gateway from outside, report what held."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate.cli import output
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, JsonOpt, run, session

__all__ = ["audit_command"]


def audit_command(
    config: ConfigOpt = DEFAULT_CONFIG,
    quick: Annotated[bool, typer.Option("--quick", help="the fast subset a deploy runs (no bursts, no slow clients)")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="PROBE", help="run only this probe or group (repeat), e.g. authz or tls.protocols"),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", metavar="FILE.md|FILE.html", help="write every probe's evidence here")
    ] = None,
    probe_source: Annotated[
        str | None,
        typer.Option("--probe-source", metavar="ADDRESS",
                     help="a local address outside the allowlist to send the allowlist probe from"),
    ] = None,
    vantage: Annotated[
        str | None,
        typer.Option("--from", metavar="USER@HOST[:PORT]",
                     help="send the allowlist probe from this SSH host (outside the allowlist); nothing runs there"),
    ] = None,
    vantage_host_key: Annotated[
        str | None,
        typer.Option("--from-host-key", metavar="SHA256:...", help="the --from host's key on first contact"),
    ] = None,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Attack the deployed gateway the way a hostile client would, and report what held.

    \b
    Groups: tls (versions, suites, certificate, HSTS, redirect), edge (every
    error Anthropic-shaped, no internal endpoint, only 80/443 open), auth (bad,
    misplaced, revoked, expired keys), authz (path and encoding tricks, scopes,
    another client's files; the gateway's audit log proves nothing reached
    upstream), limits (burst, exact per-key rate, body size, slow clients,
    connection cap), allowlist (needs a vantage point outside it: --from an
    SSH host, whose TCP connections carry the probe, or --probe-source, a
    second address of this machine; otherwise it is reported untested).

    Temporary clients are created for the run and revoked at its end. The scan
    spends no upstream tokens (what reaches upstream: model lists and one
    small file it deletes again); the summary says how many it spent. Exit 0
    only when every probe that could run held; each failure names the config
    key or component to fix.

    \b
      claudegate audit
      claudegate audit --only authz --report audit.html
      claudegate audit --only allowlist --from ops@bastion.example.com
    """

    def body() -> None:
        from claudegate.errors import ConfigError

        if report is not None and report.suffix.lower() not in (".md", ".html", ".htm"):
            raise ConfigError(f"--report {report}: give a .md or .html file name")
        with session(config, accept_host_key=accept_host_key) as s:
            result = s.audit(quick=quick, only=tuple(only or ()), probe_source=probe_source,
                             vantage=vantage, vantage_host_key=vantage_host_key)
        if s.config.several_hosts:  # every host's edge, each under its header
            _hosts(result, report, json_out)
            return
        _one(result, report, json_out)

    run(body)


def _one(result: Any, report: Path | None, json_out: bool) -> None:
    from claudegate.audit.result import row
    from claudegate.errors import AuditFailed

    if report is not None:
        text = result.html() if report.suffix.lower() in (".html", ".htm") else result.markdown()
        report.write_text(text)
        output.err(f"report written to {report}")
    if json_out:
        import json

        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        for probe in result.results:
            print(row(probe))
        print(result.summary())
        for note in result.notes:
            output.err(f"note: {note}")
    if not result.ok:
        names = [r.name for r in result.failed]
        fixes = "; ".join(f"{r.name}: {r.fix}" for r in result.failed if r.fix)
        raise AuditFailed(f"{len(names)} probe(s) did not hold: {', '.join(names)}", failed=names, hint=fixes)


def _hosts(runs: Any, report: Path | None, json_out: bool) -> None:
    """Every host's audit; a probe that did not hold on any host fails the run, naming the host."""
    from claudegate.audit.result import row
    from claudegate.errors import AuditFailed

    if report is not None:
        html = report.suffix.lower() in (".html", ".htm")
        # One report per host beside the named one: report.md -> report.host1.md, ...
        for run in runs.runs:
            if run.result is not None:
                path = report.with_name(f"{report.stem}.host{run.index}{report.suffix}")
                path.write_text(run.result.html() if html else run.result.markdown())
                output.err(f"report for {run.label} written to {path}")

    def text(result: Any) -> str:
        lines = [row(probe) for probe in result.results] + [result.summary()]
        return "\n".join(lines + [f"note: {n}" for n in result.notes])

    output.each_host(runs, json_out=json_out, text=text)  # raises first when a host could not be audited
    failed = [(run.label, r) for run in runs.runs if run.result is not None for r in run.result.failed]
    if failed:
        names = [f"{probe.name} on {label}" for label, probe in failed]
        fixes = "; ".join(sorted({f"{probe.name}: {probe.fix}" for _, probe in failed if probe.fix}))
        raise AuditFailed(f"{len(failed)} probe(s) did not hold: {', '.join(names)}",
                          failed=[probe.name for _, probe in failed], hint=fixes or None)  # fmt: skip
