"""The uninstall step: containers, networks, images and files of the installation.

Docker itself stays installed (other things may use it). With the option
``keep_data`` the keystore (``shared/data``) and the secrets stay, so a later
deploy finds the same clients and keys; with ``keep_images`` the images stay
(a reinstall then builds nothing).
"""

from __future__ import annotations

import contextlib
import posixpath

from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.release import parse_manifest
from claudegate.deploy.steps.network import network_commands
from claudegate.errors import DeployFailed

__all__ = ["UninstallStep"]


class UninstallStep(Step):
    name = "uninstall"
    title = "Remove the installation"

    def plan(self, ctx: Context) -> list[Change]:
        layout = ctx.layout
        changes: list[Change] = []
        names = ctx.fact(docker_cli.container_list(layout.prefix)).text.split()
        if names:
            changes.append(
                Change(
                    f"remove containers {', '.join(sorted(names))}",
                    (Run(tuple(docker_cli.container_remove(*sorted(names)))),),
                )
            )
        for network in network_commands(ctx):
            if ctx.fact(docker_cli.network_inspect(network)).ok:
                changes.append(
                    Change(f"remove network {network}", (Run(tuple(docker_cli.network_remove(network))),))
                )
        images = set()
        for entry in ctx.fact(host_cli.list_dir(layout.releases)).text.split():
            data = ctx.read_file(posixpath.join(layout.release_dir(entry), "release.json"))
            if data is not None:
                with contextlib.suppress(ValueError):
                    images |= set(parse_manifest(entry, data).images.values())
        present = sorted(image for image in images if ctx.fact(docker_cli.image_inspect(image)).ok)
        if present and not ctx.options.keep_images:
            changes.append(
                Change(
                    f"remove images {', '.join(present)}",
                    # Refused when another installation on this engine uses one: that is fine.
                    (Run(tuple(docker_cli.image_remove(*present)), timeout=300, check=False),),
                )
            )
        if ctx.fact(host_cli.file_stats([layout.root])).text.strip():
            if ctx.options.keep_data:
                keep = {layout.data, layout.secrets}
                paths = [layout.releases, layout.gateways, layout.tls, layout.acme_webroot, layout.acme_state,
                         layout.path("shared", "log"), layout.state]  # fmt: skip
                summary = f"remove {layout.root} except the keystore and secrets ({', '.join(sorted(keep))})"
            else:
                paths = [layout.root]
                summary = f"remove {layout.root} (keystore, secrets, certificates, releases)"
            remove = Run(tuple(host_cli.remove_paths(*paths)), timeout=300)
            forget = Call("forget the journal and the lock (they lived there)", _forget)
            changes.append(Change(summary, (remove, forget)))
        if not ctx.options.keep_data and ctx.fact(host_cli.group_entry(layout.secrets_group), sudo=False).ok:
            changes.append(
                Change(
                    f"remove the system group {layout.secrets_group}",
                    (Run(tuple(host_cli.remove_group(layout.secrets_group))),),
                )
            )
        return changes

    def verify(self, ctx: Context) -> None:
        # Images another installation uses, and kept data, legitimately remain.
        left = [c for c in self.plan(ctx) if c.summary.startswith(("remove containers", "remove network"))]
        if left:

            raise DeployFailed("uninstall left: " + "; ".join(c.summary for c in left))


def _forget(ctx: Context) -> None:
    """A Call: not a command but the run's own state (nothing is left to write the journal to, or unlock)."""
    ctx.state.journal = None
    if ctx.state.lock is not None:
        ctx.state.lock.forget()
