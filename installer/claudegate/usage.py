"""Usage per client per day, summed from the gateway's audit log on the host.

The audit log (``audit.jsonl``, plus any rotated ``audit.jsonl.N`` / ``.gz``
beside it) holds one JSON line per request with the client's name, the
model, the status and the metered input and output tokens. It is read over
the connector (local or SSH), from inside the serving gateway container and
as its user (``docker exec ... cat``): the log directory is writable by that
user, so a root-run ``cat`` on the host could be led along a symlink planted
there. The lines are summed here; the cost is an estimate from
:mod:`claudegate.prices`.

Model names in the log come from clients: they are shown only escaped
(no control characters reach the operator's terminal) and cut short.

On several hosts (``hosts:``) every host keeps its own audit log of the
requests it served, so the fleet's usage is every host's log summed
(:func:`fleet_usage`): a host that cannot be read is named in the report
(``missing_hosts``), and the report fails only when no host can be read.

Requests without a client (refused before authentication) are not anyone's
usage and are left out; a line that is not a JSON object is counted in
``skipped_lines`` rather than failing the report.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from claudegate.config.derive import GATEWAY_AUDIT_LOG
from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy import docker_cli, gateway_cli
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.errors import ClaudegateError, ConfigError
from claudegate.prices import PRICES_AS_OF, price_for

__all__ = [
    "UsageReport", "UsageRow", "audit_lines", "fleet_usage", "ledger_usage", "parse_since", "read_usage", "summarize",
]

_AUDIT_FILE = re.compile(r"^audit\.jsonl(\.\d+)?(\.gz)?$")


@dataclass(frozen=True)
class UsageRow:
    """One client's UTC day. From the durable ledger only ``tokens`` is known (the rest is None)."""

    client: str
    day: str  # YYYY-MM-DD, UTC
    requests: int | None
    errors: int | None  # requests answered with a status >= 400
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None  # None when no model of the row has a price (or the ledger: no models)
    unpriced_models: tuple[str, ...] = ()  # models the estimate leaves out
    ledger_tokens: int | None = None  # the ledger's total (input + output), when that is the source

    @property
    def tokens(self) -> int:
        if self.ledger_tokens is not None:
            return self.ledger_tokens
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "day": self.day,
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tokens": self.tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "unpriced_models": list(self.unpriced_models),
        }


@dataclass(frozen=True)
class UsageReport:
    rows: tuple[UsageRow, ...]
    client: str | None = None
    since: date | None = None
    files: tuple[str, ...] = ()
    skipped_lines: int = 0
    prices_as_of: str = PRICES_AS_OF
    #: Several hosts: the hosts whose audit logs are summed, and those that could not be read (with why).
    hosts: tuple[str, ...] = ()
    missing_hosts: tuple[str, ...] = ()
    #: Where the figures come from: "audit-logs" (the hosts' logs) or "ledger" (state.postgres's daily totals).
    source: str = "audit-logs"
    #: The ledger: which host read it.
    answered_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "answered_by": self.answered_by,
            "client": self.client,
            "since": self.since.isoformat() if self.since else None,
            "prices_as_of": self.prices_as_of,
            "files": list(self.files),
            "skipped_lines": self.skipped_lines,
            "rows": [r.to_json() for r in self.rows],
            "hosts": list(self.hosts),
            "missing_hosts": list(self.missing_hosts),
        }

    def hosts_text(self) -> str:
        """Where the figures come from (several hosts, or the ledger; empty otherwise)."""
        if self.source == "ledger":
            text = (
                "from the durable usage ledger in state.postgres (tokens charged per client per UTC day; it keeps "
                "no requests, models or input/output split: --from audit-logs sums the hosts' logs for those)"
            )
            if self.answered_by:
                text += f"; {self.answered_by}"
            return text
        if not self.hosts:
            return ""
        text = f"summed from the audit logs of {', '.join(self.hosts)}"
        if self.missing_hosts:
            text += f"\nWARNING: these hosts' requests are NOT counted: {'; '.join(self.missing_hosts)}"
        return text

    def to_csv(self) -> str:
        out = io.StringIO()
        columns = ["client", "day", "requests", "errors", "input_tokens", "output_tokens", "cost_usd"]
        if self.source == "ledger":
            columns = ["client", "day", "tokens"]
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row.to_json())
        return out.getvalue()

    def text(self) -> str:
        if not self.rows:
            who = f" for client {self.client}" if self.client else ""
            when = f" since {self.since.isoformat()}" if self.since else ""
            if self.source == "ledger":
                return f"nothing charged{who}{when} in the usage ledger"
            return f"no requests{who}{when} in the audit log"
        if self.source == "ledger":
            head: tuple[str, ...] = ("CLIENT", "DAY", "TOKENS")
            ledger: list[tuple[str, ...]] = [(r.client, r.day, str(r.tokens)) for r in self.rows]
            ledger.append(("TOTAL", "", str(sum(r.tokens for r in self.rows))))
            return _table([head, *ledger]) + "\ntokens: input + output, as charged to each key"
        head = ("CLIENT", "DAY", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "COST (USD)")
        body = [
            (r.client, r.day, str(r.requests), str(r.errors), str(r.input_tokens), str(r.output_tokens),
             "-" if r.cost_usd is None else f"{r.cost_usd:.4f}" + ("*" if r.unpriced_models else ""))
            for r in self.rows
        ]  # fmt: skip
        total_cost = sum(r.cost_usd or 0.0 for r in self.rows)
        body.append(
            ("TOTAL", "", str(sum(r.requests or 0 for r in self.rows)), str(sum(r.errors or 0 for r in self.rows)),
             str(sum(r.input_tokens or 0 for r in self.rows)), str(sum(r.output_tokens or 0 for r in self.rows)),
             f"{total_cost:.4f}")
        )  # fmt: skip
        lines = [_table([head, *body])]
        lines.append(
            f"cost: an estimate at standard list prices as of {self.prices_as_of} (claudegate/prices.py)"
        )
        unpriced = sorted({m for r in self.rows for m in r.unpriced_models})
        if unpriced:
            lines.append(f"* not priced (no row in the price table): {', '.join(unpriced)}")
        return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell: the first two left-aligned, the figures right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)  # fmt: skip


