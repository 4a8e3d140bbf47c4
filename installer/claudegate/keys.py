"""Client keys on the deployed gateway: list, create, update, rotate, revoke.

The keystore lives in the gateway's volume on the target, so every call runs
the gateway's own ``claudegate-gateway keys ...`` in the serving gateway
container, over the connector (local or SSH). Each call takes
``(cfg, connector, ...)`` and returns a typed result; nothing here prints.

A new key leaves the host once, on that command's stdout. It is saved at once
on the operator's side (``<state_dir>/keys/<name>.key``, 0600, the same place
a deploy saves keys) and returned as a :class:`~claudegate.redact.Secret` for
the front end to show once.

::

    with connector_for(cfg) as conn:
        clients = list_clients(cfg, conn)                 # [ClientRecord], never secrets
        issued = create_client(cfg, conn, client_spec("ci", rpm=60))
        issued = rotate_client(cfg, conn, "ci", overlap_seconds=3600)
        update_client(cfg, conn, client_spec("ci", rpm=120))   # in place; the key keeps working
        revoke_client(cfg, conn, "ci")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from claudegate.config.model import Client, DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy import gateway_cli
from claudegate.deploy.gateway_cli import ClientRecord
from claudegate.deploy.gateway_keys import (
    KeysError,
    expiring_clients,
    expiry_warnings,
    list_clients,
    run_gateway_keys,
    run_keys_argv,
)
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.clients import save_key
from claudegate.errors import ConfigError
from claudegate.redact import Secret

__all__ = [
    "ClientRecord",
    "IssuedKey",
    "KeysError",
    "client_spec",
    "clients_table",
    "create_client",
    "expiring_clients",
    "expiry_warnings",
    "list_clients",
    "parse_duration",
    "revoke_client",
    "rotate_client",
    "run_gateway_keys",
    "saved_keys_dir",
    "update_client",
]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class IssuedKey:
    """A key just issued: shown once by the front end, saved 0600 at ``saved_to``."""

    name: str
    key: Secret
    saved_to: Path
    old_keys_end: datetime | None = None  # rotation: when the previous key stops working

    def to_json(self) -> dict[str, Any]:
        """For ``--json`` output: the key is included on purpose (it is the point of the call)."""
        ends = self.old_keys_end.strftime("%Y-%m-%dT%H:%M:%SZ") if self.old_keys_end else None
        return {
            "name": self.name,
            "key": self.key.reveal(),
            "saved_to": str(self.saved_to),
            "old_keys_end": ends,
        }


def saved_keys_dir(cfg: DeployConfig) -> Path:
    return Path(cfg.state_dir) / "keys"


def parse_duration(text: str, *, field: str = "--overlap") -> int:
    """``90s``, ``30m``, ``24h``, ``7d`` -> seconds (the gateway's own duration syntax)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ConfigError(f"{field}: {text!r} is not a duration", hint="write e.g. 90s, 30m, 24h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def client_spec(name: str, **scopes: Any) -> Client:
    """A client as deploy.yaml would list it, validated the same way (``None`` values are left out).

    Raises :class:`~claudegate.errors.ConfigError` naming the option and the fix.
    """
    data = {"name": name, **{k: v for k, v in scopes.items() if v is not None}}
    try:
        return Client.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"]) or "client"
            ctx = error.get("ctx") or {}
            problem = str(ctx.get("problem") or error["msg"])
            fix = ctx.get("fix")
            lines.append(f"{where}: {problem}" + (f"; {fix}" if fix else ""))
        raise ConfigError("\n".join(lines), hint="see claudegate keys create --help") from None


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    days = (value - now).total_seconds() / 86400
    stamp = value.strftime("%Y-%m-%d %H:%M")
    if days < 0:
        return f"{stamp} (past)"
    return f"{stamp} (in {days:.0f}d)" if days >= 1 else f"{stamp} (in {days * 24:.1f}h)"


def _limits(scopes: dict[str, Any]) -> str:
    parts = [
        f"{key}={scopes[key]}" for key in ("rpm", "tpm", "daily_tokens", "max_tokens") if scopes.get(key)
    ]
    if scopes.get("stream") is False:
        parts.append("no-stream")
    return " ".join(parts) or "-"


def clients_table(clients: list[ClientRecord]) -> str:
    """The clients as ``claudegate keys list`` and the wizard's console show them (never a secret)."""
    now = datetime.now(UTC)
    rows = [("NAME", "STATE", "KEYS", "EXPIRES", "MODELS", "LIMITS")]
    for c in clients:
        keys = [
            k.public_id + (f" (ends {_when(k.not_after, now)})" if k.not_after is not None else "")
            for k in c.credentials
            if k.active
        ]
        rows.append(
            (
                c.name,
                c.state,
                ", ".join(keys) or "-",
                _when(c.expires_at, now),
                ",".join(c.scopes.get("models") or ["*"]),
                _limits(c.scopes),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def _issued(
    cfg: DeployConfig, connector: Connector, name: str, stdout: str, ends: datetime | None
) -> IssuedKey:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    value = lines[-1] if lines else ""
    if not value.startswith("cgk_") or " " in value:
        raise KeysError(f"the gateway printed no key for client {name}")
    key = Secret(value)
    connector.add_secret(key)
    return IssuedKey(name, key, save_key(saved_keys_dir(cfg), name, key), ends)


def create_client(
    cfg: DeployConfig, connector: Connector, client: Client, *, layout: HostLayout | None = None
) -> IssuedKey:
    """Create ``client`` with its scopes; the new key is returned (and saved 0600) once."""
    return _issued(
        cfg, connector, client.name, run_keys_argv(cfg, connector, gateway_cli.keys_create(client), layout), None
    )


def update_client(
    cfg: DeployConfig, connector: Connector, client: Client, *, layout: HostLayout | None = None
) -> None:
    """Replace the client's scopes, limits and expiry with ``client``'s; its keys keep working."""
    run_keys_argv(cfg, connector, gateway_cli.keys_update(client), layout)


def rotate_client(
    cfg: DeployConfig,
    connector: Connector,
    name: str,
    *,
    overlap_seconds: int = 0,
    layout: HostLayout | None = None,
) -> IssuedKey:
    """Issue a new key for ``name``; the old ones keep working ``overlap_seconds`` longer (0: stop now)."""
    client_spec(name)  # a name the gateway could read as an option never reaches it
    if overlap_seconds < 0:
        raise ConfigError(f"--overlap: {overlap_seconds} is negative", hint="write e.g. 0s or 24h")
    ends = datetime.now(UTC) + timedelta(seconds=overlap_seconds)
    stdout = run_keys_argv(cfg, connector, gateway_cli.keys_rotate(name, overlap_seconds), layout)
    return _issued(cfg, connector, name, stdout, ends)


def revoke_client(
    cfg: DeployConfig, connector: Connector, name: str, *, layout: HostLayout | None = None
) -> None:
    """Revoke ``name``: every key of it is refused from its next request on."""
    client_spec(name)
    run_keys_argv(cfg, connector, gateway_cli.keys_revoke(name), layout)
