"""A missing Anthropic key file is asked for (through the interaction) and saved 0600 where the config says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from claudegate.cli.interaction import CliInteraction
from claudegate.errors import ConfigError, ConnectionFailed
from claudegate.session import ScriptedInteraction, SecretQuestion, Session
from claudegate.session.document import config_from_document
from tests.support.ports import free_port

KEY = "sk-ant-api03-asked-" + "k" * 30


def _closed_port() -> int:
    """A port nothing listens on: a connection there is refused at once."""
    return free_port("127.0.0.1")


def _doc(tmp_path: Path, key_file: Path) -> dict[str, Any]:
    return {
        # Nothing listens there: the run stops at connecting, after the question.
        "target": {"host": "127.0.0.1", "port": _closed_port(), "user": "deploy",
                   "known_hosts": str(tmp_path / "kh")},
        "domain": "gw.example.com",
        "tls": {"mode": "internal-ca"},
        "upstream": {"api_key_file": str(key_file)},
        "state_dir": str(tmp_path / "state"),
    }


def test_missing_key_is_asked_and_saved_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "anthropic_api_key"
    asked = ScriptedInteraction(secret=KEY)
    with Session(config_from_document(_doc(tmp_path, key_file)), asked) as session, \
            pytest.raises(ConnectionFailed):
        session.deploy()
    (question,) = asked.asked
    assert isinstance(question, SecretQuestion)
    assert question.field == "upstream.api_key_file" and question.save_to == str(key_file)
    assert key_file.read_text() == KEY + "\n"
    assert key_file.stat().st_mode & 0o777 == 0o600 and key_file.parent.stat().st_mode & 0o077 == 0
    assert KEY not in question.text()


def test_no_answer_or_no_terminal_gives_the_config_error(tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic_api_key"
    cfg = config_from_document(_doc(tmp_path, key_file))
    for interaction in (ScriptedInteraction(secret=None), CliInteraction(tty=False)):
        with Session(cfg, interaction) as session, pytest.raises(ConfigError) as missing:
            session.deploy()
        assert "api_key_file" in (missing.value.hint or "") or str(key_file) in str(missing.value)
    assert not key_file.exists()


def test_a_bad_answer_is_refused_and_nothing_written(tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic_api_key"
    with Session(config_from_document(_doc(tmp_path, key_file)), ScriptedInteraction(secret="two words")) as session, \
            pytest.raises(ConfigError) as bad:
        session.deploy()
    assert "spaces" in str(bad.value) and "two words" not in str(bad.value)
    assert not key_file.exists()


@pytest.mark.parametrize(
    "answer", ["ANTHROPIC_API_KEY=sk-ant-api03-" + "e" * 30, "hello", "sk-ant-api03-with space"]
)
def test_an_answer_that_is_not_an_anthropic_key_is_refused_and_not_saved(tmp_path: Path, answer: str) -> None:
    key_file = tmp_path / "anthropic_api_key"
    with Session(config_from_document(_doc(tmp_path, key_file)), ScriptedInteraction(secret=answer)) as session, \
            pytest.raises(ConfigError) as refused:
        session.deploy()
    assert "Anthropic API key" in str(refused.value)
    assert answer not in str(refused.value) and "e" * 30 not in str(refused.value)  # never echoed
    assert not key_file.exists()
