"""Several gateway hosts (``hosts:``): what they need to act as one gateway.

Each host answers any client with any key, so keys, owned objects, usage
and the rate windows must live in one place every host reaches: ``state:``
(Redis and PostgreSQL). Without it each host would keep its own keystore
and its own counters, and a limit of N would become N per host.

``tls.mode: acme`` is allowed: the first host obtains the certificate, the
others relay challenges to it and install it from PostgreSQL
(docs/multihost.md, "Certificates from ACME").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from claudegate.config.problems import RuleProblem

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig

__all__ = ["fleet_problems"]

STATE_FIX = (
    "add state: with the URLs of an existing Redis and PostgreSQL that every host reaches, e.g."
    " state: {redis: {url: redis://10.0.0.5:6379/0, password_file: ~/.config/claudegate/redis_password},"
    " postgres: {url: postgresql://claudegate@10.0.0.5:5432/claudegate, password_file: ...}}"
    " (see docs/multihost.md), or list one host only"
)


def fleet_problems(cfg: DeployConfig) -> Iterator[RuleProblem]:
    hosts = cfg.fleet
    if len(hosts) < 2:
        return
    if cfg.state is None:
        yield RuleProblem(
            ("state",),
            f"is required with several hosts (hosts: names {len(hosts)}): they must share keys, usage and limits",
            STATE_FIX,
        )
    seen: dict[tuple[str, int], int] = {}
    for index, host in enumerate(hosts):
        if host.is_local:
            yield RuleProblem(
                ("hosts", index, "host"),
                "is local, which cannot be one of several hosts",
                "give every host's name or address (reached over SSH)",
            )
        where = (host.host, host.port)
        if where in seen:
            yield RuleProblem(
                ("hosts", index, "host"),
                f"{host.host} (port {host.port}) is already hosts[{seen[where]}]",
                "list each host once",
            )
        seen.setdefault(where, index)
