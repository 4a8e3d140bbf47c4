"""End to end: the images sent ahead (built here, written to the host's disk while it installs Docker).

A fresh server (sshd only, no Docker) reached through a slow link (a relay
at 4 MB/s, as a home uplink to a distant server): the Docker install ends
long before the ~240 MB of images are on the host's disk (60 s at that
rate), so the images step is still waiting for the transfer when the test
presses Cancel from another thread, as the wizard's button does. The run
must stop within a few seconds and leave nothing behind: no spool directory,
no ``cat`` or ``docker load`` on the host, no ``docker save`` or build here,
no thread. The next run over
the direct link resumes to a smoke-tested gateway and removes a spool
directory a killed run left, while a planted symlink with the same name
pattern (and what it points at) stays untouched.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from claudegate.control.cancel import CancelToken
from claudegate.control.controls import RunControls, using
from claudegate.control.progress import StepEvent
from claudegate.deploy.api import connector_for, deploy
from claudegate.errors import Cancelled
from tests.deploy.support import fresh_server_and_fake, fresh_server_doc, write_config
from tests.support.fake_anthropic import FakeProcess
from tests.support.fresh_server import FreshServer
from tests.support.tcp_relay import TcpRelay

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

KEY = "sk-ant-api03-ahead-" + secrets.token_hex(16)

# Every process on the host whose command line names the spool or a load from it.
HOST_PROCESSES = r"""
for p in /proc/[0-9]*; do
  case "${p#/proc/}" in "$$"|"$PPID") continue;; esac  # this script (and its runner) name the patterns
  c=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
  case "$c" in *claudegate-spool*|*"image load"*|*claudegate-images.*) echo "${p#/proc/}: $c";; esac
done
"""


def _doc(server: FreshServer, directory: Path, fake: FakeProcess, *, host: str, port: int) -> dict[str, object]:
    doc = fresh_server_doc(server, directory, fake, KEY, clients=[{"name": "ahead"}])
    known_hosts = str(directory / f"known_hosts-{port}")
    doc["target"] = {**doc["target"], "host": host, "port": port, "known_hosts": known_hosts}
    return doc


def _local_children(pattern: str) -> list[str]:
    """This process's children whose command line contains ``pattern`` (a docker save or build left running)."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if ppid == me and pattern in cmdline:
            found.append(cmdline)
    return found


def test_cancel_while_the_images_are_sent_ahead_stops_in_seconds_and_leaves_nothing(tmp_path: Path) -> None:
    with fresh_server_and_fake(tmp_path, KEY) as (server, fake):
        with TcpRelay(server.port, server.ip, rate=4e6) as relay:
            slow = write_config(
                tmp_path / "slow", _doc(server, tmp_path, fake, host="127.0.0.1", port=relay.port)
            )
            token = CancelToken()
            waiting = threading.Event()
            events: list[StepEvent] = []

            def report(event: StepEvent) -> None:
                events.append(event)
                # The images step is waiting while bytes are on their way to the host's disk.
                if event.step == "images" and event.message.startswith("images sent ahead: writing") and (
                    event.done or 0
                ) > 0:
                    waiting.set()

            pressed: list[float] = []

            def press_cancel() -> None:
                if waiting.wait(300):
                    time.sleep(0.5)
                    pressed.append(time.monotonic())
                    token.cancel("cancelled by the test")

            presser = threading.Thread(target=press_cancel, daemon=True)
            presser.start()
            with (
                connector_for(slow) as conn,
                using(RunControls(cancel=token)),
                pytest.raises(Cancelled) as stopped,
            ):
                deploy(slow, conn, reporter=report)
            ended = time.monotonic()
            presser.join(5)
        assert pressed, [f"{e.step} {e.kind} {e.message}" for e in events][-30:]
        assert stopped.value.step == "images"
        # Honoured at the next safe point: the wait polls the token, the discard kills the stream.
        assert ended - pressed[0] < 5.0, ended - pressed[0]
        notes = [e.message for e in events if e.kind == "note" and e.step == "docker"]
        assert any("while Docker is installed" in n for n in notes), notes

        # Nothing left: on the host (spool, cat, docker load) and here (docker save, builds, the thread).
        _code, spools = server.exec(["sh", "-c", "ls -d /var/tmp/claudegate-images.* 2>/dev/null; true"])
        assert spools.decode().strip() == ""
        _code, procs = server.exec(["sh", "-c", HOST_PROCESSES])
        assert procs.decode().strip() == ""
        assert _local_children("docker") == []
        assert not [t for t in threading.enumerate() if t.name == "claudegate-images-ahead"]
        _code, journal = server.exec(["cat", "/opt/claudegate/state/journal.json"])
        assert b"cancelled in step images" in journal, journal

        # What a run killed outright would leave, and what a hostile user could plant beside it.
        _code, out = server.exec(
            [
                "sh",
                "-c",
                "mkdir -m 700 /var/tmp/claudegate-images.killedrun && "
                "head -c 1000000 /dev/zero > /var/tmp/claudegate-images.killedrun/images.tar && "
                "mkdir -p /srv/keep && echo keep > /srv/keep/file && "
                "ln -s /srv/keep /var/tmp/claudegate-images.planted && echo made",
            ]
        )
        assert out.strip().endswith(b"made"), out

        # The next run, over the direct link, resumes to a smoke-tested gateway.
        direct = write_config(
            tmp_path / "direct", _doc(server, tmp_path, fake, host=server.ip, port=server.port)
        )
        with connector_for(direct) as conn:
            result = deploy(direct, conn)
        assert result.smoke is not None and result.smoke.ok
        images = next(s for s in result.steps if s.name == "images")
        assert any("claudegate-images.killedrun" in c for c in images.changes), images.changes
        _code, left = server.exec(
            ["sh", "-c", "ls -d /var/tmp/claudegate-images.* 2>/dev/null; cat /srv/keep/file"]
        )
        assert left.decode().split() == ["/var/tmp/claudegate-images.planted", "keep"], left
