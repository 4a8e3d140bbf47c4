"""deploy.yaml's defaults that are not limits (the limits' are :mod:`claudegate.knobs`)."""

from __future__ import annotations

__all__ = ["DEFAULT_ACME_DIRECTORY", "DEFAULT_NETWORK_SUBNET", "LETS_ENCRYPT_DIRECTORIES"]

DEFAULT_ACME_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_DIRECTORIES = (
    DEFAULT_ACME_DIRECTORY,
    "https://acme-staging-v02.api.letsencrypt.org/directory",
)
#: The private Docker network between nginx and the gateway. Outside Docker's
#: default pools (172.17-31.0.0/16, 192.168.0.0/16) and Podman's (10.88-89.x).
DEFAULT_NETWORK_SUBNET = "10.213.71.0/28"
