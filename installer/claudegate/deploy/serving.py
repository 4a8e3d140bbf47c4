"""Which gateway serves now: read from the host, for commands that act on the running stack."""

from __future__ import annotations

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy import host_cli
from claudegate.deploy.facts import parse_links
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.release import parse_manifest
from claudegate.errors import ClaudegateError

__all__ = ["current_release", "serving_gateway", "serving_gateway_container", "uses_sudo"]


def uses_sudo(cfg: DeployConfig, connector: Connector) -> bool:
    return bool(cfg.target.sudo) and not connector.is_root


def current_release(cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None) -> str | None:
    """The release nginx serves now on the host (None when nothing is deployed)."""
    layout = layout or HostLayout()
    result = connector.run(host_cli.read_links([layout.current_link]), sudo=uses_sudo(cfg, connector), check=False)
    if not result.ok:
        connector.raise_failed(host_cli.read_links([layout.current_link]), result)
    return parse_links(result.text).get(layout.current_link)


def serving_gateway(connector: Connector, layout: HostLayout, sudo: bool) -> str:
    """The gateway id of the release nginx serves now."""
    links = parse_links(
        connector.run(host_cli.read_links([layout.current_link]), sudo=sudo, check=False).text
    )
    current = links.get(layout.current_link)
    if current is None:
        raise ClaudegateError(
            f"nothing is deployed on {connector.target} yet", hint="run claudegate deploy first"
        )
    manifest = connector.get_file(f"{layout.release_dir(current)}/release.json", sudo=sudo)
    if manifest is None:
        raise ClaudegateError(f"release {current} has no release.json on {connector.target}")
    return parse_manifest(current, manifest).gateway_id


def serving_gateway_container(
    cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None
) -> str:
    """The container name of the serving gateway (every gateway shares the keystore and the audit log)."""
    layout = layout or HostLayout()
    return layout.gateway_container(serving_gateway(connector, layout, uses_sudo(cfg, connector)))
