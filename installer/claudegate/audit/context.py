"""What every probe gets: the target, the connection helpers and the evidence it gathers."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from claudegate.audit.result import FAILED, HELD, UNTESTED, Evidence, ProbeResult
from claudegate.audit.target import AuditTarget
from claudegate.probes.wait import pause
from claudegate.probes.wire import Answer, Endpoint, endpoint, exchange, tls_context
from claudegate.redact import redact


class Untestable(Exception):
    """The probe cannot run against this target (say why); it is reported, not counted."""


@dataclass
class Probe:
    """One running probe: collects evidence and problems, ends in a verdict."""

    group: str
    name: str
    fix: str
    secrets: list[str]
    evidence: list[Evidence] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def saw(self, request: str, answer: Answer | str) -> None:
        text = answer if isinstance(answer, str) else answer.describe()
        self.evidence.append(Evidence(redact(request, self.secrets), redact(text, self.secrets)))

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def result(self, detail: str) -> ProbeResult:
        verdict = FAILED if self.problems else HELD
        text = "; ".join(self.problems) if self.problems else detail
        return ProbeResult(
            self.group, self.name, verdict, redact(text, self.secrets)[:600],
            self.fix if self.problems else "", tuple(self.evidence[:40]),
        )

    def untested(self, why: str) -> ProbeResult:
        return ProbeResult(self.group, self.name, UNTESTED, redact(why, self.secrets), "", tuple(self.evidence))


@dataclass
class Run:
    target: AuditTarget
    ep: Endpoint
    timeout: float = 10.0
    # Gateway request ids of requests that must not have reached upstream.
    refused_ids: list[tuple[str, str]] = field(default_factory=list)
    _pace_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_at: float = 0.0

    def _pace(self) -> None:
        """Keep the probes under the edge's own per-address and per-key rates.

        A probe that is refused by a rate limit proves nothing about what it
        tested; the probes that test the limits themselves go unpaced.
        """
        rate = 0.8 * min(self.target.per_ip_rate, self.target.per_key_rate)
        interval = 1.0 / max(rate, 0.5)
        with self._pace_lock:
            now = time.monotonic()
            wait = self._next_at - now
            self._next_at = max(now, self._next_at) + interval
        if wait > 0:
            pause(wait)  # every wait of the audit is a pause: Cancel interrupts it

    @classmethod
    def open(cls, target: AuditTarget, timeout: float = 10.0) -> Run:
        # Parsed as the smoke test parses it (claudegate.probes.wire.endpoint).
        ep = endpoint(
            target.base_url, connect_host=target.connect_host, http_port=target.http_port, what="audit target"
        )
        return cls(target, ep, timeout)

    @property
    def secrets(self) -> list[str]:
        return self.target.clients.secrets() if self.target.clients else []

    def ctx(self) -> ssl.SSLContext:
        return tls_context(self.target.ca_file)

    def https(
        self,
        method: str,
        path: str | bytes,
        headers: Iterable[tuple[str, str | bytes]] = (),
        body: bytes | Iterable[bytes] = b"",
        *,
        paced: bool = True,
        **kwargs: object,
    ) -> Answer:
        if paced:
            self._pace()
        return exchange(self.ep, self.ctx(), method, path, headers, body, timeout=self.timeout, **kwargs)  # type: ignore[arg-type]

    def http(self, method: str, path: str, headers: Iterable[tuple[str, str | bytes]] = (), **kwargs: object) -> Answer:
        self._pace()
        return exchange(self.ep, None, method, path, headers, timeout=self.timeout, **kwargs)  # type: ignore[arg-type]

    def key(self, which: str = "run") -> str | None:
        clients = self.target.clients
        secret = getattr(clients, which, None) if clients is not None else None
        return secret.reveal() if secret is not None else None

    def wait_for_bucket(self, seconds: float = 1.0) -> None:
        # Probes that burst fill the per-address bucket; the next one waits it out.
        pause(seconds)


def probe(group: str, name: str, fix: str, run: Run) -> Probe:
    return Probe(group, name, fix, run.secrets)


__all__ = ["FAILED", "HELD", "UNTESTED", "Probe", "Run", "Untestable", "probe"]
