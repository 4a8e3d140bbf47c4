"""Open and verify the connection to the target before a run ("Test connection").

:func:`check_target` runs a handful of read-only facts over an open
connector and returns a typed :class:`ConnectionReport`: who we are on the
target, whether sudo works without a password, the distribution, Docker,
whether ports 80/443 are free, and what a deploy would install. It changes
nothing on the host. The session keeps the verified connector open, so the
run that follows reuses it (no second handshake, no second question).

The commands are pure builders and the parsers pure functions, tested from
canned text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.facts import parse_links, parse_os_release
from claudegate.deploy.layout import HostLayout

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig
    from claudegate.connectors.base import Connector

__all__ = ["ConnectionReport", "PortUse", "check_target", "listening_ports_argv", "parse_listening_ports"]

# Linux's own table of listening sockets: present on every host, no ss/netstat needed.
_LISTENING = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"
_TCP_LISTEN = "0A"


def listening_ports_argv() -> list[str]:
    return ["sh", "-c", _LISTENING]


def parse_listening_ports(text: str) -> set[int]:
    """The TCP ports some socket listens on, from /proc/net/tcp{,6} lines."""
    ports: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "sl":
            continue
        local, state = parts[1], parts[3]
        if state != _TCP_LISTEN or ":" not in local:
            continue
        try:
            ports.add(int(local.rsplit(":", 1)[1], 16))
        except ValueError:
            continue
    return ports


@dataclass(frozen=True)
class PortUse:
    port: int
    free: bool
    #: Who holds it when it is not free: "claudegate" (our own nginx, a redeploy) or "another program".
    holder: str = ""


@dataclass(frozen=True)
class ConnectionReport:
    """What "Test connection" found. ``problems`` are blockers; ``warnings`` are not."""

    target: str
    local: bool
    host_key_fingerprint: str | None  # SHA256:... of the verified key (SSH only)
    user_is_root: bool
    sudo_ok: bool | None  # None: not needed (root, or target.sudo false)
    machine: str  # uname -m
    distro: str  # PRETTY_NAME of /etc/os-release
    distro_supported: bool  # Debian/Ubuntu: Docker can be installed automatically
    docker_installed: bool
    docker_version: str | None  # the engine's version when it runs and answers
    ports: tuple[PortUse, ...]
    deployed_release: str | None  # what serves now, if anything
    will_install: tuple[str, ...]
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def text(self) -> str:
        lines = [f"target: {self.target}"]
        if self.host_key_fingerprint:
            lines.append(f"host key: {self.host_key_fingerprint} (verified)")
        sudo = "not needed" if self.sudo_ok is None else ("ok" if self.sudo_ok else "NOT AVAILABLE without a password")
        lines.append(f"sudo: {sudo}")
        lines.append(f"system: {self.distro or 'unknown'} ({self.machine or '?'})")
        if self.docker_version:
            docker = f"running, version {self.docker_version}"
        elif self.docker_installed:
            docker = "installed, not running (a deploy starts it)"
        else:
            docker = "not installed"
        lines.append(f"docker: {docker}")
        for use in self.ports:
            lines.append(f"port {use.port}: {'free' if use.free else 'in use by ' + use.holder}")
        lines.append(f"deployed: {self.deployed_release or 'nothing yet'}")
        if self.will_install:
            lines.append("a deploy will install:")
            lines += [f"  - {item}" for item in self.will_install]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def _debian_like(os_release: dict[str, str]) -> bool:
    ids = {os_release.get("ID", "")} | set(os_release.get("ID_LIKE", "").split())
    return bool(ids & {"debian", "ubuntu"})


def check_target(cfg: DeployConfig, connector: Connector, *, layout: HostLayout | None = None) -> ConnectionReport:
    """Verify the target for a deploy of ``cfg``; read-only. The connector opens (and verifies) first."""
    layout = layout or HostLayout()
    use_sudo = bool(cfg.target.sudo) and not connector.is_root

    def fact(argv: list[str], *, sudo: bool = False) -> tuple[bool, str]:
        result = connector.run(argv, sudo=sudo, timeout=60, check=False)
        return result.ok, result.text

    # The first command opens the connection: host key questions happen here.
    _, machine = fact(host_cli.uname_machine())
    sudo_ok: bool | None = None
    problems: list[str] = []
    warnings: list[str] = []
    if use_sudo:
        sudo_ok, _ = fact(host_cli.sudo_check(), sudo=True)
        if not sudo_ok:
            problems.append(
                f"{connector.target}: the user cannot run commands with sudo without a password; "
                "give it passwordless sudo (NOPASSWD), or connect as root"
            )
    os_release = parse_os_release(fact(host_cli.os_release())[1])
    distro = os_release.get("PRETTY_NAME", "")
    supported = _debian_like(os_release)
    docker_installed = fact(host_cli.command_path("docker"))[0]
    privileged = use_sudo and bool(sudo_ok)
    version: str | None = None
    if docker_installed and (sudo_ok is not False):
        ok, out = fact(docker_cli.docker_info(), sudo=privileged)
        version = out.strip() or None if ok else None
    if not docker_installed and not supported:
        problems.append(
            f"Docker is not installed and {distro or 'this system'} is not Debian or Ubuntu; "
            "install Docker Engine on the host first"
        )

    ours = False
    deployed: str | None = None
    if version is not None:
        ok, _ = fact(docker_cli.container_inspect(layout.nginx_container), sudo=privileged)
        ours = ok
        links = parse_links(fact(host_cli.read_links([layout.current_link]), sudo=privileged)[1])
        deployed = links.get(layout.current_link)
    listening = parse_listening_ports(fact(listening_ports_argv())[1])
    ports: list[PortUse] = []
    for port in (cfg.ports.http, cfg.ports.https):
        if port not in listening:
            ports.append(PortUse(port, True))
        elif ours:
            ports.append(PortUse(port, False, "claudegate"))
        else:
            ports.append(PortUse(port, False, "another program"))
            problems.append(
                f"port {port} is already in use on {connector.target} by another program; stop it, "
                "or choose other ports under ports:"
            )

    will: list[str] = []
    if not docker_installed:
        will.append("docker.io from the distribution's packages (apt-get; you are asked first)")
    elif version is None:
        will.append("start the Docker engine")
    if deployed is None:
        will.append(f"directories under {layout.root}")
        images = "gateway and nginx images" + (" and a certbot image" if cfg.tls.mode == "acme" else "")
        will.append(f"{images} built on the host from {cfg.images.base_image}")
        will.append(f"containers {layout.nginx_container} and a gateway, networks {layout.prefix}-*")
    else:
        will.append("a new release beside the serving one (blue/green), only if something changed")
    if cfg.target.is_local:
        warnings.append("the target is this machine: the gateway's ports are published here")
    fingerprint = getattr(connector, "host_key_fingerprint", None)
    return ConnectionReport(
        target=connector.target,
        local=cfg.target.is_local,
        host_key_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        user_is_root=connector.is_root,
        sudo_ok=sudo_ok,
        machine=machine.strip(),
        distro=distro,
        distro_supported=supported,
        docker_installed=docker_installed,
        docker_version=version,
        ports=tuple(ports),
        deployed_release=deployed,
        will_install=tuple(will),
        problems=tuple(problems),
        warnings=tuple(warnings),
    )
