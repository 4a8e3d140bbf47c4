"""Pure builders for the ``docker`` commands a deploy runs on the target.

Every function returns an argv list and does nothing else; the steps hand
them to a connector (with ``sudo`` when the target needs it). Tests assert
the exact lists. Secrets never appear here: containers get them as
read-only mounted files, never as ``-e`` variables, which ``docker inspect``
would show to anyone in the ``docker`` group.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from claudegate.containers import (
    GATEWAY_CONFIG,
    GATEWAY_DATA,
    GATEWAY_LOGS,
    GATEWAY_SECRETS,
    GATEWAY_YAML,
    NGINX_ACME_WEBROOT,
    NGINX_RELEASES,
    NGINX_TLS,
)
from claudegate.deploy.layout import (
    GATEWAY_GID,
    GATEWAY_UID,
    LABEL_GATEWAY,
    LABEL_INSTANCE,
    LABEL_REPLICA,
    LABEL_ROLE,
    LABEL_SPEC,
    HostLayout,
)

__all__ = [
    "LOG_OPTIONS",
    "ContainerSpec",
    "build_image",
    "container_inspect",
    "container_list",
    "container_logs",
    "container_remove",
    "container_start",
    "container_stop",
    "create_container",
    "docker_info",
    "exec_in",
    "gateway_spec",
    "image_inspect",
    "image_list",
    "image_load",
    "image_load_file",
    "image_pull",
    "image_remove",
    "image_save",
    "network_connect",
    "network_create",
    "network_inspect",
    "network_remove",
    "nginx_spec",
    "nginx_workers",
    "signal_nginx_master",
]

DOCKER = "docker"

#: Every container claudegate creates logs to Docker's json-file driver,
#: rotated by size with a bounded number of files, whatever the daemon's
#: default driver is (at most 3 x 10 MB per container).
LOG_OPTIONS = ("--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3")

#: The gateway's Python and module inside its image (there is no console
#: script: the service is plain source on PYTHONPATH).
GATEWAY_PYTHON = ("/opt/claudegate/venv/bin/python", "-m", "claudegate_gateway")
#: The gateway's config file inside its container (the name older callers import).
GATEWAY_CONFIG_IN_CONTAINER = GATEWAY_CONFIG


# -- engine and images --------------------------------------------------------


def docker_info() -> list[str]:
    """Answers (exit 0) only when the engine runs and we may talk to it."""
    return [DOCKER, "info", "--format", "{{.ServerVersion}}"]


def engine_architecture() -> list[str]:
    """Prints the engine's CPU architecture (``x86_64``, ``aarch64``); fails when there is no engine."""
    return [DOCKER, "info", "--format", "{{.Architecture}}"]


def image_inspect(ref: str) -> list[str]:
    """Prints the image id; exits non-zero when the image is absent."""
    return [DOCKER, "image", "inspect", "--format", "{{.Id}}", ref]


def image_list(repository: str) -> list[str]:
    """``repo:tag`` of every tagged image of ``repository``, one a line."""
    return [DOCKER, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository]


def build_image(
    tag: str, *, base_image: str, labels: Mapping[str, str] | None = None, no_cache: bool = False
) -> list[str]:
    """Build ``tag`` from a tar build context read on stdin (``-``).

    A tar on stdin carries the whole context over the one verified
    connection, in one command, with nothing left behind on the host.
    ``--pull=false``: the base is a local image (there may be no registry).
    ``no_cache`` (a refresh): every layer is built again, so ``apt-get``
    installs today's packages instead of reusing a cached layer.
    """
    argv = [DOCKER, "build", "--pull=false", "--force-rm", "--tag", tag]
    if no_cache:
        argv.insert(4, "--no-cache")
    argv += ["--build-arg", f"BASE_IMAGE={base_image}"]
    for key, value in sorted((labels or {}).items()):
        argv += ["--label", f"{key}={value}"]
    argv.append("-")
    return argv


