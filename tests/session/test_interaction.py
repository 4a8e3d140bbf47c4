"""The questions, the CLI's answers and the flags-only answers, without any host."""

from __future__ import annotations

import io

import pytest

from claudegate.cli.interaction import CliInteraction
from claudegate.control.interaction import (
    ConsentQuestion,
    HostKeyQuestion,
    Interaction,
    NonInteractive,
    SecretQuestion,
)
from claudegate.errors import Declined, ExitCode, HostKeyUnknown, host_key_compare_command
from claudegate.session.scripted import RecordingInteraction, ScriptedInteraction

FP = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
HOST_KEY = HostKeyQuestion("203.0.113.7", 2222, "ssh-ed25519", FP, "/home/me/.config/claudegate/known_hosts")
DOCKER = ConsentQuestion("install-docker", "deploy@203.0.113.7:2222", "Docker is not installed; install docker.io")
SECRET = SecretQuestion("anthropic-api-key", "upstream.api_key_file", "/tmp/k", "it is missing")


def test_host_key_question_says_how_to_compare_on_the_server() -> None:
    assert HOST_KEY.compare_command == "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    assert host_key_compare_command("ecdsa-sha2-nistp256") == "ssh-keygen -lf /etc/ssh/ssh_host_ecdsa_key.pub"
    assert host_key_compare_command("weird") == "ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub"
    assert HOST_KEY.where == "[203.0.113.7]:2222"
    assert FP in HOST_KEY.text() and HOST_KEY.compare_command in HOST_KEY.text()
    assert HOST_KEY.flag == f"--accept-host-key {FP}"


@pytest.mark.parametrize("interaction", [NonInteractive(), CliInteraction(tty=False)])
def test_without_a_terminal_each_question_fails_with_the_flag_that_answers_it(interaction: Interaction) -> None:
    # A host key nobody confirmed is a no: the connector then raises HostKeyUnknown naming the flag.
    assert interaction.confirm_host_key(HOST_KEY) is False
    unknown = HostKeyUnknown(host=HOST_KEY.host, port=HOST_KEY.port, key_type="ssh-ed25519", fingerprint=FP)
    assert f"--accept-host-key {FP}" in (unknown.hint or "") and HOST_KEY.compare_command in (unknown.hint or "")
    assert unknown.exit_code == ExitCode.HOST_KEY
    with pytest.raises(Declined) as consent:
        interaction.consent(DOCKER)
    assert consent.value.flag == "--yes" and "--yes" in (consent.value.hint or "")
    assert consent.value.exit_code == ExitCode.DECLINED
    assert interaction.ask_secret(SECRET) is None


def test_flags_answer_without_a_terminal() -> None:
    flags = CliInteraction(tty=False, yes=True, accept_host_key=FP)
    assert flags.confirm_host_key(HOST_KEY) is True
    assert flags.consent(DOCKER) is True
    other = HostKeyQuestion("203.0.113.7", 22, "ssh-ed25519", "SHA256:" + "A" * 43, "kh")
    assert flags.confirm_host_key(other) is False  # the flag trusts exactly one key


@pytest.mark.parametrize(
    ("typed", "trusted"),
    [("yes\n", True), ("y\n", True), (f"{FP}\n", True), ("\n", False), ("no\n", False), ("", False),
     ("SHA256:" + "B" * 43 + "\n", False)],
)
def test_terminal_host_key_prompt(typed: str, trusted: bool) -> None:
    out = io.StringIO()
    lines = iter([typed])
    cli = CliInteraction(tty=True, read_line=lambda prompt: next(lines), out=out)
    assert cli.confirm_host_key(HOST_KEY) is trusted
    shown = out.getvalue()
    assert FP in shown and "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in shown


@pytest.mark.parametrize(("typed", "agreed"), [("y\n", True), ("YES\n", True), ("\n", False), ("", False)])
def test_terminal_consent_prompt_defaults_to_no(typed: str, agreed: bool) -> None:
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return typed

    assert CliInteraction(tty=True, read_line=read).consent(DOCKER) is agreed
    assert prompts == [f"{DOCKER.text()} [y/N]: "]


def test_terminal_secret_prompt_never_echoes() -> None:
    out = io.StringIO()
    cli = CliInteraction(tty=True, read_secret=lambda prompt: "sk-ant-api03-xyz", out=out)
    answer = cli.ask_secret(SECRET)
    assert answer is not None and answer.reveal() == "sk-ant-api03-xyz"
    assert "sk-ant" not in out.getvalue() and "sk-ant" not in repr(answer)


def test_scripted_and_recording_keep_the_order() -> None:
    scripted = ScriptedInteraction(host_key=FP, consent_answers={"install-docker": True})
    recording = RecordingInteraction(scripted)
    assert recording.confirm_host_key(HOST_KEY) is True
    assert recording.consent(DOCKER) is True
    assert recording.consent(ConsentQuestion("replace-certificate", "t", "x")) is False
    assert [q.kind for q in recording.asked] == ["host-key", "consent", "consent"]
    assert recording.asked == scripted.asked
    assert isinstance(scripted, Interaction) and isinstance(CliInteraction(tty=False), Interaction)
