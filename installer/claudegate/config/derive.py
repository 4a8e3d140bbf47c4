"""What the deploy renders from a :class:`DeployConfig`: pure functions, data out.

- :func:`edge_settings` -- the :class:`EdgeSettings` the nginx files are rendered from;
- :func:`gateway_config` -- the gateway service's YAML config, as a dict;
- :func:`client_scope_argv` -- the scope options ``keys create`` and ``keys update`` take
  (:mod:`claudegate.deploy.gateway_cli` builds the commands);
- :func:`client_scopes` -- that client's scopes as the keystore records them (for diffs);
- :func:`network_plan` -- the private network's subnet and nginx's fixed address on it.

Paths here are inside the containers (:mod:`claudegate.containers`, which
ties each to the host directory the deploy mounts there).
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from claudegate.config.state_files import gateway_state
from claudegate.containers import (
    API_KEY,
    AUDIT_LOG,
    GATEWAY_DATA,
    GATEWAY_LOGS,
    GATEWAY_SECRETS,
    KEYSTORE,
    PEPPER,
)
from claudegate.edge.settings import EdgeSettings
from claudegate.knobs import EDGE_FIELDS, KNOBS

if TYPE_CHECKING:
    from claudegate.config.model import Client, DeployConfig

__all__ = [
    "GATEWAY_API_KEY_FILE",
    "GATEWAY_AUDIT_LOG",
    "GATEWAY_INTERNAL_LISTEN",
    "GATEWAY_KEYSTORE",
    "GATEWAY_PEPPER_FILE",
    "GATEWAY_PORT",
    "NetworkPlan",
    "client_scope_argv",
    "client_scopes",
    "edge_settings",
    "format_expires",
    "gateway_config",
    "gateway_filters_config",
    "network_plan",
]

#: Secret files mounted read-only into the gateway container.
GATEWAY_API_KEY_FILE = GATEWAY_SECRETS.file(API_KEY)
GATEWAY_PEPPER_FILE = GATEWAY_SECRETS.file(PEPPER)
#: The gateway's state (volumes).
GATEWAY_KEYSTORE = GATEWAY_DATA.file(KEYSTORE)
GATEWAY_AUDIT_LOG = GATEWAY_LOGS.file(AUDIT_LOG)
#: The public listener's port. It binds only the gateway's own address on the
#: internal network (the config names the subnet; the gateway finds its
#: address in it at start), never the egress network's: nothing but nginx
#: can reach it.
GATEWAY_PORT = 8080
#: The internal listener (health, readiness, metrics): loopback inside the
#: gateway's container, reached only with ``docker exec``.
GATEWAY_INTERNAL_LISTEN = "127.0.0.1:9090"

#: Host number of nginx on the private network (.1 is Docker's bridge).
NGINX_HOST_INDEX = 2


@dataclass(frozen=True)
class NetworkPlan:
    """The private network between nginx and the gateway.

    nginx's container is attached to it with the fixed ``nginx_address``
    (``docker network connect --ip``), so the gateway can trust forwarded-for
    headers from exactly that address.
    """

    subnet: ipaddress.IPv4Network
    bridge_address: ipaddress.IPv4Address
    nginx_address: ipaddress.IPv4Address

    @property
    def nginx_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.nginx_address}/32")


def network_plan(cfg: DeployConfig) -> NetworkPlan:
    subnet = cfg.network.subnet
    return NetworkPlan(
        subnet=subnet,
        bridge_address=subnet.network_address + 1,
        nginx_address=subnet.network_address + NGINX_HOST_INDEX,
    )


def gateway_replica_count(cfg: DeployConfig) -> int:
    """Two gateway replicas per host with ``state:`` (limits are counted in Redis, so two
    processes admit what one would), else one: per-process counters would double every limit."""
    return 2 if cfg.state is not None else 1


def acme_relay(cfg: DeployConfig) -> str | None:
    """Several hosts with ``tls.mode: acme``: the issuer's (the first host's) HTTP port, where every host's
    nginx relays ACME challenges it cannot answer. The same on every host (one release id for the fleet);
    the issuer relays to itself at most once, which answers 404."""
    if cfg.tls.mode != "acme" or len(cfg.fleet) < 2:
        return None
    host = cfg.fleet[0].host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"{host}:{cfg.ports.http}"


def edge_settings(cfg: DeployConfig, **overrides: Any) -> EdgeSettings:
    """The nginx edge for ``cfg``; ``overrides`` set EdgeSettings fields deploy.yaml has no key for.

    nginx listens on the published ports themselves (its container publishes
    ``P:P``), so the http->https redirect names the port clients use.
    """
    values: dict[str, Any] = {name: value_at(cfg, loc) for name, loc in EDGE_FIELDS.items()}
    values["upstream_replicas"] = gateway_replica_count(cfg)
    values["acme_relay"] = acme_relay(cfg)
    values.update(overrides)
    return EdgeSettings(**values)


def gateway_config(cfg: DeployConfig) -> dict[str, Any]:
    """The gateway's ``gateway.yaml`` as a dict (dump it with ``yaml.safe_dump``).

    It trusts forwarded-for headers only from nginx's fixed address; the API
    key and the pepper are files mounted at :data:`GATEWAY_API_KEY_FILE` and
    :data:`GATEWAY_PEPPER_FILE`, never values in this config.
    """
    out: dict[str, Any] = {
        "listen": f"{network_plan(cfg).subnet}:{GATEWAY_PORT}",
        "internal_listen": GATEWAY_INTERNAL_LISTEN,
        "upstream": {"base_url": cfg.upstream.base_url, "api_key_file": GATEWAY_API_KEY_FILE},
        "keystore": GATEWAY_KEYSTORE,
        "pepper_file": GATEWAY_PEPPER_FILE,
        "audit_log": GATEWAY_AUDIT_LOG,
        "trusted_proxies": [str(network_plan(cfg).nginx_cidr)],
        **gateway_filters_config(cfg),
    }
    shared = gateway_state(cfg)
    if shared is not None:
        out["state"] = shared
    # The knobs the gateway enforces (the body limit, uploads included; the
    # upstream read timeout; the drain; the metering ceilings under ``limits``), in its units.
    for row in KNOBS:
        for key in row.gateway:
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = row.gateway_value(value_at(cfg, row.loc))
    return out


def value_at(cfg: DeployConfig, loc: tuple[str, ...]) -> Any:
    """deploy.yaml's value at ``loc`` (``("limits", "per_ip")``), defaults filled in."""
    node: Any = cfg
    for part in loc:
        node = getattr(node, part)
    return node


