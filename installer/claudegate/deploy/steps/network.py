"""The networks step: the three Docker networks of an installation.

- ``<prefix>-internal``: ``--internal`` (no route out), the configured
  subnet; nginx has the fixed address .2 (the gateway's only trusted proxy)
  and gateways get addresses from the upper half of the subnet only
  (``--ip-range``), so a gateway started before nginx can never take .2.
  Its bridge has no IPv4 address on the host (``inhibit_ipv4``): a plain
  internal network still gives the host an address and a route into it, so
  any host user could reach the gateway's listener without nginx. Without
  one the host has no route there, and nginx reaches the gateway over the
  bridge itself;
- ``<prefix>-egress``: the gateway's way out to the upstream API. The
  gateway's listeners are not bound there (see the gateway's ``listen``);
- ``<prefix>-edge``: nginx's published ports. Docker publishes no port of a
  container that is only on an internal network, and keeping nginx off the
  egress network keeps the gateway's listener unreachable except through
  the internal one.
"""

from __future__ import annotations

import ipaddress

from claudegate.config.derive import network_plan
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Change, Run, Step
from claudegate.deploy.facts import parse_network
from claudegate.deploy.layout import LABEL_INSTANCE
from claudegate.errors import DeployFailed

__all__ = ["INTERNAL_OPTIONS", "NetworksStep", "dynamic_range", "network_commands"]

#: The internal bridge gets no host address, so the host has no route into it.
INTERNAL_OPTIONS = {"com.docker.network.bridge.inhibit_ipv4": "true"}


def dynamic_range(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The upper half of ``subnet``: where Docker may pick gateway addresses."""
    return list(subnet.subnets(prefixlen_diff=1))[1]


def network_commands(ctx: Context) -> dict[str, tuple[list[str], bool, str | None]]:
    """name -> (create argv, internal?, subnet) for the installation's networks (internal = INTERNAL_OPTIONS)."""
    layout = ctx.layout
    subnet = network_plan(ctx.cfg).subnet
    labels = {LABEL_INSTANCE: layout.prefix}
    internal = docker_cli.network_create(
        layout.internal_network,
        internal=True,
        subnet=str(subnet),
        ip_range=str(dynamic_range(subnet)),
        labels=labels,
        options=INTERNAL_OPTIONS,
    )
    return {
        layout.internal_network: (internal, True, str(subnet)),
        layout.egress_network: (docker_cli.network_create(layout.egress_network, labels=labels), False, None),
        layout.edge_network: (docker_cli.network_create(layout.edge_network, labels=labels), False, None),
    }


class NetworksStep(Step):
    name = "networks"
    title = "Docker networks"

    def plan(self, ctx: Context) -> list[Change]:
        changes: list[Change] = []
        for name, (argv, internal, subnet) in network_commands(ctx).items():
            found = ctx.fact(docker_cli.network_inspect(name))
            state = parse_network(found.text) if found.ok else None
            if state is None:
                what = f"internal, {subnet}" if internal else "bridge"
                changes.append(Change(f"create network {name} ({what})", (Run(tuple(argv)),)))
                continue
            if state.internal != internal or (subnet is not None and subnet not in state.subnets):
                raise DeployFailed(
                    f"network {name} exists with other settings (internal={state.internal}, "
                    f"subnets={', '.join(state.subnets) or 'none'}; wanted internal={internal}, subnet={subnet})",
                    hint="uninstall first (claudegate uninstall), or set network.subnet to the existing one",
                )
            missing = {k: v for k, v in INTERNAL_OPTIONS.items() if state.options.get(k) != v} if internal else {}
            if missing:
                raise DeployFailed(
                    f"network {name} gives the host an address inside it (made by an older claudegate): "
                    "host users could reach the gateway without going through nginx",
                    hint=f"remove the installation's containers and the network (docker rm -f $(docker ps -aq "
                    f"--filter label={LABEL_INSTANCE}={ctx.layout.prefix}); docker network rm {name}), then deploy "
                    "again: keys, secrets and certificates stay on disk",
                )
        return changes