def image_load() -> list[str]:
    """Reads a ``docker save`` tarball on stdin."""
    return [DOCKER, "image", "load", "--quiet"]


def image_load_file(path: str) -> list[str]:
    """Reads a ``docker save`` tarball from a file on the host (one sent ahead, see images_ahead)."""
    return [DOCKER, "image", "load", "--quiet", "--input", path]


def image_save(*refs: str) -> list[str]:
    return [DOCKER, "image", "save", *refs]


def image_pull(ref: str) -> list[str]:
    return [DOCKER, "image", "pull", "--quiet", ref]


def image_remove(*refs: str) -> list[str]:
    # Without --force: Docker refuses to remove an image a container still
    # uses, which is exactly the guard cleanup wants.
    return [DOCKER, "image", "rm", *refs]


# -- networks -------------------------------------------------------------------


def network_inspect(name: str) -> list[str]:
    return [DOCKER, "network", "inspect", "--format", "{{json .}}", name]


def network_create(
    name: str,
    *,
    internal: bool = False,
    subnet: str | None = None,
    ip_range: str | None = None,
    labels: Mapping[str, str] | None = None,
    options: Mapping[str, str] | None = None,
) -> list[str]:
    argv = [DOCKER, "network", "create", "--driver", "bridge"]
    if internal:
        argv.append("--internal")
    if subnet is not None:
        argv += ["--subnet", subnet]
    if ip_range is not None:
        argv += ["--ip-range", ip_range]
    for key, value in sorted((options or {}).items()):
        argv += ["--opt", f"{key}={value}"]
    for key, value in sorted((labels or {}).items()):
        argv += ["--label", f"{key}={value}"]
    argv.append(name)
    return argv


def network_remove(*names: str) -> list[str]:
    return [DOCKER, "network", "rm", *names]


def network_connect(
    network: str, container: str, *, ip: str | None = None, alias: str | None = None
) -> list[str]:
    argv = [DOCKER, "network", "connect"]
    if ip is not None:
        argv += ["--ip", ip]
    if alias is not None:
        argv += ["--alias", alias]
    return [*argv, network, container]


