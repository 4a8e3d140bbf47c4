"""Helpers for the deploy tests: configs, a fresh server with its upstream, clients through nginx, host snapshots."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import yaml

from claudegate.config import DeployConfig, load_config
from tests.support.fake_anthropic import FakeProcess, spawn_fake
from tests.support.fresh_server import FreshServer, start_fresh_server

DOMAIN = "gw.test"
#: A per-address bucket that drains in under half a second: each deploy's smoke test ends with
#: a burst that fills it, and the tests' own requests follow right after.
QUICK_DRAIN = {"per_ip": {"rate": "50r/s", "burst": 20}}


def write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


TEST_BASE_IMAGE = "claudegate/debian-base:bookworm"


def write_config(directory: Path, doc: dict[str, Any], name: str = "deploy.yaml") -> DeployConfig:
    """Write ``doc`` as a deploy.yaml and load it the way the CLI does."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    # No registry here: build FROM the Debian base that tests/infra makes locally.
    doc = {**doc, "images": {"base_image": TEST_BASE_IMAGE, **doc.get("images", {})}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(path)


def server_target(server: FreshServer, known_hosts: Path) -> dict[str, Any]:
    """deploy.yaml's ``target`` for a fresh server: its SSH key, its host key pinned by fingerprint."""
    return {
        "host": server.ip,
        "user": server.user,
        "ssh_key": str(server.key_path),
        "known_hosts": str(known_hosts),
        "host_key_fingerprint": server.host_key_fingerprint,
    }


def upstream_url(address: str, fake: FakeProcess) -> str:
    """The fake upstream (listening on 0.0.0.0 here) as a host's gateway reaches it: at ``address``."""
    return f"http://{address}:{fake.url.rsplit(':', 1)[1]}"


def fresh_server_doc(
    server: FreshServer,
    directory: Path,
    fake: FakeProcess,
    key: str,
    *,
    clients: list[dict[str, Any]],
    limits: dict[str, Any] = QUICK_DRAIN,
    upstream_address: str | None = None,
) -> dict[str, Any]:
    """A deploy.yaml for ``server`` (internal CA), the fake as upstream, the key file and state under ``directory``.

    The gateway reaches the fake through the server's NAT, at this machine's
    address on the server's network unless ``upstream_address`` says otherwise.
    """
    return {
        "target": server_target(server, directory / "known_hosts"),
        "domain": DOMAIN,
        "tls": {"mode": "internal-ca"},
        "upstream": {
            "base_url": upstream_url(upstream_address or server.host_address, fake),
            "api_key_file": str(write_secret(directory / "anthropic_api_key", key)),
        },
        "clients": clients,
        "limits": limits,
        "state_dir": str(directory / "state"),
    }


@contextlib.contextmanager
def fresh_server_and_fake(
    directory: Path,
    key: str,
    *,
    name_prefix: str = "claudegate-fresh",
    event_delay: float = 0.02,
    docker_installed: bool = False,
) -> Iterator[tuple[FreshServer, FakeProcess]]:
    """A fresh server (sshd only, or with docker.io installed) in ``directory``/server and a fake
    upstream that accepts ``key``; both gone after."""
    with start_fresh_server(directory / "server", name_prefix=name_prefix, docker_installed=docker_installed) as server:
        fake = spawn_fake("0.0.0.0:0", api_keys=[key], event_delay=event_delay)
        try:
            yield server, fake
        finally:
            fake.stop()


def connect_to(host: str, domain: str = DOMAIN) -> Any:
    """An httpx request hook: send requests for ``domain`` to ``host``, keeping SNI and Host."""

    def hook(request: httpx2.Request) -> None:
        if request.url.host == domain:
            request.headers["host"] = request.url.netloc.decode()
            request.url = request.url.copy_with(host=host)
            request.extensions = {**request.extensions, "sni_hostname": domain}

    return hook


def sdk_client(
    host: str, https_port: int, ca_file: Path, key: str, domain: str = DOMAIN
) -> anthropic.Anthropic:
    """The official SDK pointed at the gateway (through nginx, TLS verified against ``ca_file``)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    # The SDK's own HTTP client library (httpx2, an httpx fork).
    http = httpx2.Client(
        verify=context, event_hooks={"request": [connect_to(host, domain)]}, timeout=30, trust_env=False
    )
    port = "" if https_port == 443 else f":{https_port}"
    return anthropic.Anthropic(
        api_key=key, base_url=f"https://{domain}{port}", http_client=http, max_retries=0
    )


@dataclass
class Background:
    """A client that keeps sending requests until stopped; counts what failed."""

    client: anthropic.Anthropic
    interval: float = 0.15
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=16,
                    messages=[{"role": "user", "content": "reply with 3 words"}],
                )
                assert reply.content
                self.ok += 1
            except Exception as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def __enter__(self) -> Background:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


# Everything a plan must leave alone: the installation's files (with content
# hashes), /etc, the package database, and Docker's containers, images and
# networks. Times of files are included: "unchanged" means byte for byte,
# not "rewritten with the same bytes".
SNAPSHOT_SCRIPT = r"""
set -u
for d in /opt/claudegate /etc /usr/local; do
  [ -e "$d" ] && find "$d" -xdev -printf '%p %m %U %G %s %T@ %l\n' 2>/dev/null
done | sort
[ -d /opt/claudegate ] && find /opt/claudegate -type f -exec sha256sum {} + 2>/dev/null | sort
sha256sum /var/lib/dpkg/status
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq)
  [ -n "$ids" ] && docker inspect --format '{{.Name}} {{.Id}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}' $ids | sort
  docker images -q --no-trunc | sort
  docker network ls -q --no-trunc | sort
fi
"""


def host_snapshot(exec_root: Any) -> str:
    """``exec_root(argv) -> (code, output)`` runs as root on the host (docker exec, not SSH)."""
    _code, out = exec_root(["sh", "-c", SNAPSHOT_SCRIPT])
    return out.decode(errors="replace")


# What no shipped image may carry: apt's download cache and lists, the gateway's wheels, pip.
LEFTOVERS = ("/var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/*_Packages* "
             "/opt/claudegate/wheels /opt/claudegate/venv/bin/pip")


def image_leftovers(exec_root: Any, name_filter: str) -> str:
    """What each image of the host's containers named like ``name_filter`` still holds of LEFTOVERS
    ("" when nothing); ``exec_root`` as for host_snapshot. Fails loudly when no container matches."""
    script = (
        f"images=$(docker ps --filter name={name_filter} --format '{{{{.Image}}}}' | sort -u); "
        '[ -n "$images" ] || { echo "no container named like ' + name_filter + '"; exit 0; }; '
        "for image in $images; do docker run --rm --entrypoint sh $image -c "
        f"'ls -d {LEFTOVERS} 2>/dev/null'; done; true"
    )
    _code, out = exec_root(["sh", "-c", script])
    return out.decode(errors="replace").strip()


# The deploy's SSH session from the host's side: its sshd processes.
DROP_SSH_SCRIPT = r"""
for p in /proc/[0-9]*; do
  c=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
  case "$c" in "sshd: deploy"*) kill -9 "${p#/proc/}" 2>/dev/null;; esac
done
"""


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.monotonic()
    try:
        yield box
    finally:
        box["seconds"] = time.monotonic() - started
