"""The audit's verdicts and the ways it reports them (table, JSON, Markdown, HTML)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

HELD, FAILED, UNTESTED = "held", "failed", "untested"


@dataclass(frozen=True)
class Evidence:
    """One exchange a probe made: what it sent, what came back."""

    request: str
    answer: str


@dataclass(frozen=True)
class ProbeResult:
    group: str  # tls | edge | auth | authz | limits | allowlist
    name: str  # stable id, e.g. "authz.percent_encoded_path"
    verdict: str  # held | failed | untested
    detail: str
    fix: str = ""  # the config key or component to fix, when failed
    evidence: tuple[Evidence, ...] = ()


@dataclass
class AuditReport:
    target: str
    results: list[ProbeResult] = field(default_factory=list)
    elapsed: float = 0.0
    tokens_spent: int | None = None  # upstream tokens the run cost (from the audit log)
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> int:
        return sum(r.verdict == HELD for r in self.results)

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if r.verdict == FAILED]

    @property
    def tested(self) -> int:
        return sum(r.verdict != UNTESTED for r in self.results)

    @property
    def ok(self) -> bool:
        """Every probe that could run held (untested ones are listed, not counted against)."""
        return not self.failed

    def summary(self) -> str:
        untested = len(self.results) - self.tested
        line = f"{self.held}/{self.tested} probes held"
        if untested:
            line += f", {untested} could not be tested"
        if self.tokens_spent is not None:
            line += f"; upstream tokens spent: {self.tokens_spent}"
        return line

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "summary": self.summary(),
            "held": self.held,
            "tested": self.tested,
            "elapsed": round(self.elapsed, 2),
            "tokens_spent": self.tokens_spent,
            "notes": self.notes,
            "probes": [asdict(r) for r in self.results],
        }

    def table(self) -> str:
        width = max((len(r.name) for r in self.results), default=10)
        lines = [row(r, width) for r in self.results]
        lines.append(self.summary())
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"# claudegate audit of {self.target}", "", f"**{self.summary()}** ({self.elapsed:.0f} s)", ""]
        out += ["| probe | verdict | detail | fix |", "| --- | --- | --- | --- |"]
        for r in self.results:
            out.append(f"| `{r.name}` | {r.verdict} | {_md(r.detail)} | {_md(r.fix)} |")
        out.append("")
        for r in self.results:
            if not r.evidence:
                continue
            out += [f"## {r.name}: {r.verdict}", ""]
            for ev in r.evidence:
                out += ["```", f"> {ev.request}", f"< {ev.answer}", "```"]
            out.append("")
        return "\n".join(out)

    def html(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr class='{esc(r.verdict)}'><td><code>{esc(r.name)}</code></td><td>{esc(r.verdict)}</td>"
            f"<td>{esc(r.detail)}</td><td>{esc(r.fix)}</td><td>"
            + "".join(f"<pre>&gt; {esc(e.request)}\n&lt; {esc(e.answer)}</pre>" for e in r.evidence)
            + "</td></tr>"
            for r in self.results
        )
        return (
            "<!doctype html><meta charset='utf-8'><title>claudegate audit</title>"
            "<style>body{font-family:sans-serif}td{vertical-align:top;border-top:1px solid #ccc;padding:4px}"
            ".failed{background:#fdd}.untested{color:#777}pre{margin:0;white-space:pre-wrap}</style>"
            f"<h1>claudegate audit of {esc(self.target)}</h1><p><b>{esc(self.summary())}</b></p>"
            f"<table><tr><th>probe</th><th>verdict</th><th>detail</th><th>fix</th><th>evidence</th></tr>{rows}</table>"
        )


def row(result: ProbeResult, width: int = 36) -> str:
    mark = {HELD: "held", FAILED: "FAIL", UNTESTED: "----"}[result.verdict]
    text = f"{mark:4}  {result.name:<{width}}  {result.detail}"
    if result.verdict == FAILED and result.fix:
        text += f"  [fix: {result.fix}]"
    return text


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def dumps(report: AuditReport) -> str:
    return json.dumps(report.to_json(), indent=2)
