"""``claudegate plan`` on this machine, as a newcomer runs it: it changes nothing on disk (not even the
local internal CA), says in a screenful what would change, and --verbose has every change and diff."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLAUDEGATE = str(Path(sys.executable).with_name("claudegate"))

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]  # the plan reads the local Docker engine's state

LOCAL = """\
target: {host: local, sudo: false}
domain: localhost
tls: {mode: internal-ca}
upstream: {api_key_file: key}
"""


def _tree(root: Path) -> dict[str, tuple[int, int, float]]:
    """Every path under ``root`` with its mode, size and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime)
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "home").mkdir()
    (tmp_path / "deploy.yaml").write_text(LOCAL)
    (tmp_path / "key").write_text("sk-ant-api03-plan-output\n")
    (tmp_path / "key").chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "COLUMNS": "80"}
    env.pop("CLAUDEGATE_CONFIG", None)
    return tmp_path, env


def _plan(workdir: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    where, env = workdir
    return subprocess.run([CLAUDEGATE, "plan", *args], cwd=where, env=env, capture_output=True, text=True,
                          timeout=240)


def test_plan_changes_nothing_on_disk(workdir: tuple[Path, dict[str, str]]) -> None:
    where, _env = workdir
    before = _tree(where)
    r = _plan(workdir)
    assert r.returncode == 0, r.stderr
    assert "tls" in r.stdout  # it did plan the certificate, from a CA made in memory only
    assert _tree(where) == before
    assert not (where / "config").exists()


def test_plan_is_a_screenful_and_verbose_has_everything(workdir: tuple[Path, dict[str, str]]) -> None:
    short = _plan(workdir)
    assert short.returncode == 0, short.stderr
    out = short.stdout.splitlines()
    assert out[0].startswith("deploy on local: release ") and "steps would change" in out[0]
    steps = [line.split()[0] for line in out[1:] if line.startswith("  ") and not line.strip()[0].isdigit()]
    assert {"layout", "secrets", "tls", "release", "gateway", "switch"} <= set(steps), short.stdout
    assert len(steps) == len(set(steps))  # one line per step
    assert all(len(line) <= 80 for line in out), short.stdout
    assert "claudegate plan --verbose" in out[-1]
    assert len(out) + len(short.stderr.splitlines()) < 30, short.stdout + short.stderr
    assert "+++ " not in short.stdout  # no diffs

    full = _plan(workdir, "--verbose")
    assert full.returncode == 0, full.stderr
    assert "+++ new/" in full.stdout and "layout: create /opt/claudegate" in full.stdout
    # Every change the short form counts is in the full listing.
    for line in out[1:-2]:
        name, rest = line.split(None, 1)
        more = int(rest.rsplit("(+", 1)[1].split()[0]) + 1 if "(+" in rest else 1
        assert sum(row.startswith(f"  {name}: ") for row in full.stdout.splitlines()) == more, name
