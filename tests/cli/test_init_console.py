"""`claudegate init --config FILE` is the console (--help says so): on a missing file it fails as
`console` and `plan` do, instead of opening the setup wizard on the draft of another deploy."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from claudegate.cli import app


def test_init_config_missing_fails_like_console_and_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    init = runner.invoke(app, ["init", "--config", "missing.yaml"])
    console = runner.invoke(app, ["console", "--config", "missing.yaml"])
    assert init.exit_code == console.exit_code == 2, init.stderr
    assert init.stderr == console.stderr
    assert "cannot read the config" in init.stderr
    assert "wizard" not in init.stderr  # not "the wizard needs a terminal": it never got that far
    assert list(tmp_path.iterdir()) == []  # nothing written
