"""Cancel a real deploy from another thread (the wizard's Cancel), then resume and converge.

Target: this machine's Docker, in its own root, prefix, subnet and ports (as
tests/deploy/test_e2e_local.py). The images are content-addressed, so when
another test built them already this deploy reuses them.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.progress import StepEvent
from claudegate.errors import Cancelled
from claudegate.session import ScriptedInteraction, Session
from tests.deploy.support import write_config, write_secret
from tests.support.fake_anthropic import spawn_fake
from tests.support.fresh_server import docker_client
from tests.support.parallel import deploy_subnet, name_suffix
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

KEY = "sk-ant-api03-cancel-" + secrets.token_hex(12)


def _free_port() -> int:
    return free_port("0.0.0.0")


def _bridge_gateway() -> str:
    """This machine's address on Docker's default bridge (IPAM may omit Gateway: then the subnet's first host)."""
    config = docker_client().networks.get("bridge").attrs["IPAM"]["Config"][0]
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any], HostLayout]]:
    directory = tmp_path_factory.mktemp("cancel")
    fake = spawn_fake("0.0.0.0:0", api_keys=[KEY], event_delay=0.02)
    layout = HostLayout(root=str(directory / "root"), prefix=f"cgcancel{name_suffix()}")
    doc: dict[str, Any] = {
        "target": {"host": "local", "sudo": False},
        "domain": "gw.test",
        "tls": {"mode": "internal-ca"},
        "upstream": {
            "base_url": f"http://{_bridge_gateway()}:{fake.url.rsplit(':', 1)[1]}",
            "api_key_file": str(write_secret(directory / "key", KEY)),
        },
        "ports": {"http": _free_port(), "https": _free_port()},
        "network": {"subnet": deploy_subnet()},
        "clients": [{"name": "me"}],
        "limits": {"per_ip": {"rate": "50r/s", "burst": 20}},
        "state_dir": str(directory / "state"),
    }
    try:
        yield directory, doc, layout
    finally:
        cfg = write_config(directory, doc)
        with Session(cfg, ScriptedInteraction(consent_answers=True), layout=layout) as session:
            session.uninstall(keep_data=False, keep_images=True)
        fake.stop()


def test_cancel_from_another_thread_then_resume_and_converge(setup: tuple[Path, dict[str, Any], HostLayout]) -> None:
    directory, doc, layout = setup
    cfg = write_config(directory, doc)
    events: list[StepEvent] = []
    gateway_started = threading.Event()

    def progress(event: StepEvent) -> None:
        events.append(event)
        if event.kind == "work" and event.step == "gateway":
            gateway_started.set()  # waiting for the new gateway to be ready: a wait loop

    interaction = ScriptedInteraction(consent_answers=True)
    session = Session(cfg, interaction, progress=progress, layout=layout)
    canceller = threading.Thread(target=lambda: gateway_started.wait(600) and session.cancel("Cancel pressed"))
    canceller.start()
    with session, pytest.raises(Cancelled) as stopped:
        session.deploy()
    canceller.join()
    assert stopped.value.step == "gateway" and stopped.value.exit_code == 130
    assert interaction.cancellations == [stopped.value]  # the front end is told once
    assert [e.step for e in events if e.kind == "fail"] == ["gateway"]
    assert not any(e.kind == "start" and e.step == "switch" for e in events)  # nothing switched

    # A clean state: the journal says where it stopped and stays unfinished; the lock is released.
    journal = Journal.from_bytes(Path(layout.journal).read_bytes())
    assert journal is not None and journal.interrupted and journal.outcome == "cancelled in step gateway"
    assert not Path(layout.lock_dir).exists()
    assert not Path(layout.current_link).exists()  # never served

    # The next run resumes and converges; the one after changes nothing.
    notes: list[str] = []
    with Session(cfg, ScriptedInteraction(consent_answers=True), layout=layout,
                 progress=lambda e: notes.append(e.message) if e.kind == "note" else None) as again:
        result = again.deploy()
        assert any("resuming the interrupted deploy" in n for n in notes), notes
        assert result.smoke is not None and result.smoke.ok, result.smoke.table() if result.smoke else ""
        assert "me" in result.new_client_keys
        final = Journal.from_bytes(Path(layout.journal).read_bytes())
        assert final is not None and final.finished and final.outcome == "ok"
        assert not again.deploy().changed
    checks = [e for e in events if e.kind == "check"]
    assert checks == []  # the cancelled run never reached its smoke test


def test_cancel_during_the_smoke_test_puts_the_last_good_release_back(
    setup: tuple[Path, dict[str, Any], HostLayout],
) -> None:
    directory, doc, layout = setup
    good = Path(layout.current_link).resolve().name  # what the test above left serving
    changed = {**doc, "limits": {"per_ip": {"rate": "50r/s", "burst": 21}}}  # a new release
    cfg = write_config(directory, changed, "changed.yaml")
    first_check = threading.Event()

    def progress(event: StepEvent) -> None:
        if event.kind == "check":
            first_check.set()

    session = Session(cfg, ScriptedInteraction(consent_answers=True), progress=progress, layout=layout)
    canceller = threading.Thread(target=lambda: first_check.wait(600) and session.cancel())
    canceller.start()
    with session, pytest.raises(Cancelled) as stopped:
        session.deploy()
    canceller.join()
    assert stopped.value.step == "smoke"
    assert Path(layout.current_link).resolve().name == good  # the proven release serves again
    assert not Path(layout.lock_dir).exists()
    journal = Journal.from_bytes(Path(layout.journal).read_bytes())
    assert journal is not None and "cancelled" in journal.outcome
    names = {c.name for c in docker_client().containers.list(all=True) if c.name.startswith(layout.prefix)}
    assert len([n for n in names if "gateway" in n]) == 1, names  # the unproven release's gateway is gone
