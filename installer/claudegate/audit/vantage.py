"""``claudegate audit --from USER@HOST[:PORT]``: a second vantage point over SSH.

Probes that must come from another address (the allowlist's) open their
TCP connections on that host through an SSH direct-tcpip channel; the
requests and the TLS are still made here, byte for byte, so nothing needs to
be installed there. Its host key is checked like the target's, against
claudegate's own known_hosts.
"""

from __future__ import annotations

import re

from claudegate.config.model import DeployConfig
from claudegate.connectors.ssh import SSHConnector
from claudegate.errors import ConfigError, HostKeyUnknown

_WHERE = re.compile(r"^(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?$")


def parse_vantage(text: str) -> tuple[str | None, str, int]:
    match = _WHERE.match(text.strip())
    port = int(match.group("port") or 22) if match else 0
    if match is None or not 0 < port < 65536:
        raise ConfigError(f"--from {text!r} is not USER@HOST[:PORT]", hint="e.g. --from deploy@203.0.113.7")
    return match.group("user"), match.group("host").strip("[]"), port


def vantage_connector(cfg: DeployConfig, where: str, host_key: str | None) -> SSHConnector:
    """An SSH connection to the vantage host with the target's key and known_hosts (nothing runs there)."""
    user, host, port = parse_vantage(where)
    connector = SSHConnector(
        host,
        user=user or cfg.target.user,
        port=port,
        key_filename=cfg.target.ssh_key,
        known_hosts=cfg.target.known_hosts,
        expected_fingerprint=host_key,
        connect_timeout=15.0,
    )
    try:
        return connector.connect()
    except HostKeyUnknown as exc:
        exc.hint = f"check it on {host}, then pass --from-host-key {exc.fingerprint}"
        raise
