"""--help names what an option takes in the operator's words (GLOB, N, DATE), never a Python type."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from claudegate.cli import app
from tests.cli.test_help_text import COMMANDS

#: Typer's own placeholders when an option has no metavar: "<list[str]>", "<int>", "<int range>".
PYTHON_TYPE = re.compile(r"<(?:list\[\w+\]|str|int|float|bool|int range|float range)>|\blist\[str\]")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "claudegate")
def test_no_option_shows_a_python_type(command: tuple[str, ...]) -> None:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    options = r.output.split("Options:", 1)[-1]
    assert not PYTHON_TYPE.search(options), options


def test_keys_create_names_what_each_option_takes() -> None:
    text = CliRunner().invoke(app, ["keys", "create", "--help"], env={"COLUMNS": "80"}).output
    for shown in ("--model GLOB", "--endpoint GLOB", "--rpm N", "--daily-tokens N", "--expires DATE"):
        assert shown in text, text
