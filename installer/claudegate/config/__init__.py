"""``deploy.yaml``: the typed model, its loader, and what the deploy derives from it.

::

    from claudegate.config import load_config, check_secret_files, edge_settings, gateway_config

    cfg = load_config("deploy.yaml")     # every problem at once, as FILE:LINE:COL: FIELD: problem; fix
    edge = edge_settings(cfg)            # -> EdgeSettings for the nginx templates
    gateway_config(cfg)                  # -> dict, the gateway's gateway.yaml
    check_secret_files(cfg)              # the deploy, before it uploads: 0600 key file etc.

Errors: :class:`DeployConfigError` (a :class:`claudegate.errors.ConfigError`,
exit code 2) with ``problems``, one :class:`Problem` per line. The schema is
documented key by key in ``examples/local.yaml`` and ``examples/remote.yaml``.
"""

from claudegate.config.derive import (
    GATEWAY_API_KEY_FILE,
    GATEWAY_AUDIT_LOG,
    GATEWAY_INTERNAL_LISTEN,
    GATEWAY_KEYSTORE,
    GATEWAY_PEPPER_FILE,
    GATEWAY_PORT,
    NetworkPlan,
    client_scopes,
    edge_settings,
    format_expires,
    gateway_config,
    network_plan,
)
from claudegate.config.files import check_secret_files
from claudegate.config.load import Origin, load_config, load_config_text
from claudegate.config.model import (
    DEFAULT_ACME_DIRECTORY,
    DEFAULT_NETWORK_SUBNET,
    TLS,
    Client,
    DeployConfig,
    Images,
    Limits,
    Network,
    Ports,
    RateLimit,
    Target,
    Timeouts,
    Upstream,
    config_home,
)
from claudegate.config.problems import DeployConfigError, Problem

__all__ = [
    "DEFAULT_ACME_DIRECTORY",
    "DEFAULT_NETWORK_SUBNET",
    "GATEWAY_API_KEY_FILE",
    "GATEWAY_AUDIT_LOG",
    "GATEWAY_INTERNAL_LISTEN",
    "GATEWAY_KEYSTORE",
    "GATEWAY_PEPPER_FILE",
    "GATEWAY_PORT",
    "TLS",
    "Client",
    "DeployConfig",
    "DeployConfigError",
    "Images",
    "Limits",
    "Network",
    "NetworkPlan",
    "Origin",
    "Ports",
    "Problem",
    "RateLimit",
    "Target",
    "Timeouts",
    "Upstream",
    "check_secret_files",
    "client_scopes",
    "config_home",
    "edge_settings",
    "format_expires",
    "gateway_config",
    "load_config",
    "load_config_text",
    "network_plan",
]
