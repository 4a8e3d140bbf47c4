"""The gateway's ``keys`` command, run in the serving gateway: the part the deploy and the audit need.

The deploy's status (clients about to expire) and the audit (its temporary
clients) run ``claudegate-gateway keys ...`` in the serving gateway as the
day-2 ``claudegate keys`` commands do; they live here, in the deploy layer,
so that those callers need not import the day-2 module
(:mod:`claudegate.keys`, which re-exports these names).
"""

from __future__ import annotations

from datetime import UTC, datetime

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.containers import GATEWAY_CONFIG
from claudegate.deploy import docker_cli, gateway_cli
from claudegate.deploy.docker_cli import GATEWAY_PYTHON
from claudegate.deploy.gateway_cli import ClientRecord, parse_client_list
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.results import EXPIRY_WARNING_DAYS, ClientExpiry
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.errors import ClaudegateError

__all__ = [
    "KeysError",
    "expiring_clients",
    "expiry_warnings",
    "list_clients",
    "run_gateway_keys",
    "run_keys_argv",
]


class KeysError(ClaudegateError):
    """The gateway refused a key request (unknown or revoked name, a duplicate)."""


def run_gateway_keys(
    cfg: DeployConfig, connector: Connector, args: list[str], *, layout: HostLayout | None = None
) -> str:
    """Run ``claudegate-gateway keys ARGS --config <its config>`` in the serving gateway; its stdout."""
    return run_keys_argv(cfg, connector, [*GATEWAY_PYTHON, "keys", *args, "--config", GATEWAY_CONFIG], layout)


def run_keys_argv(cfg: DeployConfig, connector: Connector, argv: list[str], layout: HostLayout | None) -> str:
    """Run ``argv`` (a ``keys`` command of the gateway) in the serving gateway; its stdout, or KeysError."""
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


def list_clients(
    cfg: DeployConfig, connector: Connector, *, layout: HostLayout | None = None
) -> list[ClientRecord]:
    """Every client in the keystore (active, expired and revoked), by name. Never a secret."""
    text = run_keys_argv(cfg, connector, gateway_cli.keys_list(), layout)
    try:
        return parse_client_list(text)
    except (ValueError, KeyError, TypeError):
        raise KeysError("the gateway's client list is not the JSON expected") from None


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
