"""Status of the serving release's images: build time, refresh stamp, and whether they are current."""

from __future__ import annotations

from claudegate import __version__
from claudegate.connectors.base import Connector
from claudegate.deploy import docker_cli
from claudegate.deploy.build_contexts import gateway_context, nginx_context, with_refresh
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.release import parse_manifest
from claudegate.deploy.results import ImageStatus

__all__ = ["image_status"]


def image_status(connector: Connector, layout: HostLayout, *, sudo: bool) -> ImageStatus | None:
    """None when no release is deployed (or its release.json cannot be read)."""
    data = connector.get_file(f"{layout.current_link}/release.json", sudo=sudo)
    if not data:
        return None
    try:
        release = parse_manifest("current", data)
    except ValueError:
        return None
    built: dict[str, str] = {}
    for name, tag in sorted(release.images.items()):
        argv = [docker_cli.DOCKER, "image", "inspect", "--format", "{{.Created}}", tag]
        found = connector.run(argv, sudo=sudo, timeout=60, check=False)
        when = found.text.strip() if found.ok else ""
        built[name] = when[:19].replace("T", " ") + "Z" if when else "unknown"
    # What this claudegate would build for the same base and refresh stamp.
    wanted = {
        name: with_refresh(context, release.images_refresh).tag(release.base_image)
        for name, context in (("gateway", gateway_context()), ("nginx", nginx_context()))
    }
    same = all(release.images.get(name) == tag for name, tag in wanted.items())
    return ImageStatus(
        built=built, refreshed=release.images_refresh, same_as_this_claudegate=same, version=__version__
    )
