"""``claudegate usage``: requests and tokens per client per day, from the audit log (``Session.usage``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from claudegate.cli import output
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, run, session

__all__ = ["usage_command"]


def usage_command(
    config: ConfigOpt = DEFAULT_CONFIG,
    client: Annotated[str | None, typer.Option("--client", metavar="NAME", help="only this client")] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="YYYY-MM-DD", help="from this UTC day on")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    csv_out: Annotated[
        bool, typer.Option("--csv", help="CSV on stdout (one row per client per day)")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option("--from", metavar="ledger|audit-logs",
                     help="where the figures come from (default: ledger with several hosts, else audit-logs)"),
    ] = None,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Requests, input and output tokens per client per UTC day, with a cost estimate.

    Read from the gateway's audit log on the host (local or over SSH); the
    cost uses the list prices in claudegate/prices.py (their date is printed),
    at standard rates: caching and batch discounts are not applied.

    With several hosts (hosts:) the default is the durable usage ledger in
    state.postgres (--from ledger), read through the first host that
    answers: it outlives any host and needs one host up. It holds the tokens
    charged to each client per UTC day (TOKENS; --json has requests, input,
    output and cost as null). stderr says where the figures come from. --from audit-logs sums every host's audit
    log instead (requests, models, cost); a host that cannot be read is then
    named with a WARNING ("missing_hosts" in --json), and the command fails
    only when no host can be read.

    \b
      claudegate usage
      claudegate usage --client team-a --since 2026-11-01 --csv > team-a.csv
      claudegate usage --from audit-logs          (several hosts: sum their logs)
    """

    def body() -> None:
        from claudegate.errors import ConfigError
        from claudegate.usage import parse_since

        if json_out and csv_out:
            raise ConfigError("--json and --csv: choose one output format")
        if source not in (None, "ledger", "audit-logs"):
            raise ConfigError(f"--from: {source!r} is not a source", hint="use --from ledger or --from audit-logs")
        first = parse_since(since) if since is not None else None
        with session(config, accept_host_key=accept_host_key) as s:
            report = s.usage(client=client, since=first, source=source)
        if report.hosts_text():
            output.err(report.hosts_text())
        if json_out:
            import json

            print(json.dumps(report.to_json(), indent=2))
        elif csv_out:
            sys.stdout.write(report.to_csv())
        else:
            print(report.text())

    run(body)
