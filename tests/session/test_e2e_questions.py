"""Questions and cancellation against the sshd-only fresh-server container (no Docker on it).

- The same deploy, driven by the CLI's interaction (a terminal, answers typed)
  and by a scripted one, asks the same questions in the same order: the host
  key on first contact (through the interaction, not an error and a rerun),
  then consent to install Docker. Both answer no to Docker: nothing is
  installed, the lock is released.
- ``claudegate deploy`` gets Ctrl-C: it stops at the next safe point, exits
  130, the journal says where, the lock is released, and the next run takes
  the lock and resumes.
- A changed host key always stops, whatever the interaction would answer.

Nothing here installs Docker or builds an image, so the module takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claudegate.cli.interaction import CliInteraction
from claudegate.control.interaction import ConsentQuestion, HostKeyQuestion, Interaction, NonInteractive
from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import HostLayout
from claudegate.errors import Declined, HostKeyChanged, HostKeyUnknown
from claudegate.session import RecordingInteraction, ScriptedInteraction, Session
from tests.deploy.support import write_config, write_secret
from tests.support.fresh_server import FreshServer, generate_ed25519, start_fresh_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
LAYOUT = HostLayout()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FreshServer, Path]]:
    directory = tmp_path_factory.mktemp("questions")
    with start_fresh_server(directory / "server") as fresh:
        yield fresh, directory


def _doc(fresh: FreshServer, directory: Path) -> dict[str, Any]:
    return {
        "target": {
            "host": fresh.ip,
            "user": fresh.user,
            "ssh_key": str(fresh.key_path),
            "known_hosts": str(directory / "known_hosts"),
        },
        "domain": "gw.test",
        "tls": {"mode": "internal-ca"},
        "upstream": {"api_key_file": str(write_secret(directory / "key", "sk-ant-api03-questions"))},
        "state_dir": str(directory / "state"),
    }


def _sh(fresh: FreshServer, script: str) -> tuple[int, str]:
    code, out = fresh.exec(["sh", "-c", script])
    return code, out.decode(errors="replace")


def _lock_held(fresh: FreshServer) -> bool:
    return _sh(fresh, f"test -e {LAYOUT.lock_dir}")[0] == 0


def _journal(fresh: FreshServer) -> Journal | None:
    code, text = _sh(fresh, f"cat {LAYOUT.journal}")
    return Journal.from_bytes(text.encode()) if code == 0 else None


def _deploy_until_declined(fresh: FreshServer, directory: Path, interaction: Interaction) -> list[Any]:
    (directory / "known_hosts").unlink(missing_ok=True)  # first contact, every time
    recording = RecordingInteraction(interaction)
    cfg = write_config(directory, _doc(fresh, directory))
    with Session(cfg, recording) as session, pytest.raises(Declined) as declined:
        session.deploy()
    assert declined.value.flag == "--yes"
    assert not _lock_held(fresh)
    assert _sh(fresh, "command -v docker")[0] != 0, "nothing may be installed after a no"
    return recording.asked


def test_cli_and_scripted_interactions_ask_the_same_questions_in_the_same_order(
    server: tuple[FreshServer, Path],
) -> None:
    fresh, directory = server
    scripted = _deploy_until_declined(fresh, directory, ScriptedInteraction(host_key=True, consent_answers=False))

    typed = iter(["yes\n", "n\n"])
    prompts: list[str] = []

    def read_line(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    cli = _deploy_until_declined(fresh, directory, CliInteraction(tty=True, read_line=read_line))

    assert cli == scripted
    host_key, docker = scripted
    assert isinstance(host_key, HostKeyQuestion) and isinstance(docker, ConsentQuestion)
    assert host_key.fingerprint == fresh.host_key_fingerprint  # the server's real key, from a trusted source
    assert host_key.compare_command == "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    assert docker.topic == "install-docker" and "docker.io" in docker.detail
    assert len(prompts) == 2 and "Trust this host key" in prompts[0] and "[y/N]" in prompts[1]
    assert fresh.host_public_key.split()[1] in (directory / "known_hosts").read_text()


def test_without_a_terminal_the_host_key_stops_with_the_flag(server: tuple[FreshServer, Path]) -> None:
    fresh, directory = server
    (directory / "known_hosts").unlink(missing_ok=True)
    cfg = write_config(directory, _doc(fresh, directory))
    with Session(cfg, NonInteractive()) as session, pytest.raises(HostKeyUnknown) as unknown:
        session.test_connection()
    assert f"--accept-host-key {fresh.host_key_fingerprint}" in (unknown.value.hint or "")
    assert not (directory / "known_hosts").exists() or not (directory / "known_hosts").read_text().strip()

    # The flag answers it; the verified connection is reused by what follows.
    with Session(cfg, NonInteractive(), accept_host_key=fresh.host_key_fingerprint) as session:
        report = session.test_connection()
        connector = session.connector
        session.plan()
        assert session.connector is connector
    assert report.host_key_fingerprint == fresh.host_key_fingerprint
    assert report.sudo_ok is True and not report.docker_installed and report.distro_supported
    assert any("docker.io" in item for item in report.will_install)
    assert all(use.free for use in report.ports) and report.ok, report.text()


def test_ctrl_c_exits_130_leaves_a_journal_and_the_next_run_resumes(server: tuple[FreshServer, Path]) -> None:
    fresh, directory = server
    (directory / "known_hosts").unlink(missing_ok=True)
    write_config(directory, _doc(fresh, directory), "cli.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from claudegate.cli import main; main()", "deploy", "--config",
         str(directory / "cli.yaml"), "--accept-host-key", fresh.host_key_fingerprint, "--yes"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if "Take the deploy lock: no changes" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output
    assert "cancelled" in output and "resumes" in output
    assert not _lock_held(fresh)
    journal = _journal(fresh)
    assert journal is not None and journal.interrupted and journal.outcome == "cancelled in step docker", output
    assert _sh(fresh, "command -v docker")[0] != 0  # stopped before installing anything

    # The next run takes the lock and says it resumes the cancelled one (then stops at the Docker question).
    notes: list[str] = []
    cfg = write_config(directory, _doc(fresh, directory), "cli.yaml")
    no = ScriptedInteraction(consent_answers=False)
    with Session(cfg, no, progress=lambda e: notes.append(e.message) if e.kind == "note" else None) as session, \
            pytest.raises(Declined):
        session.deploy()
    assert any("resuming the interrupted deploy" in n for n in notes), notes


def test_a_changed_host_key_always_stops(server: tuple[FreshServer, Path]) -> None:
    fresh, directory = server
    (directory / "known_hosts").unlink(missing_ok=True)
    cfg = write_config(directory, _doc(fresh, directory))
    with Session(cfg, ScriptedInteraction(host_key=True)) as session:
        session.test_connection()  # first contact: asked, yes, recorded
    fresh.set_host_key(generate_ed25519("root@impostor"))
    yes_to_all = ScriptedInteraction(host_key=True, consent_answers=True)
    with Session(cfg, yes_to_all) as session, pytest.raises(HostKeyChanged):
        session.test_connection()
    assert yes_to_all.asked == []  # a changed key is never a question


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in "".join(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} in:\n{''.join(seen)}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"the command ended before {wanted!r}:\n{''.join(seen)}"
            seen.append(chunk.decode(errors="replace"))


def test_claudegate_deploy_on_a_terminal_asks_the_same_questions(server: tuple[FreshServer, Path]) -> None:
    """The real command in a pseudo-terminal: its prompts, answered by typing, in the scripted order."""
    fresh, directory = server
    (directory / "known_hosts").unlink(missing_ok=True)
    write_config(directory, _doc(fresh, directory), "tty.yaml")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from claudegate.cli import main; main()", "deploy", "--config",
         str(directory / "tty.yaml")],
        cwd=REPO, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )
    os.close(terminal)
    seen: list[str] = []
    try:
        _read_until(controller, "Trust this host key?", seen)
        text = "".join(seen)
        assert fresh.host_key_fingerprint in text
        assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in text
        os.write(controller, b"yes\n")
        _read_until(controller, "[y/N]", seen)
        assert "install docker.io" in "".join(seen).split("Trust this host key?")[1]
        os.write(controller, b"n\n")
        assert proc.wait(timeout=60) == 8
        with contextlib.suppress(AssertionError):
            _read_until(controller, "--yes", seen, timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert "answered no" in "".join(seen)
    assert not _lock_held(fresh) and _sh(fresh, "command -v docker")[0] != 0


def test_a_slow_yes_to_the_host_key_still_connects_without_asking_again(server: tuple[FreshServer, Path]) -> None:
    """sshd drops a login that takes longer than LoginGraceTime (a person reading a fingerprint)."""
    fresh, directory = server
    _sh(fresh, "echo 'LoginGraceTime 2' >> /etc/ssh/sshd_config")
    fresh.set_host_key(fresh.host_key)  # restarts sshd with the setting
    (directory / "known_hosts").unlink(missing_ok=True)

    class Slow(ScriptedInteraction):
        def confirm_host_key(self, question: HostKeyQuestion) -> bool:
            time.sleep(4)
            return super().confirm_host_key(question)

    slow = Slow(host_key=True)
    cfg = write_config(directory, _doc(fresh, directory))
    with Session(cfg, slow) as session:
        report = session.test_connection()
    assert report.host_key_fingerprint == fresh.host_key_fingerprint
    assert len(slow.asked) == 1
