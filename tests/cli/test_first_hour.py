"""What a newcomer meets in the first minutes with the CLI (issue 14): it finds ./deploy.yaml and
says so, bare ``claudegate`` helps, errors are clean and point somewhere real, and config
mistakes that validate field by field but can never work are problems with a line, a column
and a fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.config.client_rules import glob_problem

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

LOCAL = """\
target: {host: local, sudo: false}
domain: localhost
tls: {mode: internal-ca}
upstream: {api_key_file: key}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAUDEGATE_CONFIG", raising=False)
    key = tmp_path / "key"
    key.write_text("sk-ant-api03-first-hour\n")
    key.chmod(0o600)
    return tmp_path


def test_bare_claudegate_is_help_with_exit_0_and_names_the_wizard_first() -> None:
    r = runner.invoke(app, [])
    assert r.exit_code == 0, r.output
    wizard, demo, plan = (r.output.find(s) for s in ("claudegate init", "claudegate try", "claudegate plan"))
    assert -1 < wizard < plan and -1 < demo < plan, r.output
    assert "./deploy.yaml" in r.output


@pytest.mark.parametrize("command", [["plan"], ["render", "--out", "out"], ["keys", "list"], ["status"], ["check"]])
def test_every_command_defaults_to_deploy_yaml_here_and_says_so(workdir: Path, command: list[str]) -> None:
    # No --config, no deploy.yaml: the error names the default file and how to make one.
    r = runner.invoke(app, command)
    assert r.exit_code == 2, r.output
    assert "config: deploy.yaml" in r.stderr
    assert "deploy.yaml: cannot read the config" in r.stderr and "claudegate init" in r.stderr


def test_the_default_config_is_used_when_present(workdir: Path) -> None:
    (workdir / "deploy.yaml").write_text(LOCAL)
    r = runner.invoke(app, ["render", "--out", str(workdir / "out")])
    assert r.exit_code == 0, r.stderr
    assert "config: deploy.yaml" in r.stderr
    assert (workdir / "out").is_dir() and any((workdir / "out").rglob("nginx.conf"))


def test_console_with_a_missing_config_fails_like_plan(workdir: Path) -> None:
    plan = runner.invoke(app, ["plan", "--config", "missing.yaml"])
    console = runner.invoke(app, ["console", "--config", "missing.yaml"])
    assert console.exit_code == plan.exit_code == 2
    assert console.stderr == plan.stderr
    assert "wizard" not in console.stderr  # it did not fall through to the setup wizard


