"""A ``domain`` that is an IP address: only the internal CA can certify it.

Let's Encrypt and other ACME CAs issue for DNS names, and a certificate from
files would have to carry the address as an IP subjectAltName, which is not
checked here; the internal CA makes exactly that (see
``claudegate.deploy.tls_material``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING

from claudegate.config.problems import RuleProblem

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig

__all__ = ["domain_problems"]


def domain_problems(cfg: DeployConfig) -> Iterator[RuleProblem]:
    try:
        ipaddress.ip_address(cfg.domain)
    except ValueError:
        return
    if cfg.tls.mode != "internal-ca":
        yield RuleProblem(
            ("domain",),
            f"{cfg.domain} is an IP address, and only tls.mode: internal-ca certifies an address"
            f" (tls.mode is {cfg.tls.mode})",
            "set tls.mode: internal-ca (clients trust its ca.pem), or use a DNS name that points at the server",
        )
