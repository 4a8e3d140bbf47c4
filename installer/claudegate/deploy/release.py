"""A release: every file the deploy renders, named by its own content.

Two ids, both the first 12 hex digits of a SHA-256:

- the **gateway id** covers what the gateway process is made of: its
  ``gateway.yaml``, its image tag, and a fingerprint of the upstream key it
  reads at start. Its container is ``<prefix>-gateway-<gateway id>``, so a
  release that only changes nginx settings keeps the running gateway, and
  one that changes the gateway gets a new container beside the old one;
- the **release id** covers every rendered file of the release, including
  ``release.json`` (which names the gateway id and both images). The same
  config always gives the same release id, so a second deploy finds it in
  place and changes nothing.

On the host (see docs/deploy.md)::

    releases/<rid>/release.json
    releases/<rid>/nginx/nginx.conf, claudegate.conf, snippets/*.conf
    gateways/<gateway id>/gateway.yaml
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from claudegate.config.derive import GATEWAY_PORT, edge_settings, gateway_config
from claudegate.config.model import DeployConfig
from claudegate.deploy.build_contexts import BuildContext, gateway_context, nginx_context, with_refresh
from claudegate.deploy.layout import HostLayout
from claudegate.edge.render import render_edge

__all__ = ["RELEASE_FORMAT", "Release", "build_release", "parse_manifest", "render_gateway_yaml"]

RELEASE_FORMAT = 1


@dataclass(frozen=True)
class Release:
    """The target release of a run: ids, images, and (when rendered here) its files.

    A release read back from the host for a rollback has no ``files``.
    """

    rid: str
    gateway_id: str
    images: dict[str, str]  # "gateway" / "nginx" -> image tag
    base_image: str
    #: What the smoke test expects of this release (so a rollback tests the
    #: rolled-back release by its own settings, not the current config's).
    smoke: dict[str, int] = field(default_factory=dict)
    images_refresh: str = ""  # the refresh stamp its images were built with ("" = never refreshed)
    files: dict[str, bytes] = field(default_factory=dict)  # relative to releases/<rid>/
    gateway_files: dict[str, bytes] = field(default_factory=dict)  # relative to gateways/<gateway id>/

    @property
    def gateway_image(self) -> str:
        return self.images["gateway"]

    @property
    def nginx_image(self) -> str:
        return self.images["nginx"]


def render_gateway_yaml(cfg: DeployConfig) -> bytes:
    """The gateway's config file (no secrets: it names the mounted secret files)."""
    text = yaml.safe_dump(gateway_config(cfg), sort_keys=True, default_flow_style=False)
    return ("# Rendered by claudegate deploy; do not edit (the next deploy replaces it).\n" + text).encode()


def gateway_port() -> int:
    return GATEWAY_PORT


def _sha12(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big"))
        sha.update(part)
    return sha.hexdigest()[:12]


def build_release(
    cfg: DeployConfig,
    layout: HostLayout,
    *,
    key_fingerprint: str,
    contexts: dict[str, BuildContext] | None = None,
    refresh: str = "",
) -> Release:
    """Render the release for ``cfg`` (pure: the same inputs give the same bytes and ids).

    ``refresh`` is the stamp of the last ``deploy --refresh`` (new images
    from the same sources); it is recorded so later deploys keep those images.
    """
    contexts = contexts or {"gateway": gateway_context(), "nginx": nginx_context()}
    contexts = {name: with_refresh(context, refresh) for name, context in contexts.items()}
    base = cfg.images.base_image
    images = {name: ctx.tag(base) for name, ctx in sorted(contexts.items())}

    gateway_yaml = render_gateway_yaml(cfg)
    gateway_id = _sha12(b"gateway-v1", gateway_yaml, images["gateway"].encode(), key_fingerprint.encode())

    edge = edge_settings(
        cfg,
        # Inside its container nginx listens on every IPv4 address; which
        # host addresses reach it is decided by the published ports.
        listen_addresses=("0.0.0.0",),
        upstream=f"{layout.gateway_alias(gateway_id)}:{gateway_port()}",
    )
    smoke = {"max_body_bytes": edge.max_body_bytes, "per_ip_burst": edge.per_ip.burst}
    files: dict[str, bytes] = {f"nginx/{rel}": text.encode() for rel, text in render_edge(edge).items()}
    manifest: dict[str, Any] = {
        "format": RELEASE_FORMAT,
        "domain": cfg.domain,
        "gateway_id": gateway_id,
        "images": images,
        "base_image": base,
        "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(files.items())},
        "gateway_files": {"gateway.yaml": hashlib.sha256(gateway_yaml).hexdigest()},
        "smoke": smoke,
    }
    if refresh:
        manifest["images_refresh"] = refresh  # only then: earlier release ids stay as they were
    files["release.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    rid = _sha12(*(part for rel in sorted(files) for part in (rel.encode(), files[rel])))
    return Release(
        rid=rid,
        gateway_id=gateway_id,
        images=images,
        base_image=base,
        smoke=smoke,
        images_refresh=refresh,
        files=files,
        gateway_files={"gateway.yaml": gateway_yaml},
    )


def parse_manifest(rid: str, data: bytes) -> Release:
    """A release as ``release.json`` on the host describes it (for rollback and status)."""
    try:
        manifest = json.loads(data)
        return Release(
            rid=rid,
            gateway_id=str(manifest["gateway_id"]),
            images={str(k): str(v) for k, v in manifest["images"].items()},
            base_image=str(manifest.get("base_image", "")),
            smoke={str(k): int(v) for k, v in (manifest.get("smoke") or {}).items()},
            images_refresh=str(manifest.get("images_refresh") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"release {rid}: release.json is not readable ({exc})") from None
