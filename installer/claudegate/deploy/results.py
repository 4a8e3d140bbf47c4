"""What the public functions return: plain data, with text and JSON renderings."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudegate.deploy.steps.host import INSTALL_DOCKER
from claudegate.redact import Secret
from claudegate.smoke import SmokeReport

__all__ = [
    "ClientExpiry",
    "ContainerStatus",
    "DeployResult",
    "ImageStatus",
    "RenderResult",
    "StatusReport",
    "StepReport",
]


@dataclass(frozen=True)
class StepReport:
    """One step of a run: what it changed (or, in a dry run, would change)."""

    name: str
    title: str
    changes: tuple[str, ...]
    diffs: tuple[str, ...]  # unified diffs of rendered files, where a change has one
    elapsed: float

    @property
    def changed(self) -> bool:
        return bool(self.changes)


#: Changes that cannot be undone by another deploy: the short plan lists each of them.
_IRREVERSIBLE = ("revoke ",)


@dataclass(frozen=True)
class DeployResult:
    """The outcome of ``deploy`` / ``plan`` / ``rollback`` / ``uninstall``.

    ``new_client_keys`` holds the keys made by this run (client name ->
    :class:`~claudegate.redact.Secret`); show them once, they are not
    retrievable later (copies are in ``<state_dir>/keys``, 0600).
    """

    playbook: str
    dry_run: bool
    target: str
    release_id: str | None
    previous_release: str | None
    steps: tuple[StepReport, ...]
    new_client_keys: dict[str, Secret] = field(default_factory=dict)
    smoke: SmokeReport | None = None
    elapsed: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def changed_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.changed]

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    @property
    def installs_docker(self) -> bool:
        """True when the run installs (or, in a dry run, would install) Docker on the host."""
        return any(INSTALL_DOCKER in s.changes for s in self.steps if s.name == "docker")

    def summary_text(self, width: int = 80) -> str:
        """One line per step that changes: how many changes and the first of them, each line ``width``
        columns at most; then how many rendered files differ. :meth:`plan_text` has every change and the
        diffs."""
        verb = "would change" if self.dry_run else "changed"
        changed = [s for s in self.steps if s.changed]
        lines = [f"{self.playbook} on {self.target}: release {self.release_id or '-'}, "
                 + (f"{len(changed)} of {len(self.steps)} steps {verb}" if changed else "no changes")]
        name_width = max((len(s.name) for s in changed), default=0)
        for step in changed:
            # A revocation cannot be undone: it is never summed up in a count, each has its own line.
            revokes = [c for c in step.changes[1:] if c.startswith(_IRREVERSIBLE)]
            count = len(step.changes) - len(revokes)
            more = f" (+{count - 1} more)" if count > 1 else ""
            head = f"  {step.name:<{name_width}}  "
            room = width - len(head) - len(more)
            lines.append(head + textwrap.shorten(step.changes[0], room, placeholder="…") + more)
            lines += [" " * len(head) + textwrap.shorten(c, width - len(head), placeholder="…") for c in revokes]
        # A step's diff text may hold several files: count their "+++ " headers.
        files = sum(line.startswith("+++ ") for s in self.steps for d in s.diffs for line in d.splitlines())
        if files:
            lines.append(f"  {files} rendered file{'s' if files != 1 else ''} {verb}")
        return "\n".join(lines) + "\n"

    def plan_text(self, *, diffs: bool = True) -> str:
        """Every change, step by step, then the diffs; "no changes" when there are none."""
        verb = "would change" if self.dry_run else "changed"
        lines = [f"{self.playbook} on {self.target}: release {self.release_id or '-'}"]
        for step in self.steps:
            for change in step.changes:
                lines.append(f"  {step.name}: {change}")
        if not self.changed:
            lines.append("  no changes")
        else:
            lines.append(f"  {len(self.changed_steps)} step(s) {verb}: {', '.join(self.changed_steps)}")
        text = "\n".join(lines) + "\n"
        if diffs:
            text += "".join(d for s in self.steps for d in s.diffs)
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "dry_run": self.dry_run,
            "target": self.target,
            "release_id": self.release_id,
            "previous_release": self.previous_release,
            "changed": self.changed,
            "changed_steps": self.changed_steps,
            "steps": [
                {
                    "name": s.name,
                    "title": s.title,
                    "changes": list(s.changes),
                    "elapsed_seconds": round(s.elapsed, 3),
                }
                for s in self.steps
            ],
            # Names only: the keys themselves are never put in machine output.
            "new_clients": sorted(self.new_client_keys),
            "smoke": self.smoke.to_json() if self.smoke is not None else None,
            "elapsed_seconds": round(self.elapsed, 3),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RenderResult:
    release_id: str
    gateway_id: str
    out_dir: Path
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    role: str
    status: str
    health: str | None
    image: str
    started_at: str
    gateway_id: str | None = None


EXPIRY_WARNING_DAYS = 14  # status warns of client keys that stop working this soon


@dataclass(frozen=True)
class ClientExpiry:
    """A client key that stops working soon (``status`` warns of it)."""

    name: str
    expires_at: str  # ISO 8601, UTC
    days_left: float

    def text(self) -> str:
        left = (
            f"in {self.days_left:.1f} days" if self.days_left >= 1 else f"in {self.days_left * 24:.1f} hours"
        )
        return (
            f"client {self.name} expires {self.expires_at} ({left}); set a later clients[].expires and deploy"
        )


@dataclass(frozen=True)
class ImageStatus:
    """The serving release's images: when they were built, and whether this claudegate builds the same."""

    built: dict[str, str]  # "gateway" / "nginx" -> when the image was built (docker's Created)
    refreshed: str  # the deploy --refresh stamp they were built with ("" = never refreshed)
    same_as_this_claudegate: bool  # False: this claudegate would build other images (update by deploying)
    version: str  # this claudegate's version

    def text(self) -> str:
        built = ", ".join(f"{name} built {when}" for name, when in sorted(self.built.items())) or "unknown"
        verdict = (
            "this claudegate builds the same images"
            if self.same_as_this_claudegate
            else f"this claudegate ({self.version}) builds newer images: claudegate deploy updates them"
        )
        return f"{built}; {verdict}"