# -- containers -----------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    """What a container is created from; ``create_container`` turns it into argv.

    ``network`` is the one network given at create time (the Docker of
    Debian bookworm, 20.10, accepts only one there); ``extra_networks`` are
    connected before the first start, as (network, fixed address or None).
    """

    name: str
    image: str
    network: str
    labels: Mapping[str, str]
    args: tuple[str, ...] = ()
    network_alias: str | None = None
    user: str | None = None
    read_only: bool = True
    tmpfs: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (host, container, read-only)
    publish: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    memory: str = "512m"
    cpus: str = "1.0"
    pids_limit: int = 256
    restart: str = "unless-stopped"
    health_cmd: str | None = None
    extra_networks: tuple[tuple[str, str | None], ...] = field(default=())
    group_add: tuple[int, ...] = ()  # supplementary host gids (the secrets group)
    #: ``container:NAME`` joins another container's PID namespace (the renewer signals nginx).
    pid: str | None = None
    entrypoint: str | None = None

    def digest(self) -> str:
        """A short hash of everything the container is made from (goes in its spec label)."""
        body = json.dumps(
            {
                "image": self.image,
                "network": self.network,
                "alias": self.network_alias,
                "args": self.args,
                "user": self.user,
                "read_only": self.read_only,
                "tmpfs": self.tmpfs,
                "mounts": self.mounts,
                "publish": self.publish,
                "cap_add": self.cap_add,
                "memory": self.memory,
                "cpus": self.cpus,
                "pids": self.pids_limit,
                "restart": self.restart,
                "health": self.health_cmd,
                "extra_networks": self.extra_networks,
                "group_add": self.group_add,
                "labels": dict(sorted(self.labels.items())),
            },
            sort_keys=True,
        )
        # Added later: hashed only when set, so older containers keep their digest.
        for extra, value in (("pid", self.pid), ("entrypoint", self.entrypoint)):
            if value is not None:
                body += f"\0{extra}={value}"
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def create_container(spec: ContainerSpec) -> list[str]:
    """``docker create`` with the hardening every claudegate container gets.

    All capabilities dropped (then only ``cap_add``), no privilege gain
    through setuid binaries, a read-only root with tmpfs where writes are
    needed, memory/CPU/pid limits, a restart policy, and bounded json logs.
    """
    argv = [DOCKER, "create", "--name", spec.name, "--network", spec.network]
    if spec.network_alias is not None:
        argv += ["--network-alias", spec.network_alias]
    if spec.user is not None:
        argv += ["--user", spec.user]
    for gid in spec.group_add:
        argv += ["--group-add", str(gid)]
    if spec.pid is not None:
        argv += ["--pid", spec.pid]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    if spec.read_only:
        argv.append("--read-only")
    for path in spec.tmpfs:
        argv += ["--tmpfs", path]
    argv += ["--cap-drop", "ALL"]
    for cap in spec.cap_add:
        argv += ["--cap-add", cap]
    argv += ["--security-opt", "no-new-privileges"]
    argv += ["--memory", spec.memory, "--cpus", spec.cpus, "--pids-limit", str(spec.pids_limit)]
    argv += ["--restart", spec.restart]
    argv += LOG_OPTIONS
    if spec.health_cmd is not None:
        argv += ["--health-cmd", spec.health_cmd, "--health-interval", "10s", "--health-timeout", "3s"]
        argv += ["--health-retries", "3"]
    for host, inside, read_only in spec.mounts:
        argv += ["--volume", f"{host}:{inside}:{'ro' if read_only else 'rw'}"]
    for port in spec.publish:
        argv += ["--publish", port]
    labels = {**spec.labels, LABEL_SPEC: spec.digest()}
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    return [*argv, spec.image, *spec.args]


def container_inspect(name: str) -> list[str]:
    return [DOCKER, "container", "inspect", "--format", "{{json .}}", name]


def container_list(prefix: str, *, role: str | None = None) -> list[str]:
    """Names of this installation's containers (running or not), one a line."""
    argv = [DOCKER, "container", "ls", "--all", "--filter", f"label={LABEL_INSTANCE}={prefix}"]
    if role is not None:
        argv += ["--filter", f"label={LABEL_ROLE}={role}"]
    return [*argv, "--format", "{{.Names}}"]


def container_start(name: str) -> list[str]:
    return [DOCKER, "container", "start", name]


def container_stop(name: str, *, timeout: int = 35) -> list[str]:
    # The gateway drains for up to 30 s on SIGTERM (streams in flight finish).
    return [DOCKER, "container", "stop", "--time", str(timeout), name]


def container_remove(*names: str) -> list[str]:
    return [DOCKER, "container", "rm", "--force", "--volumes", *names]


def container_logs(name: str, *, tail: int = 100) -> list[str]:
    return [DOCKER, "container", "logs", "--tail", str(tail), name]


def exec_in(container: str, argv: Sequence[str], *, stdin: bool = False) -> list[str]:
    return [DOCKER, "exec", *(["--interactive"] if stdin else []), container, *argv]


def signal_nginx_master(container: str, pid: int, signal: str) -> list[str]:
    """Send nginx's master ``signal`` from inside its container (``docker exec``, the shell's ``kill``).

    Not ``docker kill --signal``: Docker marks a container it signals that way
    as manually stopped, whatever the signal, until its next ``docker start``
    -- so after one graceful reload an ``unless-stopped`` nginx was not
    started again when dockerd restarted (a reboot), nor after a crash, and
    the renewer that joins its namespaces could not start either.
    """
    return exec_in(container, ["sh", "-c", 'kill -s "$1" "$2"', "claudegate-signal", signal, str(pid)])


