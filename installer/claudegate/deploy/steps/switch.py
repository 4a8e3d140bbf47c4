"""The switch step: nginx serves this release.

nginx reads its configuration through ``releases/current``. Switching is:
``nginx -t`` on the new release's files inside the running nginx, then
``previous`` and ``current`` symlinks swapped by rename, then a graceful
reload (old workers finish what they hold). nginx's container is recreated
only when its own settings change (image, ports), and started the first time.
"""

from __future__ import annotations

from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Op, Run, Step
from claudegate.deploy.facts import parse_links
from claudegate.deploy.services import (
    container_matches,
    create_ops,
    inspect,
    nginx_spec_for,
    reload_nginx,
    switch_nginx,
    wait_nginx_up,
)
from claudegate.errors import ConfigError

__all__ = ["SwitchStep"]


class SwitchStep(Step):
    name = "switch"
    title = "Switch nginx"
    reads = frozenset({"docker_missing"})

    def plan(self, ctx: Context) -> list[Change]:
        release = ctx.state.release
        if release is None:
            raise ConfigError("no release to switch to")
        rid = release.rid
        layout = ctx.layout
        spec = nginx_spec_for(ctx, release)
        state = None if ctx.facts.docker_missing else inspect(ctx, spec.name)
        current = self._current(ctx)
        previous = ctx.state.fallback if ctx.state.fallback != rid else None
        links: list[Op] = []
        if previous is not None:
            links.append(Run(tuple(host_cli.set_symlink(layout.previous_link, previous))))
        links.append(Run(tuple(host_cli.set_symlink(layout.current_link, rid))))
        up = Call("wait for nginx", self._up)  # a Call: a wait loop until nginx has workers
        ports = f"ports {ctx.cfg.ports.http} and {ctx.cfg.ports.https}"
        if state is None:
            return [Change(f"start nginx on release {rid} ({ports})", (*links, *create_ops(spec), up))]
        if not container_matches(state, spec):
            remove = Run(tuple(docker_cli.container_remove(spec.name)))
            return [
                Change(
                    f"recreate nginx on release {rid} (its image or ports changed; a moment without service)",
                    (*links, remove, *create_ops(spec), up),
                )
            ]
        if not state.running:
            return [
                Change(
                    f"start the stopped nginx on release {rid}",
                    (*links, Run(tuple(docker_cli.container_start(spec.name))), up),
                )
            ]
        if current != rid:
            return [
                Change(
                    f"switch nginx from release {current or 'none'} to {rid} (nginx -t, then a graceful reload)",
                    # A Call: nginx -t's verdict is read (its message names the broken line),
                    # then the links, then a wait until only new workers serve.
                    (Call(f"switch to {rid}", lambda c: self._switch(c, rid, previous)),),
                )
            ]
        if ctx.state.reload_nginx:
            # A Call: SIGHUP to the master whose pid is read then, and a wait for new workers.
            return [Change("reload nginx for the new certificate", (Call("reload nginx", self._reload),))]
        return []

    @staticmethod
    def _current(ctx: Context) -> str | None:
        links = parse_links(ctx.fact(host_cli.read_links([ctx.layout.current_link])).text)
        return links.get(ctx.layout.current_link)

    @staticmethod
    def _up(ctx: Context) -> None:
        wait_nginx_up(ctx)
        ctx.state.reload_nginx = False

    @staticmethod
    def _switch(ctx: Context, rid: str, previous: str | None) -> None:
        switch_nginx(ctx, rid, previous)
        ctx.state.reload_nginx = False

    @staticmethod
    def _reload(ctx: Context) -> None:
        reload_nginx(ctx)
        ctx.state.reload_nginx = False