@dataclass(frozen=True)
class StatusReport:
    target: str
    docker: str | None  # engine version, None when it does not answer
    current_release: str | None
    previous_release: str | None
    containers: tuple[ContainerStatus, ...]
    certificate: str | None
    lock: str | None  # who holds the deploy lock, if anyone
    last_run: dict[str, Any] | None  # the journal of the last run
    client_expiry: tuple[ClientExpiry, ...] = ()  # clients expiring within the warning window
    clients_unknown: str | None = None  # why the clients could not be read, when they could not
    images: ImageStatus | None = None  # None when nothing is deployed
    served_certificate: str | None = None  # what the HTTPS port presents (not the file on disk)
    renewal: dict[str, Any] | None = None  # the host renewer's last round (ACME)
    warnings: tuple[str, ...] = ()

    @property
    def serving(self) -> bool:
        roles = {c.role for c in self.containers if c.status == "running"}
        return self.current_release is not None and {"nginx", "gateway"} <= roles

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "docker": self.docker,
            "serving": self.serving,
            "current_release": self.current_release,
            "previous_release": self.previous_release,
            "containers": [c.__dict__ for c in self.containers],
            "certificate": self.certificate,
            "lock": self.lock,
            "last_run": self.last_run,
            "client_expiry": [c.__dict__ for c in self.client_expiry],
            "clients_unknown": self.clients_unknown,
            "images": self.images.__dict__ if self.images is not None else None,
            "served_certificate": self.served_certificate,
            "renewal": self.renewal,
            "warnings": list(self.warnings),
        }

    def text(self) -> str:
        lines = [
            f"target:     {self.target}",
            f"docker:     {self.docker or 'not answering'}",
            f"serving:    {'yes' if self.serving else 'no'}",
            f"release:    {self.current_release or '-'} (previous: {self.previous_release or '-'})",
            f"certificate: {self.certificate or '-'}",
            f"served:     {self.served_certificate or 'nothing answers on the HTTPS port'}",
        ]
        if self.images is not None:
            lines.append(f"images:     {self.images.text()}")
        if self.renewal is not None:
            last = self.renewal.get("last_renewal") or {}
            lines.append(
                f"renewal:    {self.renewal.get('result', '?')} at {self.renewal.get('checked_at', '?')}: "
                f"{self.renewal.get('message', '')}"
            )
            if last:
                outcome = "ok" if last.get("ok") else "FAILED"
                lines.append(f"last renewal: {last.get('at', '?')} {outcome}: {last.get('message', '')}")
            shared = self.renewal.get("share") or {}
            if shared:  # several hosts: the issuer shares, the others install (docs/multihost.md)
                outcome = "ok" if shared.get("ok") else "FAILED"
                lines.append(f"shared cert: {shared.get('role', '?')}, {outcome}: {shared.get('message', '')}")
        lines += list(self.warnings)
        if self.lock:
            lines.append(f"lock:       held by {self.lock}")
        if self.last_run:
            state = (
                "finished: " + self.last_run.get("outcome", "")
                if self.last_run.get("finished")
                else "interrupted"
            )
            lines.append(
                f"last run:   {self.last_run.get('playbook')} of {self.last_run.get('started_at')} ({state})"
            )
        for c in self.containers:
            health = f" ({c.health})" if c.health else ""
            lines.append(f"  {c.name:<40} {c.status}{health}  {c.image}")
        lines += [f"warning:    {c.text()}" for c in self.client_expiry]
        if self.clients_unknown:
            lines.append(f"clients:    not checked ({self.clients_unknown})")
        return "\n".join(lines)
