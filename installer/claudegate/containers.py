"""Inside the containers: every path the deploy puts there, and the host directory it comes from.

A :class:`Mount` says which :class:`~claudegate.deploy.layout.HostLayout`
directory (by attribute name) appears where in a container, and whether
read-only. A file written into a mounted directory is named once, here
(``API_KEY``), and reached through its mount on both sides:
``layout.api_key_file`` on the host, ``GATEWAY_SECRETS.file(API_KEY)`` in
the gateway's config. So the host path the deploy writes and the container
path a service reads cannot drift apart, and the container specs
(:mod:`claudegate.deploy.docker_cli`) mount exactly these.

Readers: :mod:`claudegate.config.derive` (gateway.yaml),
:mod:`claudegate.edge.settings` (nginx's certificate and webroot paths),
:mod:`claudegate.deploy.layout` (host file names), the container specs, the
ACME and renewal steps.

This module imports nothing of the project, so every layer may read it.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass

__all__ = [
    "ACME_CA_BUNDLE",
    "API_KEY",
    "AUDIT_LOG",
    "CERTBOT_STATE",
    "CERTBOT_WEBROOT",
    "GATEWAY_CONFIG",
    "GATEWAY_DATA",
    "GATEWAY_LOGS",
    "GATEWAY_SECRETS",
    "GATEWAY_YAML",
    "KEYSTORE",
    "NGINX_ACME_WEBROOT",
    "NGINX_RELEASES",
    "NGINX_TLS",
    "PEPPER",
    "POSTGRES_CA",
    "POSTGRES_PASSWORD",
    "REDIS_CA",
    "REDIS_PASSWORD",
    "TLS_CHAIN",
    "TLS_FULLCHAIN",
    "TLS_PRIVKEY",
    "Mount",
]


@dataclass(frozen=True)
class Mount:
    """A host directory (``HostLayout.<host>``) mounted at ``inside``."""

    host: str
    inside: str
    read_only: bool

    def file(self, *names: str) -> str:
        """A file in the mounted directory, as the container sees it."""
        return posixpath.join(self.inside, *names)


# -- file names, the same on the host and in the container ----------------------
API_KEY = "anthropic_api_key"
PEPPER = "key_pepper"
#: The shared state tier's secrets (deploy.yaml ``state:``), beside the Anthropic key.
REDIS_PASSWORD = "redis_password"  # noqa: S105 - a file name
POSTGRES_PASSWORD = "postgres_password"  # noqa: S105 - a file name
REDIS_CA = "state_redis_ca.pem"
POSTGRES_CA = "state_postgres_ca.pem"
KEYSTORE = "keys.db"
AUDIT_LOG = "audit.jsonl"
TLS_FULLCHAIN = "fullchain.pem"
TLS_PRIVKEY = "privkey.pem"
TLS_CHAIN = "chain.pem"
GATEWAY_YAML = "gateway.yaml"
#: A private ACME CA's certificate (tests' Pebble), beside certbot's own state.
ACME_CA_BUNDLE = "claudegate-acme-ca.pem"

# -- the gateway ----------------------------------------------------------------
#: The Anthropic key and the pepper, root-owned, readable by the secrets group.
GATEWAY_SECRETS = Mount("secrets", "/run/secrets", read_only=True)
#: The keystore (SQLite), written by the gateway's user.
GATEWAY_DATA = Mount("data", "/var/lib/claudegate", read_only=False)
#: The audit log and its rotations.
GATEWAY_LOGS = Mount("gateway_log", "/var/log/claudegate", read_only=False)
#: The gateway's config: a single-file mount of ``gateways/<id>/gateway.yaml``.
GATEWAY_CONFIG = posixpath.join("/etc/claudegate", GATEWAY_YAML)

# -- nginx ----------------------------------------------------------------------
#: Every release's rendered files; nginx's config path goes through ``current``.
NGINX_RELEASES = Mount("releases", "/etc/claudegate/releases", read_only=True)
#: The served certificate, key and chain (the renewer mounts it writable).
NGINX_TLS = Mount("tls", "/etc/claudegate/tls", read_only=True)
#: HTTP-01 answers, served from here (certbot and the renewer write them).
NGINX_ACME_WEBROOT = Mount("acme_webroot", "/var/www/acme", read_only=True)

# -- certbot (the ACME step's one-shot run, and the renewer) --------------------
CERTBOT_STATE = Mount("acme_state", "/etc/letsencrypt", read_only=False)
CERTBOT_WEBROOT = dataclasses.replace(NGINX_ACME_WEBROOT, read_only=False)
