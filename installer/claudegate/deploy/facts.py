"""Facts: what a command printed about the host, parsed into plain data.

Each parser takes the text a builder's command printed (see
:mod:`.host_cli` and :mod:`.docker_cli`) and is pure, so it is tested on
sample output. A fact command that fails because something is absent (no
Docker yet, no such container) is read as "absent", never as an error: a dry
run on a fresh host must plan everything, not stop.

:class:`HostFacts` holds what a run learned from the host for later steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "FACT_NAMES",
    "ContainerState",
    "FileStat",
    "HostFacts",
    "NetworkState",
    "parse_container",
    "parse_file_stats",
    "parse_links",
    "parse_network",
    "parse_nginx_workers",
    "parse_os_release",
    "parse_sha256",
]


@dataclass(frozen=True)
class FileStat:
    mode: int
    uid: int
    gid: int
    kind: str  # "directory", "regular file", "symbolic link", ...


def parse_file_stats(text: str) -> dict[str, FileStat]:
    stats: dict[str, FileStat] = {}
    for line in text.splitlines():
        head, sep, path = line.partition("|")
        parts = head.split(" ", 3)
        if not sep or len(parts) != 4:
            continue
        mode, uid, gid, kind = parts
        stats[path] = FileStat(int(mode, 8), int(uid), int(gid), kind)
    return stats


def parse_sha256(text: str) -> dict[str, str]:
    """``sha256sum`` output to {path: hex digest}."""
    digests: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64:
            digests[path] = digest
    return digests


def parse_links(text: str) -> dict[str, str]:
    links: dict[str, str] = {}
    for line in text.splitlines():
        link, sep, target = line.partition(" ")
        if sep:
            links[link] = target
    return links


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip('"')
    return values


@dataclass(frozen=True)
class ContainerState:
    """The parts of ``docker container inspect`` the steps look at."""

    id: str
    name: str
    image: str  # the image reference it was created from
    status: str  # created, running, restarting, exited, dead, paused
    health: str | None  # starting, healthy, unhealthy, or None without a health check
    restart_count: int
    started_at: str
    exit_code: int
    labels: dict[str, str]
    networks: dict[str, str]  # network name -> IPv4 address ("" when not running)

    @property
    def running(self) -> bool:
        return self.status == "running"


def parse_container(text: str) -> ContainerState | None:
    """One ``{{json .}}`` line of ``docker container inspect``; None when unparseable."""
    try:
        data: dict[str, Any] = json.loads(text)
    except ValueError:
        return None
    state = data.get("State") or {}
    config = data.get("Config") or {}
    health = state.get("Health") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    return ContainerState(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        status=str(state.get("Status", "")),
        health=health.get("Status") if health else None,
        restart_count=int(data.get("RestartCount") or 0),
        started_at=str(state.get("StartedAt", "")),
        exit_code=int(state.get("ExitCode") or 0),
        labels=dict(config.get("Labels") or {}),
        networks={str(k): str((v or {}).get("IPAddress") or "") for k, v in networks.items()},
    )


@dataclass(frozen=True)
class NetworkState:
    name: str
    internal: bool
    subnets: tuple[str, ...]
    labels: dict[str, str]
    options: dict[str, str] = field(default_factory=dict)


def parse_network(text: str) -> NetworkState | None:
    try:
        data: dict[str, Any] = json.loads(text)
    except ValueError:
        return None
    ipam = (data.get("IPAM") or {}).get("Config") or []
    return NetworkState(
        name=str(data.get("Name", "")),
        internal=bool(data.get("Internal")),
        subnets=tuple(str(c.get("Subnet", "")) for c in ipam if c.get("Subnet")),
        labels=dict(data.get("Labels") or {}),
        options={str(k): str(v) for k, v in (data.get("Options") or {}).items()},
    )


def parse_nginx_workers(text: str) -> tuple[int | None, set[int]]:
    """(master pid, pids of workers that accept new connections).

    Workers of an old configuration are renamed ``nginx: worker process is
    shutting down`` by nginx; they are not counted.
    """
    master: int | None = None
    workers: set[int] = set()
    for line in text.splitlines():
        pid_text, _, title = line.strip().partition(" ")
        if not pid_text.isdigit():
            continue
        title = title.strip()
        if title.startswith("nginx: master process"):
            master = int(pid_text)
        elif title == "nginx: worker process":
            workers.add(int(pid_text))
    return master, workers


def parse_group_gid(text: str) -> int | None:
    """The gid in a ``getent group`` line (``NAME:x:GID:MEMBERS``), or None."""
    parts = text.strip().split(":")
    if len(parts) < 3 or not parts[2].isdigit():
        return None
    return int(parts[2])


@dataclass
class HostFacts:
    """What a run learned from the host, for the steps after the one that learned it.

    Each step declares the ones it reads (``Step.reads``); a test holds the
    declarations to what the steps' plans actually read.
    """

    machine: str = ""  # ``uname -m`` (connect)
    current: str | None = None  # releases/current when the run started (connect in a dry run, else lock)
    previous: str | None = None  # releases/previous when the run started
    docker_missing: bool = False  # docker: no engine, or not running, when planned (nothing to inspect yet)
    secrets_gid: int | None = None  # the host group that may read the secrets (None: not there yet)


#: The names a step may list in ``Step.reads``.
FACT_NAMES = frozenset(f.name for f in fields(HostFacts))
