"""End to end on this machine's Docker (``local`` target): what the host and its
neighbours can reach of a deployed stack, who owns its secrets, how its logs
are bounded.

- The gateway's public listener (8080) and internal one (9090: health,
  readiness, metrics) refuse connections from the host and from another
  container on the egress network; the host has no route into the internal
  network at all. Through nginx the API works, and the internal listener
  answers only over ``docker exec`` on the container's loopback.
- The secrets are root's files readable by the installation's own system
  group, which the gateway container joins; no uid 10001 owns them.
- Every container logs to json-file with a size cap and a file count.

One deploy for the module; uninstalled at the end (images kept).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claudegate.deploy.api import connector_for, deploy, uninstall
from claudegate.deploy.docker_cli import LOG_OPTIONS
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.results import DeployResult
from tests.deploy.support import sdk_client, write_config, write_secret
from tests.support.fake_anthropic import FakeProcess, spawn_fake
from tests.support.parallel import deploy_subnet, name_suffix
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

KEY = "sk-ant-api03-isolation-" + secrets.token_hex(12)


def _free_port() -> int:
    return free_port("0.0.0.0")


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done.stdout


def _docker0_address() -> str:
    # The containers reach this machine (the fake upstream) at docker0's address.
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "docker0"], capture_output=True, text=True, check=True
    )
    return out.stdout.split(" inet ")[1].split("/")[0]


def _inspect(name: str) -> dict[str, Any]:
    return dict(json.loads(_docker("container", "inspect", name))[0])


@dataclass
class Stack:
    directory: Path
    doc: dict[str, Any]
    layout: HostLayout
    result: DeployResult
    fake: FakeProcess

    @property
    def https(self) -> int:
        return int(self.doc["ports"]["https"])

    def gateway(self) -> dict[str, Any]:
        names = _docker(
            "container", "ls", "--filter", f"label=org.claudegate.instance={self.layout.prefix}",
            "--filter", "label=org.claudegate.role=gateway", "--format", "{{.Names}}",
        ).split()  # fmt: skip
        assert len(names) == 1, names
        return _inspect(names[0])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("isolation")
    fake = spawn_fake("0.0.0.0:0", api_keys=[KEY], event_delay=0.01)
    doc: dict[str, Any] = {
        "target": {"host": "local", "sudo": False},
        "domain": "gw.test",
        "tls": {"mode": "internal-ca"},
        "upstream": {
            "base_url": f"http://{_docker0_address()}:{fake.url.rsplit(':', 1)[1]}",
            "api_key_file": str(write_secret(directory / "key", KEY)),
        },
        "ports": {"http": _free_port(), "https": _free_port()},
        "network": {"subnet": deploy_subnet()},
        "clients": [{"name": "me"}],
        "limits": {"per_ip": {"rate": "50r/s", "burst": 20}},
        "state_dir": str(directory / "state"),
    }
    layout = HostLayout(root=str(directory / "root"), prefix=f"cgiso{name_suffix()}")
    cfg = write_config(directory, doc)
    try:
        with connector_for(cfg) as target:
            try:
                result = deploy(cfg, target, layout=layout)
                assert result.smoke is not None and result.smoke.ok, (
                    result.smoke.table() if result.smoke else ""
                )
                yield Stack(directory, doc, layout, result, fake)
            finally:
                uninstall(cfg, target, layout=layout, keep_images=True)
        # Uninstall also removed the installation's group.
        assert (
            subprocess.run(["getent", "group", layout.prefix], capture_output=True, check=False).returncode
            == 2
        )
    finally:
        fake.stop()


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return True


def test_through_nginx_the_api_works(stack: Stack) -> None:
    time.sleep(1)  # the smoke test's burst drains from the per-address bucket
    key = stack.result.new_client_keys["me"].reveal()
    client = sdk_client("127.0.0.1", stack.https, stack.directory / "state" / "ca.pem", key)
    reply = client.messages.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "two words"}]
    )
    assert reply.content


def test_the_gateway_listeners_refuse_the_host(stack: Stack) -> None:
    gateway = stack.gateway()
    networks = gateway["NetworkSettings"]["Networks"]
    egress_ip = networks[stack.layout.egress_network]["IPAddress"]
    internal_ip = networks[stack.layout.internal_network]["IPAddress"]
    assert egress_ip and internal_ip
    # The egress bridge is routed on this host: a real connection attempt, refused.
    for port in (8080, 9090):
        assert _refused(egress_ip, port), f"{egress_ip}:{port} answers the host"
    # The internal bridge has no host address, so the host has no route
    # there (a connection would leave by the default route, never reaching
    # the container): checked on the routing table, without sending a packet.
    bridge = "br-" + json.loads(_docker("network", "inspect", stack.layout.internal_network))[0]["Id"][:12]
    route = subprocess.run(
        ["ip", "route", "get", internal_ip], capture_output=True, text=True, check=True
    ).stdout
    assert f"dev {bridge}" not in route, route
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", bridge], capture_output=True, text=True)
    assert addrs.returncode == 0 and " inet " not in addrs.stdout, addrs.stdout


def test_the_gateway_listeners_refuse_a_neighbour_on_the_egress_network(stack: Stack) -> None:
    gateway = stack.gateway()
    egress_ip = gateway["NetworkSettings"]["Networks"][stack.layout.egress_network]["IPAddress"]
    probe = (
        "import socket, sys\n"
        "for port in (8080, 9090):\n"
        "    try:\n"
        "        socket.create_connection((sys.argv[1], port), timeout=3).close(); print(port, 'open')\n"
        "    except ConnectionRefusedError:\n"
        "        print(port, 'refused')\n"
    )
    out = _docker(
        "run", "--rm", "--network", stack.layout.egress_network, "--entrypoint", "/opt/claudegate/venv/bin/python",
        gateway["Config"]["Image"], "-c", probe, egress_ip,
    )  # fmt: skip
    assert out.split() == ["8080", "refused", "9090", "refused"], out


def test_health_and_metrics_answer_on_the_containers_loopback_only(stack: Stack) -> None:
    gateway = stack.gateway()
    assert gateway["State"]["Health"]["Status"] in ("healthy", "starting")
    fetch = (
        "import sys, urllib.request\n"
        "for path in ('/readyz', '/metrics'):\n"
        "    print(path, urllib.request.urlopen('http://127.0.0.1:9090' + path, timeout=3).status)\n"
    )
    out = _docker("exec", gateway["Name"].lstrip("/"), "/opt/claudegate/venv/bin/python", "-c", fetch)
    assert out.split() == ["/readyz", "200", "/metrics", "200"], out
    # nginx has no way to it either: nothing in the rendered files names 9090.
    rendered = Path(stack.layout.release_dir(stack.result.release_id), "nginx")
    assert not [p for p in rendered.rglob("*") if p.is_file() and "9090" in p.read_text()]


def test_secrets_are_roots_and_read_through_the_installations_group(stack: Stack) -> None:
    layout = stack.layout
    group = subprocess.run(
        ["getent", "group", layout.secrets_group], capture_output=True, text=True, check=True
    )
    gid = int(group.stdout.split(":")[2])
    assert gid < 1000  # a system group: not one a login account gets
    secrets_dir = Path(layout.secrets).stat()
    assert (secrets_dir.st_mode & 0o777, secrets_dir.st_uid, secrets_dir.st_gid) == (0o750, 0, gid)
    for path in (layout.api_key_file, layout.pepper_file):
        st = Path(path).lstat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, gid), path
    gateway = stack.gateway()
    assert [str(g) for g in gateway["HostConfig"]["GroupAdd"]] == [str(gid)]
    assert gateway["Config"]["User"] == "10001:10001"


def test_every_container_logs_with_a_size_cap(stack: Stack) -> None:
    names = _docker(
        "container", "ls", "--all", "--filter", f"label=org.claudegate.instance={stack.layout.prefix}",
        "--format", "{{.Names}}",
    ).split()  # fmt: skip
    assert len(names) >= 2, names
    expected = dict(opt.split("=", 1) for opt in LOG_OPTIONS[3::2])
    assert expected == {"max-size": "10m", "max-file": "3"}
    for name in names:
        log_config = _inspect(name)["HostConfig"]["LogConfig"]
        assert log_config == {"Type": "json-file", "Config": expected}, (name, log_config)
    # nginx's access log is its container's stdout (rotated by the driver), not a file.
    nginx = subprocess.run(
        ["docker", "logs", stack.layout.nginx_container],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in nginx.stdout.splitlines() if line.startswith("{")]
    assert any(r.get("path") == "/v1/messages" and r.get("status") == 200 for r in lines), nginx.stdout[
        -1000:
    ]
