"""Container helpers the service steps share: inspect, create, wait, switch nginx.

These run commands (they are the "apply" side); the argv lists themselves
come from :mod:`.docker_cli` and :mod:`.host_cli`.
"""

from __future__ import annotations

import time

from claudegate.config.derive import gateway_replica_count, network_plan
from claudegate.containers import NGINX_RELEASES
from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import ContainerSpec
from claudegate.deploy.engine import Op, Run
from claudegate.deploy.facts import ContainerState, parse_container, parse_group_gid, parse_nginx_workers
from claudegate.deploy.layout import LABEL_SPEC
from claudegate.deploy.release import Release
from claudegate.errors import DeployFailed
from claudegate.redact import redact

__all__ = [
    "container_matches",
    "create_ops",
    "gateway_replicas",
    "gateway_spec_for",
    "gateway_specs_for",
    "inspect",
    "learn_secrets_gid",
    "logs_tail",
    "nginx_spec_for",
    "reload_nginx",
    "secrets_gid",
    "switch_nginx",
    "test_nginx_config",
    "wait_gateway_ready",
    "wait_nginx_up",
]

# The gateway image has Python but no HTTP client program.
_READYZ = (
    "import sys, urllib.request; "
    "sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/readyz', timeout=2).status == 200 else 1)"
)
GATEWAY_READY_TIMEOUT = 90.0
NGINX_UP_TIMEOUT = 30.0


def inspect(ctx: Context, name: str) -> ContainerState | None:
    found = ctx.fact(docker_cli.container_inspect(name))
    return parse_container(found.text) if found.ok else None


def learn_secrets_gid(ctx: Context) -> int | None:
    """Ask the host for the gid of the installation's secrets group (None while it does not exist)."""
    found = ctx.fact(host_cli.group_entry(ctx.layout.secrets_group), sudo=False)
    gid = ctx.facts.secrets_gid = parse_group_gid(found.text) if found.ok else None
    return gid


def secrets_gid(ctx: Context) -> int | None:
    """The gid of the secrets group: as learned (the layout step), else asked now."""
    known = ctx.facts.secrets_gid
    return known if known is not None else learn_secrets_gid(ctx)


def gateway_spec_for(ctx: Context, release: Release, replica: int = 1) -> ContainerSpec:
    return docker_cli.gateway_spec(
        ctx.layout, release.gateway_id, release.gateway_image, secrets_gid=secrets_gid(ctx), replica=replica
    )


def gateway_replicas(ctx: Context) -> int:
    """Two gateway replicas per host with ``state:``, else one (``derive.gateway_replica_count``).

    Both answer to the gateway's network alias, so nginx's upstream has both addresses and
    tries the other when a replica refuses the connection; messages and count_tokens are also
    sent again when the replica they reached fails before answering (the edge's replay
    locations); nothing that creates or deletes is ever sent twice.
    """
    return gateway_replica_count(ctx.cfg)


def gateway_specs_for(ctx: Context, release: Release) -> list[ContainerSpec]:
    return [gateway_spec_for(ctx, release, n) for n in range(1, gateway_replicas(ctx) + 1)]


def nginx_spec_for(ctx: Context, release: Release) -> ContainerSpec:
    return docker_cli.nginx_spec(
        ctx.layout,
        release.nginx_image,
        http_port=ctx.cfg.ports.http,
        https_port=ctx.cfg.ports.https,
        fixed_ip=str(network_plan(ctx.cfg).nginx_address),
    )


def container_matches(state: ContainerState, spec: ContainerSpec) -> bool:
    """Was the container created from ``spec`` (same settings, on every network it should be on)?"""
    networks = {spec.network, *(net for net, _ in spec.extra_networks)}
    return state.labels.get(LABEL_SPEC) == spec.digest() and set(state.networks) == networks


def create_ops(spec: ContainerSpec) -> tuple[Op, ...]:
    """Create, join the extra networks, start."""
    ops: list[Op] = [Run(tuple(docker_cli.create_container(spec)))]
    for network, ip in spec.extra_networks:
        ops.append(Run(tuple(docker_cli.network_connect(network, spec.name, ip=ip))))
    ops.append(Run(tuple(docker_cli.container_start(spec.name))))
    return tuple(ops)


def logs_tail(ctx: Context, name: str, lines: int = 30) -> str:
    result = ctx.fact(docker_cli.container_logs(name, tail=lines))
    text = (result.stdout + result.stderr).decode("utf-8", errors="replace").strip()
    return ctx.connector.redact(redact(text, ctx.secrets()))


