"""End to end with the ``local`` target: a deploy onto this machine's own Docker.

The installation gets its own root (under the test's temporary directory),
container/network prefix, private subnet and high ports, so nothing else on
this machine's Docker is touched; it is uninstalled at the end (images are
kept: they are content-addressed, and the next run reuses them).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claudegate.deploy.api import connector_for, deploy, logs, status, uninstall
from claudegate.deploy.layout import HostLayout
from tests.deploy.support import sdk_client, timer, write_config, write_secret
from tests.support.fake_anthropic import spawn_fake
from tests.support.fresh_server import RESOURCE_LABEL, create_bridge, docker_client
from tests.support.parallel import deploy_subnet, name_suffix
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

KEY = "sk-ant-api03-local-" + secrets.token_hex(12)


def _free_port() -> int:
    return free_port("0.0.0.0")


def _host_address_network() -> tuple[Any, str]:
    """A bridge network of the test's own, whose gateway address containers reach this machine at."""
    return create_bridge(docker_client(), f"cgtest-host-{secrets.token_hex(3)}", {RESOURCE_LABEL: "host-address"})


@pytest.fixture(scope="module")
def local_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, object], HostLayout]]:
    directory = tmp_path_factory.mktemp("local")
    host_net, host_address = _host_address_network()
    fake = spawn_fake("0.0.0.0:0", api_keys=[KEY], event_delay=0.02)
    try:
        doc: dict[str, object] = {
            "target": {"host": "local", "sudo": False},
            "domain": "gw.test",
            "tls": {"mode": "internal-ca"},
            # The containers reach this machine at an address the test gave it.
            "upstream": {
                "base_url": f"http://{host_address}:{fake.url.rsplit(':', 1)[1]}",
                "api_key_file": str(write_secret(directory / "key", KEY)),
            },
            "ports": {"http": _free_port(), "https": _free_port()},
            "network": {"subnet": deploy_subnet()},
            "clients": [{"name": "me"}],
            # A quick-draining per-address bucket: the smoke test's burst fills it.
            "limits": {"per_ip": {"rate": "50r/s", "burst": 20}},
            "state_dir": str(directory / "state"),
        }
        layout = HostLayout(root=str(directory / "root"), prefix=f"cgtest{name_suffix()}")
        yield directory, doc, layout
    finally:
        fake.stop()
        host_net.remove()


def test_local_deploy_redeploy_status_logs_uninstall(
    local_setup: tuple[Path, dict[str, object], HostLayout],
) -> None:
    directory, doc, layout = local_setup
    cfg = write_config(directory, doc)
    with connector_for(cfg) as target:
        try:
            result = deploy(cfg, target, layout=layout)
            assert result.smoke is not None and result.smoke.ok, result.smoke.table() if result.smoke else ""
            key = result.new_client_keys["me"].reveal()
            https = int(doc["ports"]["https"])  # type: ignore[index]
            time.sleep(1)  # let the smoke test's burst drain from the per-address bucket
            client = sdk_client("127.0.0.1", https, directory / "state" / "ca.pem", key)
            reply = client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=16,
                messages=[{"role": "user", "content": "reply with 2 words"}],
            )
            assert reply.content

            with timer() as took:
                again = deploy(cfg, target, layout=layout)
            assert not again.changed, again.plan_text()
            assert took["seconds"] < 10

            report = status(cfg, target, layout=layout)
            assert report.serving and report.current_release == result.release_id
            assert "gw.test" in (report.certificate or "")
            assert logs(cfg, target, "gateway", 50, layout=layout).strip()
            assert logs(cfg, target, "nginx", 50, layout=layout) is not None
            assert KEY not in logs(cfg, target, "gateway", 500, layout=layout)
        finally:
            uninstall(cfg, target, layout=layout, keep_images=True)
    assert not Path(layout.root).exists()
    names = [c.name for c in docker_client().containers.list(all=True)]
    assert not [n for n in names if n.startswith(layout.prefix)]
