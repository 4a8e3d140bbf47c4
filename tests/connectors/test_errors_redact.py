"""The error tree and the secret helpers."""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from claudegate import errors
from claudegate.redact import MASK, Secret, redact


def test_every_error_derives_from_the_base_with_its_own_exit_code() -> None:
    classes: list[type[errors.ClaudegateError]] = [
        errors.ConfigError,
        errors.ConnectionFailed,
        errors.HostKeyError,
        errors.CommandFailed,
        errors.DeployFailed,
        errors.SmokeTestFailed,
    ]
    codes = [cls.exit_code for cls in classes]
    assert all(issubclass(cls, errors.ClaudegateError) for cls in classes)
    assert len(set(codes)) == len(codes) and errors.ClaudegateError.exit_code not in codes
    assert issubclass(errors.HostKeyUnknown, errors.HostKeyError)
    assert issubclass(errors.HostKeyChanged, errors.HostKeyError)
    assert not issubclass(errors.HostKeyError, errors.ConnectionFailed), "never retried as a network error"
    assert issubclass(errors.CommandTimedOut, errors.CommandFailed)
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), f"{name} is missing from the drawing"


def test_host_key_unknown_message() -> None:
    error = errors.HostKeyUnknown(
        host="gw.example.com",
        port=2222,
        key_type="ssh-ed25519",
        fingerprint="SHA256:abc",
        known_hosts=Path("/k"),
    )
    assert "[gw.example.com]:2222" in str(error) and "SHA256:abc" in str(error) and "/k" in str(error)
    assert error.hint is not None and "--accept-host-key SHA256:abc" in error.hint


def test_host_key_changed_message() -> None:
    error = errors.HostKeyChanged(
        host="gw",
        port=22,
        key_type="ssh-ed25519",
        expected_fingerprint="SHA256:old",
        offered_fingerprint="SHA256:new",
        known_hosts=Path("/kh"),
        line=3,
    )
    text = str(error)
    assert "SHA256:old" in text and "SHA256:new" in text and "/kh line 3" in text
    assert error.hint is not None and "ssh-keygen -R 'gw' -f /kh" in error.hint


def test_command_failed_message() -> None:
    error = errors.CommandFailed(
        argv=["docker", "run", "--name", "a b"], exit_status=125, stderr_tail="one\ntwo", target="deploy@h:22"
    )
    assert str(error).splitlines() == [
        "command failed on deploy@h:22 with exit status 125: docker run --name 'a b'",
        "  | one",
        "  | two",
    ]


def test_secret_hides_itself_everywhere() -> None:
    secret = Secret("sk-ant-api03-very-secret")
    assert str(secret) == MASK
    assert repr(secret) == f"Secret('{MASK}')"
    assert f"{secret}" == MASK and f"{secret!r}" == f"Secret('{MASK}')" and f"{secret:>10}" == f"{MASK:>10}"
    assert "%s" % secret == MASK  # noqa: UP031
    assert "very-secret" not in repr({"key": secret}) and "very-secret" not in str([secret])

    @dataclass
    class Config:
        upstream_key: Secret

    assert "very-secret" not in repr(Config(secret))
    with pytest.raises(TypeError):
        json.dumps({"k": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        _ = "prefix-" + secret  # type: ignore[operator]
    assert secret.reveal() == "sk-ant-api03-very-secret"
    assert secret.reveal_bytes() == b"sk-ant-api03-very-secret"
    assert secret == "sk-ant-api03-very-secret" and secret == Secret("sk-ant-api03-very-secret")
    assert secret != "other" and bool(secret) and not Secret("")
    assert len(secret) == len("sk-ant-api03-very-secret")
    assert Secret(secret).reveal() == secret.reveal()
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key is %s, %r", Secret("sk-1"), Secret("sk-2"))
    assert "sk-1" not in caplog.text and "sk-2" not in caplog.text


def test_redact() -> None:
    text = "key=sk-ant-123 again sk-ant-123; pepper=abc"
    assert redact(text, [Secret("sk-ant-123"), "abc"]) == f"key={MASK} again {MASK}; pepper={MASK}"
    assert redact(b"x sk-ant-123 y", [Secret("sk-ant-123")]) == f"x {MASK} y".encode()
    assert redact("nothing", []) == "nothing"
    assert redact("a b", ["", None]) == "a b"
    # The longer secret is masked whole even when a shorter one is inside it.
    assert redact("sk-ant-123456", ["sk-ant-123", "sk-ant-123456"]) == MASK