def _crashed(state: ContainerState) -> str | None:
    if state.status in ("exited", "dead"):
        return f"it exited with status {state.exit_code}"
    if state.status == "restarting" or state.restart_count > 0:
        return f"it keeps restarting (restarts: {state.restart_count}, last exit status {state.exit_code})"
    return None


def wait_gateway_ready(ctx: Context, name: str, *, timeout: float = GATEWAY_READY_TIMEOUT) -> None:
    """Until the gateway's /readyz answers 200 from inside its container; raise if it crashes."""
    started = time.monotonic()
    deadline = started + timeout
    ctx.note(f"waiting for {name} to be ready")
    while True:
        ctx.work(f"waiting for {name} to be ready", done=time.monotonic() - started, expected=timeout, unit="s")
        state = inspect(ctx, name)
        problem = "it disappeared" if state is None else _crashed(state)
        if problem is None and state is not None and state.running:
            probe = ctx.fact(docker_cli.exec_in(name, ["/opt/claudegate/venv/bin/python", "-c", _READYZ]))
            if probe.ok:
                return
        if problem is None and time.monotonic() > deadline:
            problem = f"it was not ready after {timeout:.0f} s"
        if problem is not None:
            raise DeployFailed(f"the gateway {name} did not start: {problem}\n{logs_tail(ctx, name)}")
        ctx.sleep(0.5)


def wait_nginx_up(ctx: Context, *, timeout: float = NGINX_UP_TIMEOUT) -> set[int]:
    """Until nginx runs with workers; returns their pids."""
    name = ctx.layout.nginx_container
    started = time.monotonic()
    deadline = started + timeout
    while True:
        ctx.work(f"waiting for {name} to start", done=time.monotonic() - started, expected=timeout, unit="s")
        state = inspect(ctx, name)
        problem = "it disappeared" if state is None else _crashed(state)
        if problem is None and state is not None and state.running:
            master, workers = parse_nginx_workers(ctx.fact(docker_cli.nginx_workers(name)).text)
            if master is not None and workers:
                return workers
        if problem is None and time.monotonic() > deadline:
            problem = f"it had no workers after {timeout:.0f} s"
        if problem is not None:
            raise DeployFailed(f"nginx ({name}) did not start: {problem}\n{logs_tail(ctx, name)}")
        ctx.sleep(0.3)


def test_nginx_config(ctx: Context, rid: str) -> None:
    """``nginx -t`` of release ``rid``'s files inside the running nginx, before switching to them."""
    conf = NGINX_RELEASES.file(rid, "nginx", "nginx.conf")
    result = ctx.run(docker_cli.exec_in(ctx.layout.nginx_container, ["nginx", "-t", "-c", conf]), check=False)
    if not result.ok:
        text = ctx.connector.redact(result.stderr.decode("utf-8", errors="replace").strip())
        raise DeployFailed(f"nginx rejects the configuration of release {rid}:\n{text}")


def reload_nginx(ctx: Context, *, timeout: float = 15.0) -> None:
    """Graceful reload (SIGHUP), then wait until only new workers accept connections.

    Old workers finish the requests and streams they hold; the wait makes
    sure that what comes next (the smoke test) meets the new configuration.
    """
    name = ctx.layout.nginx_container
    master, before = parse_nginx_workers(ctx.fact(docker_cli.nginx_workers(name)).text)
    if master is None:
        raise DeployFailed(f"no nginx master process in {name} to reload")
    ctx.run(docker_cli.signal_nginx_master(name, master, "HUP"))
    deadline = time.monotonic() + timeout
    while True:
        _, now = parse_nginx_workers(ctx.fact(docker_cli.nginx_workers(name)).text)
        if now and not (now & before):
            return
        if time.monotonic() > deadline:
            raise DeployFailed(f"nginx did not start new workers within {timeout:.0f} s of the reload")
        ctx.sleep(0.1)


def set_links(ctx: Context, current: str, previous: str | None) -> None:
    layout = ctx.layout
    if previous is not None and previous != current:
        ctx.run(host_cli.set_symlink(layout.previous_link, previous))
    ctx.run(host_cli.set_symlink(layout.current_link, current))


def switch_nginx(ctx: Context, rid: str, previous: str | None) -> None:
    """Point the running nginx at release ``rid``: test its config, swap the symlink, reload."""
    test_nginx_config(ctx, rid)
    set_links(ctx, rid, previous)
    reload_nginx(ctx)
