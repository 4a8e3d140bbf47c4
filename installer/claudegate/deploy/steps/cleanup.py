"""The cleanup step: keep the serving release and the previous one, drop the rest.

- the previous release's gateway is stopped (not removed) and its files
  kept, so ``rollback`` can start it and switch back in seconds;
- gateways, release directories and gateway directories of older releases
  are removed, and so are the images only those releases used (Docker
  itself refuses to remove an image a container still uses).
"""

from __future__ import annotations

import posixpath

from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Change, Run, Step
from claudegate.deploy.facts import parse_links
from claudegate.deploy.layout import LABEL_GATEWAY
from claudegate.deploy.release import Release, parse_manifest
from claudegate.deploy.services import inspect

__all__ = ["CleanupStep"]

_LINKS = ("current", "previous")


class CleanupStep(Step):
    name = "cleanup"
    title = "Clean up old releases"
    reads = frozenset({"docker_missing"})

    @staticmethod
    def _stop(ctx: Context, name: str) -> Run:
        """SIGTERM, then up to ``limits.timeouts.drain`` seconds for its open streams to finish (then SIGKILL)."""
        drain = ctx.cfg.limits.timeouts.drain
        return Run(tuple(docker_cli.container_stop(name, timeout=drain + 5)), timeout=drain + 60)

    def _manifest(self, ctx: Context, rid: str) -> Release | None:
        data = ctx.read_file(posixpath.join(ctx.layout.release_dir(rid), "release.json"))
        if data is None:
            return None
        try:
            return parse_manifest(rid, data)
        except ValueError:
            return None

    def plan(self, ctx: Context) -> list[Change]:
        if ctx.facts.docker_missing:
            return []
        layout = ctx.layout
        links = parse_links(ctx.fact(host_cli.read_links([layout.current_link, layout.previous_link])).text)
        current, previous = links.get(layout.current_link), links.get(layout.previous_link)
        if current is None:
            return []
        kept = {rid: self._manifest(ctx, rid) for rid in {current, previous} if rid is not None}
        live = kept.get(current)
        live_gateway = live.gateway_id if live is not None else None
        kept_gateways = {m.gateway_id for m in kept.values() if m is not None}
        kept_images = {image for m in kept.values() if m is not None for image in m.images.values()}

        changes: list[Change] = []
        names = ctx.fact(docker_cli.container_list(layout.prefix, role="gateway")).text.split()
        for name in sorted(names):
            state = inspect(ctx, name)
            if state is None:
                continue
            gateway_id = state.labels.get(LABEL_GATEWAY, "")
            if gateway_id == live_gateway:
                continue
            if gateway_id in kept_gateways:
                if state.running:
                    changes.append(
                        Change(
                            f"stop gateway {gateway_id} of the previous release (kept for rollback)",
                            (self._stop(ctx, name),),
                        )
                    )
                continue
            changes.append(
                Change(
                    f"remove gateway {gateway_id} of an older release",
                    (Run(tuple(docker_cli.container_remove(name))),),
                )
            )

        old_images: set[str] = set()
        for entry in sorted(ctx.fact(host_cli.list_dir(layout.releases)).text.split()):
            if entry in kept or entry in _LINKS or entry.endswith(".tmp"):
                continue
            if not entry.startswith(".incoming."):
                manifest = self._manifest(ctx, entry)
                if manifest is not None:
                    old_images |= set(manifest.images.values()) - kept_images
            changes.append(
                Change(
                    f"remove release {entry}", (Run(tuple(host_cli.remove_paths(layout.release_dir(entry)))),)
                )
            )
        for entry in sorted(ctx.fact(host_cli.list_dir(layout.gateways)).text.split()):
            if entry in kept_gateways:
                continue
            changes.append(
                Change(
                    f"remove gateway config {entry}",
                    (Run(tuple(host_cli.remove_paths(layout.gateway_dir(entry)))),),
                )
            )
        present = [image for image in sorted(old_images) if ctx.fact(docker_cli.image_inspect(image)).ok]
        if present:
            # Refused when another installation on the same engine still uses one: that is fine.
            remove = Run(tuple(docker_cli.image_remove(*present)), timeout=300, check=False)
            changes.append(Change(f"remove images no kept release uses: {', '.join(present)}", (remove,)))
        return changes

    def verify(self, ctx: Context) -> None:
        left = [c for c in self.plan(ctx) if not c.summary.startswith("remove images")]
        if left:
            super().verify(ctx)