# nginx's processes from /proc inside its container: its image has no ps.
_NGINX_WORKERS = (
    "for d in /proc/[0-9]*; do "
    "c=$(tr '\\0' ' ' <\"$d/cmdline\" 2>/dev/null) || continue; "
    'case "$c" in "nginx: "*) echo "${d#/proc/} $c";; esac; '
    "done"
)


def nginx_workers(container: str) -> list[str]:
    """Lines ``PID nginx: ...`` for the master and every worker in the nginx container."""
    return exec_in(container, ["sh", "-c", _NGINX_WORKERS])


# -- the two services -------------------------------------------------------------


def gateway_spec(
    layout: HostLayout, gateway_id: str, image: str, *, secrets_gid: int | None = None, replica: int = 1
) -> ContainerSpec:
    """The gateway of one gateway id: internal network only (plus egress), no port published.

    It runs as its image's unprivileged user with no capabilities; the
    Anthropic key and the pepper arrive as read-only files in /run/secrets,
    owned by root and readable by the host's secrets group, which the
    container joins (``secrets_gid``, from the host).
    """
    return ContainerSpec(
        name=layout.gateway_container(gateway_id, replica),
        image=image,
        network=layout.internal_network,
        network_alias=layout.gateway_alias(gateway_id),
        user=f"{GATEWAY_UID}:{GATEWAY_GID}",
        tmpfs=("/tmp:rw,noexec,nosuid,size=16m",),  # noqa: S108 - a tmpfs private to the container
        mounts=(
            (posixpath.join(layout.gateway_dir(gateway_id), GATEWAY_YAML), GATEWAY_CONFIG, True),
            layout.mount(GATEWAY_SECRETS),
            layout.mount(GATEWAY_DATA),
            layout.mount(GATEWAY_LOGS),
        ),
        memory="512m",
        cpus="1.0",
        labels={
            LABEL_INSTANCE: layout.prefix,
            LABEL_ROLE: "gateway",
            LABEL_GATEWAY: gateway_id,
            # Only on later replicas: the first one's spec (and so its container) stays as it was.
            **({LABEL_REPLICA: str(replica)} if replica > 1 else {}),
        },
        extra_networks=((layout.egress_network, None),),
        group_add=() if secrets_gid is None else (secrets_gid,),
    )


def nginx_spec(
    layout: HostLayout, image: str, *, http_port: int, https_port: int, fixed_ip: str
) -> ContainerSpec:
    """nginx: the only container with published ports.

    Root inside (the master reads the TLS key and binds the ports), but with
    only the capabilities it needs: bind low ports, switch workers to
    www-data, and chown its temp directories. The configuration path goes
    through the ``current`` symlink, so a switch is a symlink swap plus a
    graceful reload.
    """
    return ContainerSpec(
        name=layout.nginx_container,
        image=image,
        network=layout.edge_network,
        args=("-c", NGINX_RELEASES.file("current", "nginx", "nginx.conf")),
        tmpfs=(
            "/run:rw,nosuid,size=4m",
            "/var/lib/nginx:rw,nosuid,size=64m",
            "/tmp:rw,noexec,nosuid,size=16m",  # noqa: S108 - a tmpfs private to the container
            # nginx logs to stdout/stderr (rotated by the log driver); this
            # only absorbs the compiled-in error log path nginx opens at start.
            "/var/log/nginx:rw,noexec,nosuid,size=1m",
        ),
        mounts=(
            layout.mount(NGINX_RELEASES),
            layout.mount(NGINX_TLS),
            layout.mount(NGINX_ACME_WEBROOT),
        ),
        publish=(f"{http_port}:{http_port}", f"{https_port}:{https_port}"),
        cap_add=("CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"),
        memory="256m",
        cpus="1.0",
        # The image has no HTTP client: a TCP connect to the plain port
        # proves the master is up and listening.
        health_cmd=f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{http_port}'",
        labels={LABEL_INSTANCE: layout.prefix, LABEL_ROLE: "nginx"},
        extra_networks=((layout.internal_network, fixed_ip),),
    )
