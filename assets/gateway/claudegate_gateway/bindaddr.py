"""Listen addresses given as a network: bind only this container's address in it.

The deploy puts the gateway on two networks: the internal one it shares with
nginx, and an egress one for its way out. Binding the public listener to
``0.0.0.0`` would answer on the egress address too, where the host and any
other container on that network could skip nginx (its TLS, allowlist and
limits). The deploy cannot know the address Docker gives the gateway, so
the config names the internal network (``listen: 10.213.71.0/28:8080``) and
the gateway binds its own address in it, found at start.
"""

from __future__ import annotations

import ipaddress
import socket

from claudegate_gateway.config import ConfigError

__all__ = ["listen_host"]


def _own_address_towards(peer: str, family: socket.AddressFamily) -> str:
    # connect() on a UDP socket sends nothing: the kernel only picks the
    # route, and getsockname() then names the source address it would use.
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((peer, 9))
        return str(probe.getsockname()[0])


def listen_host(host: str, *, key: str = "listen", source: str = "<config>") -> str:
    """``host`` unchanged, or for a network (``a.b.c.d/n``) this host's address in it.

    Raises :class:`ConfigError` when the network is malformed or this host has
    no address in it (the route to it leaves through another interface).
    """
    if "/" not in host:
        return host
    try:
        network = ipaddress.ip_network(host, strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {key}: {host!r} is not a network ({exc}); write it like 10.213.71.0/28:8080"
        ) from None
    if network.num_addresses < 4:
        raise ConfigError(f"{source}: {key}: {host} is too small to hold this host; give the whole subnet")
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    try:
        own = ipaddress.ip_address(_own_address_towards(str(network.network_address + 1), family))
    except OSError as exc:
        raise ConfigError(
            f"{source}: {key}: no route to {host} ({exc.strerror}); is this container on that network?"
        ) from None
    if own not in network:
        raise ConfigError(
            f"{source}: {key}: this host has no address in {host} (its route there leaves from {own}); "
            "attach the container to that network, or give a plain address"
        )
    return str(own)
