"""--help as a newcomer reads it in an 80-column terminal: nothing wider, and nothing that contradicts itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from claudegate.cli import app
from claudegate.session.examples import EXAMPLES

CLAUDEGATE = str(Path(sys.executable).with_name("claudegate"))


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _run(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([CLAUDEGATE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_every_command_is_walked() -> None:
    assert {("init",), ("plan",), ("keys", "create"), ("backup",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "claudegate")
def test_help_fits_80_columns(command: tuple[str, ...]) -> None:
    r = _run(*command, "--help")
    assert r.returncode == 0, r.stderr
    wide = [line for line in r.stdout.splitlines() if len(line) > 80]
    assert not wide, "\n".join(wide)
    # A wide terminal does not make it wider either (Click's width is capped at 80).
    assert max(len(line) for line in _run(*command, "--help", columns=200).stdout.splitlines()) <= 80


@pytest.mark.parametrize("args", [["init", "--example"], ["init", "--example", "--out", "x.yaml"]])
def test_example_without_a_name_lists_the_examples(args: list[str], tmp_path: Path) -> None:
    r = subprocess.run([CLAUDEGATE, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "--example needs the name of an example" in r.stderr
    for name, what in EXAMPLES.items():
        assert f"--example {name}" in r.stderr and what in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started


def test_init_out_says_what_it_is_for_both_ways() -> None:
    text = " ".join(_run("init", "--help").stdout.split())
    assert "the wizard saves there" in text and "--example writes the example there" in text
    assert "where to write the example" not in text


@pytest.mark.parametrize("group", [(), ("keys",), ("state",)], ids=lambda g: " ".join(g) or "claudegate")
def test_the_command_list_says_each_commands_whole_first_sentence(group: tuple[str, ...]) -> None:
    """Click cut each line to fit beside the names and ended it with "..." ("init  The setup wizard (a
    terminal UI); `--example..."): the list, the first thing `claudegate` prints, said half of it."""
    out = _run(*group, "--help").stdout
    listed = out[out.index("\nCommands:") :]
    assert "..." not in listed, listed
    entries = " ".join(listed.split())
    if not group:
        assert "init The setup wizard (a terminal UI); `--example local|remote` writes a commented example" \
            " instead." in entries, listed
        assert "restore Put a backup onto a deployed host (such as a new server): the old client keys work" \
            " there after." in entries, listed
