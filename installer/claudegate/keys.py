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
from claudegate.deploy import docker_cli, gateway_cli
from claudegate.deploy.gateway_cli import ClientRecord, parse_client_list
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.results import EXPIRY_WARNING_DAYS, ClientExpiry
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.deploy.steps.clients import save_key
from claudegate.errors import ClaudegateError, ConfigError
from claudegate.redact import Secret

__all__ = [
    "ClientRecord",
    "IssuedKey",
    "KeysError",
    "client_spec",
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


class KeysError(ClaudegateError):
    """The gateway refused a key request (unknown or revoked name, a duplicate)."""


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


def run_gateway_keys(
    cfg: DeployConfig, connector: Connector, args: list[str], *, layout: HostLayout | None = None
) -> str:
    """Run ``claudegate-gateway keys ARGS --config <its config>`` in the serving gateway; its stdout."""
    from claudegate.deploy.docker_cli import GATEWAY_CONFIG_IN_CONTAINER, GATEWAY_PYTHON

    return _run(
        cfg, connector, [*GATEWAY_PYTHON, "keys", *args, "--config", GATEWAY_CONFIG_IN_CONTAINER], layout
    )


def _run(cfg: DeployConfig, connector: Connector, argv: list[str], layout: HostLayout | None) -> str:
    container = serving_gateway_container(cfg, connector, layout)
    full = docker_cli.exec_in(container, argv)
    result = connector.run(full, sudo=uses_sudo(cfg, connector), timeout=60, check=False)
    if not result.ok:
        # The gateway's own message says what was wrong (unknown name, bad flag).
        stderr = connector.redact(result.stderr.decode("utf-8", errors="replace"))
        message = (stderr.strip().splitlines() or ["failed"])[-1].removeprefix("claudegate-gateway: ")
        action = argv[argv.index("keys") + 1] if "keys" in argv else "keys"
        raise KeysError(
            f"keys {action}: {message}", hint="see claudegate keys list and claudegate keys --help"
        )
    return result.text


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


def list_clients(
    cfg: DeployConfig, connector: Connector, *, layout: HostLayout | None = None
) -> list[ClientRecord]:
    """Every client in the keystore (active, expired and revoked), by name. Never a secret."""
    text = _run(cfg, connector, gateway_cli.keys_list(), layout)
    try:
        return parse_client_list(text)
    except (ValueError, KeyError, TypeError):
        raise KeysError("the gateway's client list is not the JSON expected") from None


def create_client(
    cfg: DeployConfig, connector: Connector, client: Client, *, layout: HostLayout | None = None
) -> IssuedKey:
    """Create ``client`` with its scopes; the new key is returned (and saved 0600) once."""
    return _issued(
        cfg, connector, client.name, _run(cfg, connector, gateway_cli.keys_create(client), layout), None
    )


def update_client(
    cfg: DeployConfig, connector: Connector, client: Client, *, layout: HostLayout | None = None
) -> None:
    """Replace the client's scopes, limits and expiry with ``client``'s; its keys keep working."""
    _run(cfg, connector, gateway_cli.keys_update(client), layout)


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
    stdout = _run(cfg, connector, gateway_cli.keys_rotate(name, overlap_seconds), layout)
    return _issued(cfg, connector, name, stdout, ends)


def revoke_client(
    cfg: DeployConfig, connector: Connector, name: str, *, layout: HostLayout | None = None
) -> None:
    """Revoke ``name``: every key of it is refused from its next request on."""
    client_spec(name)
    _run(cfg, connector, gateway_cli.keys_revoke(name), layout)


def expiry_warnings(
    cfg: DeployConfig,
    connector: Connector,
    *,
    within_days: float = EXPIRY_WARNING_DAYS,
    layout: HostLayout | None = None,
) -> tuple[ClientExpiry, ...]:
    """Active clients of the serving gateway that stop working within ``within_days``."""
    now = datetime.now(UTC)
    return tuple(
        ClientExpiry(
            c.name, c.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"), (c.expires_at - now).total_seconds() / 86400
        )
        for c in expiring_clients(list_clients(cfg, connector, layout=layout), within_days, now)
        if c.expires_at is not None
    )


def expiring_clients(
    clients: list[ClientRecord], within_days: float, now: datetime | None = None
) -> list[ClientRecord]:
    """Active clients whose expiry falls within ``within_days`` of ``now``, soonest first."""
    soon = [c for c in clients if c.expires_within(within_days * 86400, now)]
    return sorted(soon, key=lambda c: c.expires_at or datetime.max.replace(tzinfo=UTC))