def test_console_with_a_broken_config_reports_its_problems(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(LOCAL + "ports: {http: 0}\n")
    r = runner.invoke(app, ["console", "--config", "bad.yaml"])
    assert r.exit_code == 2 and "bad.yaml:5:" in r.stderr and "ports.http" in r.stderr


def test_a_bare_number_rate_suggests_the_unit(workdir: Path) -> None:
    (workdir / "deploy.yaml").write_text(LOCAL + "limits:\n  per_ip: {rate: 20, burst: 5}\n")
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2
    assert "deploy.yaml:6:12: limits.per_ip.rate: must be a rate with a unit, got the number 20" in r.stderr
    assert "write 20r/s (per second) or 20r/m (per minute)" in r.stderr


def test_an_expired_client_is_a_problem_with_position_and_fix(workdir: Path) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    future = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    (workdir / "deploy.yaml").write_text(
        LOCAL + f"clients:\n  - name: old\n    expires: {past}\n  - name: fine\n    expires: {future}\n"
    )
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2
    assert f"deploy.yaml:7:5: clients[0].expires: {past} 00:00 UTC is in the past" in r.stderr
    assert "set a later date" in r.stderr
    assert "clients[1]" not in r.stderr


@pytest.mark.parametrize(
    ("glob", "never"),
    [
        ("claude-[sonnet", True),
        ("claude-sonnet]", True),
        ("claude-[!]", True),  # '[!]' opens a set whose first member is ']', never closed
        ("claude-[sh]*", False),
        ("claude-[!o]*", False),
        ("claude-[]]x", False),  # a set holding ']' is legal (it just never matches a real name part)
        ("claude-sonnet-*", False),
        ("*", False),
    ],
)
def test_glob_that_can_never_match(glob: str, never: bool) -> None:
    assert (glob_problem(glob) is not None) is never


def test_a_never_matching_model_glob_is_a_problem(workdir: Path) -> None:
    (workdir / "deploy.yaml").write_text(LOCAL + 'clients:\n  - name: a\n    models: ["claude-[sonnet", "claude-*"]\n')
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2
    assert "deploy.yaml:7:14: clients[0].models[0]: 'claude-[sonnet' can match no model name" in r.stderr
    assert "models[1]" not in r.stderr


def test_empty_config_points_at_commands_not_at_a_checkout(workdir: Path) -> None:
    (workdir / "deploy.yaml").write_text("# nothing yet\n")
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2
    assert "examples/" not in r.stderr
    assert "claudegate init --example local --out deploy.yaml" in r.stderr


def test_example_header_names_the_file_it_was_written_to(workdir: Path) -> None:
    for name in ("local", "remote"):
        out = workdir / f"my-{name}.yaml"
        r = runner.invoke(app, ["init", "--example", name, "--out", str(out)])
        assert r.exit_code == 0, r.stderr
        header = "".join(out.read_text().splitlines(keepends=True)[:8])
        assert f"--config {out}" in header, header
        assert "examples/local.yaml" not in header and "--config remote.yaml" not in header


@pytest.fixture
def not_ssh() -> Iterator[int]:
    """A TCP port that accepts and hangs up: paramiko fails reading the SSH banner."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def test_unreachable_host_shows_no_library_traceback_and_still_reports_the_missing_key(
    workdir: Path, not_ssh: int
) -> None:
    ssh_key = workdir / "id"
    ssh_key.write_text("not used: the banner fails first\n")
    ssh_key.chmod(0o600)
    (workdir / "deploy.yaml").write_text(
        f"target: {{host: 127.0.0.1, port: {not_ssh}, user: deploy, ssh_key: id}}\n"
        "domain: gw.example.com\ntls: {mode: internal-ca}\nupstream: {api_key_file: missing-key}\n"
    )
    for command in ("plan", "check"):
        r = subprocess.run(
            [str(Path(sys.prefix) / "bin" / "claudegate"), command], cwd=workdir, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert r.returncode == 3, r.stderr
        assert "Traceback" not in r.stderr and "Exception (client)" not in r.stderr, r.stderr
        assert "error: SSH handshake with 127.0.0.1" in r.stderr
        # Said before connecting, so an unreachable host does not hide it.
        assert "upstream.api_key_file:" in r.stderr and "missing-key does not exist" in r.stderr
        assert r.stderr.index("missing-key") < r.stderr.index("error: SSH handshake")


def test_install_sh_help_prints_its_own_usage_and_changes_nothing(tmp_path: Path) -> None:
    home, bindir = tmp_path / "home", tmp_path / "bin"
    env = {**os.environ, "CLAUDEGATE_HOME": str(home), "CLAUDEGATE_BIN": str(bindir), "HOME": str(tmp_path)}
    for flag in ("--help", "-h"):
        r = subprocess.run(["bash", str(REPO / "install.sh"), flag], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: bash install.sh")
        for word in ("--demo", "--config FILE", "CLAUDEGATE_SOURCE", "CLAUDEGATE_HOME", "CLAUDEGATE_WHEELS", "PYTHON"):
            assert word in r.stdout
        assert "Commands:" not in r.stdout  # the installer's usage, not the CLI's
    assert not any(tmp_path.iterdir())  # no venv, no link, nothing


@pytest.mark.parametrize(
    ("glob", "suggestion"),
    [("claud-*", "did you mean claude-*?"), ("claude-sonet-*", "did you mean claude-sonnet-*?"),
     ("claude-sonet-4-5", "did you mean claude-sonnet-4-5?"), ("gpt-4o", "write a model name or a glob")],
)
def test_a_model_glob_that_matches_no_known_model_is_refused_with_the_close_name(
    workdir: Path, glob: str, suggestion: str
) -> None:
    (workdir / "deploy.yaml").write_text(LOCAL + f'clients:\n  - name: a\n    models: ["claude-haiku-*", "{glob}"]\n')
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2, r.output
    assert f"deploy.yaml:7:32: clients[0].models[1]: '{glob}' matches no known model" in r.stderr
    assert suggestion in r.stderr
    assert "models[0]" not in r.stderr


@pytest.mark.parametrize("glob", ["claude-sonnet-5", "claude-opus-5-*", "claude-3-9-haiku-latest", "*", "claude-*"])
def test_a_later_release_of_a_known_family_is_not_refused(workdir: Path, glob: str) -> None:
    # Models come out after this release: a name of a known family, spelled right, must stay usable.
    (workdir / "deploy.yaml").write_text(LOCAL + f'clients:\n  - name: a\n    models: ["{glob}"]\n')
    r = runner.invoke(app, ["render", "--out", "out"])
    assert r.exit_code == 0, r.output


def test_every_problem_is_said_in_one_run_schema_and_rules_together(workdir: Path) -> None:
    # A refused rate, a bad allowlist entry, and rules (a past expiry, a glob matching nothing) in one run.
    (workdir / "deploy.yaml").write_text(
        LOCAL + "limits: {per_ip: {rate: 20, burst: 5}}\nallowlist: ['10.0.0.0/8;192.168.0.0/16']\n"
        "clients:\n  - name: a\n    rpm: -1\n    models: ['claud-*']\n    expires: 2020-01-01\n"
    )
    r = runner.invoke(app, ["plan"])
    assert r.exit_code == 2, r.output
    fields = [line.removeprefix("error: ").split(": ")[1] for line in r.stderr.splitlines()
              if line.startswith(("error: ", "deploy.yaml"))]
    assert fields == ["limits.per_ip.rate", "allowlist[0]", "clients[0].rpm", "clients[0].models[0]",
                      "clients[0].expires"], r.stderr
    assert "joined by ';', which does not separate entries" in r.stderr