def gateway_filters_config(cfg: DeployConfig) -> dict[str, Any]:
    """``filters`` and ``client_filters`` of the gateway config; nothing when deploy.yaml leaves them out.

    Left out, the gateway applies its default policy; an explicit ``[]`` is
    written as such (filtering off).
    """
    out: dict[str, Any] = {}
    if cfg.filters is not None:
        out["filters"] = [rule.gateway_form() for rule in cfg.filters]
    overrides = {c.name: dict(c.filters) for c in cfg.clients if c.filters}
    if overrides:
        out["client_filters"] = overrides
    return out


def format_expires(client: Client) -> str | None:
    """``2027-06-30T00:00:00Z``, or None when the key does not expire."""
    if client.expires is None:
        return None
    return client.expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def client_scope_argv(client: Client) -> list[str]:
    """``NAME --models ... [--rpm N] ...``: the whole scope set, as ``keys create`` and ``keys update`` take it.

    Models and endpoints are always passed, so the command does not depend on
    the gateway's defaults; an option left out means its default ("no
    limit", "any beta", "never expires"), which is what makes ``update``
    declarative.
    """
    argv = [client.name, "--models", *client.models, "--endpoints", *client.endpoints]
    if client.betas is not None:
        argv += ["--betas", *client.betas]
    if client.max_tokens is not None:
        argv += ["--max-tokens", str(client.max_tokens)]
    if not client.stream:
        argv.append("--no-stream")
    for flag, value in (
        ("--rpm", client.rpm),
        ("--tpm", client.tpm),
        ("--daily-tokens", client.daily_tokens),
    ):
        if value is not None:
            argv += [flag, str(value)]
    expires = format_expires(client)
    if expires is not None:
        argv += ["--expires", expires]
    return argv


def client_scopes(client: Client) -> dict[str, Any]:
    """The client's scopes as ``keys list --json`` reports them, to tell whether a key needs re-creating."""
    return {
        "models": list(client.models),
        "endpoints": list(client.endpoints),
        "betas": None if client.betas is None else list(client.betas),
        "max_tokens": client.max_tokens,
        "stream": client.stream,
        "rpm": client.rpm,
        "tpm": client.tpm,
        "daily_tokens": client.daily_tokens,
    }
