"""The CLI as a thin front end: help built from the exit-code enum, `check` prints the core's report."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.errors import EXIT_CODE_HELP, ExitCode

runner = CliRunner()


def test_help_lists_every_exit_code_from_the_one_enum() -> None:
    text = " ".join(runner.invoke(app, ["--help"]).output.split())
    assert set(EXIT_CODE_HELP) == set(ExitCode)
    for code, what in EXIT_CODE_HELP.items():
        assert f"{int(code)} {what}" in text


def test_check_prints_the_connection_report(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    free = socket.socket()
    free.bind(("0.0.0.0", 0))
    https = free.getsockname()[1]
    free.close()
    try:
        doc = {
            "target": {"host": "local", "sudo": False},
            "domain": "gw.test",
            "tls": {"mode": "internal-ca"},
            "upstream": {"api_key_env": "UNSET_FOR_CHECK"},
            "ports": {"http": busy.getsockname()[1], "https": https},
            "state_dir": str(tmp_path / "state"),
        }
        path = tmp_path / "deploy.yaml"
        path.write_text(yaml.safe_dump(doc))
        text = runner.invoke(app, ["check", "--config", str(path)])
        as_json = runner.invoke(app, ["check", "--config", str(path), "--json"])
    finally:
        busy.close()
    assert text.exit_code == ExitCode.ERROR
    assert f"port {doc['ports']['http']}: in use by another program" in text.stdout
    assert f"port {https}: free" in text.stdout and "docker: running" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["local"] is True and report["docker_installed"] is True
