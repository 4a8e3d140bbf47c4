"""Day 2 through the Session, without a server: restore asks through the interaction before anything else.

The restore's real work (the keystore swapped on a host, old keys working
there) is tested end to end in tests/deploy/test_e2e_day2.py, through the
same method with the same canned interaction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from claudegate.backup import BackupError
from claudegate.cli import app
from claudegate.control.interaction import ConsentQuestion
from claudegate.errors import ClaudegateError, ConfigError, Declined, ExitCode
from claudegate.keys import client_spec
from claudegate.redact import Secret
from claudegate.session import ScriptedInteraction, Session
from tests.deploy.conftest import ConfigFactory
from tests.support.backup_files import write_backup_file
from tests.support.ports import free_port

PASS = Secret("a passphrase for the session test")


def _closed_port() -> int:
    """A port nothing listens on: a connection there is refused at once."""
    return free_port("127.0.0.1")


def _backup_file(path: Path, *, passphrase: Secret | None = PASS) -> Path:
    return write_backup_file(path, passphrase)


def _session(make_cfg: ConfigFactory, interaction: ScriptedInteraction) -> Session:
    cfg = make_cfg(target={"host": "127.0.0.1", "port": _closed_port(), "user": "deploy"})
    return Session(cfg, interaction)


def test_a_refused_restore_connects_to_nothing_and_says_so(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    source = _backup_file(tmp_path / "gw.cgbackup")
    interaction = ScriptedInteraction(consent_answers=False)
    with _session(make_cfg, interaction) as session, pytest.raises(Declined) as declined:
        session.restore(source, passphrase=PASS)
    (question,) = interaction.asked
    assert isinstance(question, ConsentQuestion) and question.topic == "restore-backup"
    # The question names the host and what replaces its keystore, so a yes is informed.
    assert question.target == "deploy@127.0.0.1"
    assert "old.example.com" in question.detail and "2026-11-30" in question.detail and str(source) in question.detail
    assert "nothing was restored" in str(declined.value) and declined.value.exit_code == ExitCode.DECLINED
    assert session.connector is None  # not even a connection: nothing read from or written to the host


def test_an_accepted_restore_goes_on_to_the_host(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    source = _backup_file(tmp_path / "gw.cgbackup")
    interaction = ScriptedInteraction(consent_answers={"restore-backup": True})
    with _session(make_cfg, interaction) as session, pytest.raises(ClaudegateError) as failed:
        session.restore(source, passphrase=PASS)
    # Yes: the next thing is the connection (refused here; the e2e test restores onto a real host).
    assert not isinstance(failed.value, Declined) and failed.value.exit_code == ExitCode.CONNECTION
    assert [q.topic for q in interaction.asked if isinstance(q, ConsentQuestion)] == ["restore-backup"]


def test_a_wrong_passphrase_fails_before_the_question(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    source = _backup_file(tmp_path / "gw.cgbackup")
    interaction = ScriptedInteraction(consent_answers=True)
    with _session(make_cfg, interaction) as session:
        with pytest.raises(BackupError, match="wrong passphrase"):
            session.restore(source, passphrase=Secret("not the passphrase at all"))
        with pytest.raises(ConfigError, match="encrypted"):
            session.restore(source)
        assert interaction.asked == [] and session.connector is None


def test_key_methods_refuse_a_bad_name_before_connecting(make_cfg: ConfigFactory) -> None:
    interaction = ScriptedInteraction()
    with _session(make_cfg, interaction) as session:
        for call in (lambda: session.rotate_client("--all"), lambda: session.revoke_client("a b")):
            with pytest.raises(ConfigError):
                call()
        with pytest.raises(ConfigError):
            session.create_client(client_spec("--config=/etc/shadow"))
        assert session.connector is None and interaction.asked == []


def test_cli_restore_without_a_terminal_needs_yes(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    """No terminal, no --yes: the session's question ends the run naming --yes (exit 8), before connecting."""
    source = _backup_file(tmp_path / "gw.cgbackup", passphrase=None)
    port = _closed_port()
    cfg = make_cfg(target={"host": "127.0.0.1", "port": port, "user": "deploy"})
    doc = cfg.model_dump(mode="json", exclude_defaults=True)
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))
    runner = CliRunner()
    refused = runner.invoke(app, ["restore", "--from", str(source), "--config", str(path)])
    assert refused.exit_code == ExitCode.DECLINED, refused.output
    assert "re-run with --yes" in refused.stderr and "no terminal" in refused.stderr
    # With --yes the question is answered and the run goes on to the host (refused connection: exit 3).
    agreed = runner.invoke(app, ["restore", "--from", str(source), "--yes", "--config", str(path)])
    assert agreed.exit_code == ExitCode.CONNECTION, agreed.output
