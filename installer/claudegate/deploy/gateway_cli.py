"""Pure builders for ``claudegate-gateway keys ...`` and a parser for its ``list --json``.

The commands run inside a gateway container (``docker exec``), where the
gateway's config sits at :data:`~claudegate.deploy.docker_cli.GATEWAY_CONFIG_IN_CONTAINER`
and no ``$CLAUDEGATE_GATEWAY_CONFIG`` is set: every argv names ``--config``.
Both the deploy's clients step and ``claudegate keys`` build their commands here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from claudegate.config.derive import client_scope_argv, client_scopes, format_expires
from claudegate.config.model import Client
from claudegate.deploy.docker_cli import GATEWAY_CONFIG_IN_CONTAINER, GATEWAY_PYTHON

__all__ = [
    "AUDIT_CLIENT_PREFIX",
    "TOOL_CLIENT_PREFIX",
    "ClientRecord",
    "Credential",
    "describe_differences",
    "gateway_command",
    "keys_create",
    "keys_list",
    "keys_revoke",
    "keys_rotate",
    "keys_update",
    "parse_client_list",
]


# Names the tool manages itself (the smoke test's client, the audit's
# temporary ones): never reported as "not in deploy.yaml", never pruned.
TOOL_CLIENT_PREFIX = "claudegate-"
#: ``claudegate audit``'s temporary clients; the clients step revokes any still
#: active (left by a run that was killed before its own cleanup).
AUDIT_CLIENT_PREFIX = TOOL_CLIENT_PREFIX + "audit-"


def _keys(action: str, *args: str) -> list[str]:
    return [*GATEWAY_PYTHON, "keys", action, *args, "--config", GATEWAY_CONFIG_IN_CONTAINER]


def keys_list() -> list[str]:
    return _keys("list", "--json")


def keys_create(client: Client) -> list[str]:
    """Prints the new key alone on stdout's last line."""
    return _keys("create", *client_scope_argv(client))


def keys_update(client: Client) -> list[str]:
    """Replaces the client's scopes and expiry in place; its keys keep working."""
    return _keys("update", *client_scope_argv(client))


def keys_rotate(name: str, overlap_seconds: int) -> list[str]:
    """Prints the new key alone on stdout's last line; the old ones end after the overlap."""
    return _keys("rotate", name, "--overlap", f"{overlap_seconds}s")


def keys_revoke(name: str) -> list[str]:
    return _keys("revoke", name)


def gateway_command(args: list[str]) -> list[str]:
    """``claudegate-gateway ARGS --config <its config>`` (``state usage``, ``state export``, ``migrate``...)."""
    return [*GATEWAY_PYTHON, *args, "--config", GATEWAY_CONFIG_IN_CONTAINER]


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value is not None else None


@dataclass(frozen=True)
class Credential:
    """One key of a client (a client holds two during a rotation's overlap)."""

    public_id: str  # cgk_XXXXXXXXXX: the key's public part, as the audit log shows it
    created_at: datetime
    not_after: datetime | None  # set by a rotation: the end of the overlap
    active: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "public_id": self.public_id,
            "created_at": _iso(self.created_at),
            "not_after": _iso(self.not_after),
            "active": self.active,
        }


@dataclass(frozen=True)
class ClientRecord:
    """A client as the gateway's keystore holds it (never a secret)."""

    name: str
    state: str  # active | expired | revoked
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    scopes: dict[str, Any]  # as derive.client_scopes() spells them
    credentials: tuple[Credential, ...]

    @property
    def active(self) -> bool:
        return self.state == "active"

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True when an active client stops working within ``seconds`` from ``now``."""
        if not self.active or self.expires_at is None:
            return False
        now = now or datetime.now(UTC)
        return (self.expires_at - now).total_seconds() <= seconds

    def differences(self, client: Client) -> list[tuple[str, Any, Any]]:
        """``(field, recorded, wanted)`` for each scope or the expiry that differs from ``client``."""
        found = [
            (key, self.scopes.get(key), value)
            for key, value in client_scopes(client).items()
            if self.scopes.get(key) != value
        ]
        wanted_expiry = format_expires(client)
        recorded_expiry = _iso(self.expires_at)
        if recorded_expiry != wanted_expiry:
            found.append(("expires", recorded_expiry, wanted_expiry))
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "scopes": self.scopes,
            "credentials": [c.to_json() for c in self.credentials],
        }


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def parse_client_list(text: str) -> list[ClientRecord]:
    """Parse ``keys list --json``; raises ValueError when it is not that."""
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError("not a JSON list")
    out: list[ClientRecord] = []
    for item in raw:
        created = _time(item["created_at"])
        assert created is not None
        out.append(
            ClientRecord(
                name=str(item["name"]),
                state=str(item["state"]),
                created_at=created,
                expires_at=_time(item.get("expires_at")),
                revoked_at=_time(item.get("revoked_at")),
                scopes=dict(item.get("scopes") or {}),
                credentials=tuple(
                    Credential(
                        public_id=str(c["public_id"]),
                        created_at=_time(c["created_at"]) or created,
                        not_after=_time(c.get("not_after")),
                        active=bool(c.get("active")),
                    )
                    for c in item.get("credentials") or ()
                ),
            )
        )
    return out


def describe_differences(found: Sequence[tuple[str, Any, Any]]) -> str:
    """``rpm 60 -> 120, models [...] -> [...]`` for a plan line."""

    def show(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    return ", ".join(f"{key} {show(old)} -> {show(new)}" for key, old, new in found)