def parse_since(text: str) -> date:
    """``2026-11-01`` (a UTC day); raises ConfigError naming ``--since``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since: {text!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-11-01"
        ) from None


@dataclass
class _Sum:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    by_model: dict[str, tuple[int, int]] = field(default_factory=dict)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _day(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).date().isoformat()


MODEL_SHOWN_MAX = 80  # characters of a model name a report shows
UNPRICED_SHOWN_MAX = 10  # unpriced model names a row lists


def _shown(model: str) -> str:
    """A client-chosen model name made safe to print: escaped, no control characters, cut short."""
    text = (
        model.encode("unicode_escape").decode("ascii")
        if not model.isprintable() or not model.isascii()
        else model
    )
    return text if len(text) <= MODEL_SHOWN_MAX else text[: MODEL_SHOWN_MAX - 1] + "…"


def summarize(
    lines: Iterable[bytes | str], *, client: str | None = None, since: date | None = None
) -> tuple[list[UsageRow], int]:
    """Sum audit lines per client per day: (rows sorted by client then day, lines skipped)."""
    sums: dict[tuple[str, str], _Sum] = {}
    skipped = 0
    first_day = since.isoformat() if since else None
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(record, dict):
            skipped += 1
            continue
        name = record.get("key_name")
        day = _day(record.get("time"))
        if not isinstance(name, str) or day is None:
            continue  # unauthenticated, or no time: nobody's usage
        if (client is not None and name != client) or (first_day is not None and day < first_day):
            continue
        entry = sums.setdefault((name, day), _Sum())
        # A batch settlement (the gateway's own record) is tokens upstream billed, not a request.
        if record.get("event") != "batch_settled":
            entry.requests += 1
        status = record.get("status")
        if isinstance(status, int) and status >= 400:
            entry.errors += 1
        tokens_in, tokens_out = _count(record.get("input_tokens")), _count(record.get("output_tokens"))
        entry.input_tokens += tokens_in
        entry.output_tokens += tokens_out
        raw_model = record.get("model")
        model = _shown(raw_model) if isinstance(raw_model, str) else ""
        had = entry.by_model.get(model, (0, 0))
        entry.by_model[model] = (had[0] + tokens_in, had[1] + tokens_out)
    rows = []
    for (name, day), entry in sorted(sums.items()):
        cost: float | None = None
        unpriced: list[str] = []
        for model, (tokens_in, tokens_out) in entry.by_model.items():
            if tokens_in == 0 and tokens_out == 0:
                continue  # models list, refused requests: nothing to price
            price = price_for(model)
            if price is None:
                if len(unpriced) < UNPRICED_SHOWN_MAX:
                    unpriced.append(model or "(no model)")
                elif len(unpriced) == UNPRICED_SHOWN_MAX:
                    unpriced.append("(more)")
                continue
            cost = (cost or 0.0) + price.cost(tokens_in, tokens_out)
        if cost is None and not unpriced:
            cost = 0.0
        rows.append(
            UsageRow(name, day, entry.requests, entry.errors, entry.input_tokens, entry.output_tokens, cost,
                     tuple(sorted(unpriced)))
        )  # fmt: skip
    return rows, skipped


def _in_gateway(
    cfg: DeployConfig, connector: Connector, container: str, argv: list[str], *, what: str = "the audit log"
) -> bytes:
    full = docker_cli.exec_in(container, argv)
    result = connector.run(full, sudo=uses_sudo(cfg, connector), timeout=300, check=False)
    if not result.ok:
        stderr = connector.redact(result.stderr.decode("utf-8", errors="replace")).strip()
        raise ClaudegateError(
            f"cannot read {what} in {container} on {connector.target}: {stderr or 'failed'}",
            hint="the serving gateway must run: see claudegate status",
        )
    return result.stdout


def _audit_files(names: str) -> list[str]:
    """The audit files among a directory listing, oldest first (``.3``, ``.2``, ``.1``, then the live one)."""
    found = [n for n in names.split() if _AUDIT_FILE.match(n)]

    def age(name: str) -> int:
        match = re.search(r"\.(\d+)", name)
        return -int(match.group(1)) if match else 0

    return sorted(found, key=age)


def read_usage(
    cfg: DeployConfig,
    connector: Connector,
    *,
    client: str | None = None,
    since: date | None = None,
    layout: HostLayout | None = None,
) -> UsageReport:
    """Usage per client per day from the audit log on the host (read-only)."""
    files, lines = audit_lines(cfg, connector, layout)
    rows, skipped = summarize(lines, client=client, since=since)
    return UsageReport(tuple(rows), client=client, since=since, files=tuple(files), skipped_lines=skipped)


def fleet_usage(
    read: list[tuple[str, list[str], list[bytes]]],
    missing: list[str],
    *,
    client: str | None = None,
    since: date | None = None,
) -> UsageReport:
    """The fleet's usage: ``read`` is (host label, files, lines) of each host whose log was read."""
    lines = [line for _, _, host_lines in read for line in host_lines]
    rows, skipped = summarize(lines, client=client, since=since)
    files = tuple(f"{label}:{path}" for label, paths, _ in read for path in paths)
    return UsageReport(
        tuple(rows), client=client, since=since, files=files, skipped_lines=skipped,
        hosts=tuple(label for label, _, _ in read), missing_hosts=tuple(missing),
    )  # fmt: skip


