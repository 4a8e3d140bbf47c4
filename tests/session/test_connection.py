"""Test connection: the pure parser from canned text, then the real check against this machine."""

from __future__ import annotations

import platform
import socket
from pathlib import Path

import pytest

from claudegate.session import ScriptedInteraction, Session
from claudegate.session.connection import parse_listening_ports
from claudegate.session.document import config_from_document
from tests.support.ports import free_port

# /proc/net/tcp and tcp6 as Linux prints them: 0A is LISTEN, 01 ESTABLISHED.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:01BB 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0
   1: garbage
"""


def test_listening_ports_parsed_from_proc() -> None:
    assert parse_listening_ports(PROC_NET_TCP) == {80, 8080, 443}
    assert parse_listening_ports("") == set()


def _free_port() -> int:
    return free_port("0.0.0.0")


def test_check_this_machine(tmp_path: Path) -> None:
    """A real check of the local target: nothing asked, a busy port reported as a problem."""
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    try:
        doc = {
            "target": {"host": "local", "sudo": False},
            "domain": "gw.test",
            "tls": {"mode": "internal-ca"},
            "upstream": {"api_key_env": "NOT_SET_FOR_A_CHECK"},
            "ports": {"http": busy.getsockname()[1], "https": _free_port()},
            "state_dir": str(tmp_path / "state"),
        }
        asked = ScriptedInteraction()
        with Session(config_from_document(doc), asked) as session:
            report = session.test_connection()
            assert session.connector is not None  # kept open for the run that follows
            again = session.status()  # reuses it
    finally:
        busy.close()
    assert asked.asked == []
    assert report.local and report.machine == platform.machine()
    assert report.sudo_ok is None  # not needed: target.sudo is false
    assert report.docker_installed and report.docker_version
    assert report.distro
    http, https = report.ports
    assert not http.free and http.holder == "another program" and https.free
    assert not report.ok and any(str(http.port) in p for p in report.problems)
    assert "docker.io" not in " ".join(report.will_install)
    assert report.to_json()["ok"] is False and f"port {http.port}: in use" in report.text()
    assert again.docker


@pytest.mark.parametrize("sudo", [True])
def test_check_reports_sudo_when_the_config_asks_for_it(tmp_path: Path, sudo: bool) -> None:
    doc = {
        "target": {"host": "local", "sudo": sudo},
        "domain": "gw.test",
        "tls": {"mode": "internal-ca"},
        "upstream": {"api_key_env": "NOT_SET_FOR_A_CHECK"},
        "ports": {"http": _free_port(), "https": _free_port()},
        "state_dir": str(tmp_path / "state"),
    }
    with Session(config_from_document(doc), ScriptedInteraction()) as session:
        report = session.test_connection()
    # As root sudo adds nothing (None); otherwise the answer is what sudo -n says.
    assert report.sudo_ok is None if report.user_is_root else isinstance(report.sudo_ok, bool)