def ledger_usage(
    cfg: DeployConfig,
    connector: Connector,
    *,
    client: str | None = None,
    since: date | None = None,
    layout: HostLayout | None = None,
) -> UsageReport:
    """Tokens per client per UTC day from state.postgres's ledger, read through this host's serving gateway.

    The ledger is what every replica settles into (every key's tokens, with
    or without a daily budget) and outlives any host, so one answering host
    is enough.
    """
    argv = ["state", "usage"]
    if client is not None:
        argv += ["--client", client]
    if since is not None:
        argv += ["--since", since.isoformat()]
    container = serving_gateway_container(cfg, connector, layout)
    raw = _in_gateway(cfg, connector, container, gateway_cli.gateway_command(argv), what="the usage ledger")
    try:
        found = json.loads(raw)
        rows = tuple(
            UsageRow(str(r["client"]), str(r["day"]), None, None, None, None, None, ledger_tokens=int(r["tokens"]))
            for r in found
        )
    except (ValueError, KeyError, TypeError):
        raise ClaudegateError(f"the usage ledger read in {container} on {connector.target} is not the JSON expected") from None
    return UsageReport(rows, client=client, since=since, source="ledger")


def audit_lines(
    cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None
) -> tuple[list[str], list[bytes]]:
    """The audit log files in the serving gateway and their lines, rotated ones included."""
    container = serving_gateway_container(cfg, connector, layout)
    directory = posixpath.dirname(GATEWAY_AUDIT_LOG)
    files = [
        posixpath.join(directory, n)
        for n in _audit_files(_in_gateway(cfg, connector, container, ["ls", "-1A", "--", directory]).decode())
    ]
    lines: list[bytes] = []
    for path in files:
        data = _in_gateway(cfg, connector, container, ["cat", "--", path])
        if path.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                raise ClaudegateError(f"{path} in {container} is not a readable gzip file") from None
        lines += data.splitlines()
    return files, lines
