"""``install.sh --help`` says what this very run would install (worked out as the install does), and
changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "install.sh"


def _help(how: str, tmp_path: Path, **env: str) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    command = ["bash", str(SCRIPT), "--help"] if how == "file" else ["bash", "-s", "--", "--help"]
    r = subprocess.run(command, input=SCRIPT.read_text() if how == "pipe" else None, capture_output=True,
                       text=True, cwd=tmp_path, env=full, timeout=30)
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == []  # installs nothing
    return r.stdout


def _pinned() -> str:
    match = re.search(r'^CLAUDEGATE_PINNED_VERSION="([^"]+)"', SCRIPT.read_text(), re.M)
    assert match
    return match.group(1)


def test_help_from_a_checkout_names_the_checkout(tmp_path: Path) -> None:
    text = _help("file", tmp_path)
    assert f"  {REPO} (the checkout this script is in)" in text
    assert f"default: {REPO}" in text
    assert "claudegate==" + _pinned() not in text  # not a default this run would not use


def test_help_piped_names_the_pinned_release(tmp_path: Path) -> None:
    text = _help("pipe", tmp_path)
    assert f"  claudegate=={_pinned()} (the pinned release: this script is in no checkout)" in text


def test_help_says_the_source_from_the_environment(tmp_path: Path) -> None:
    text = _help("file", tmp_path, CLAUDEGATE_SOURCE="/srv/claudegate-0.1.0-py3-none-any.whl")
    assert "  /srv/claudegate-0.1.0-py3-none-any.whl (CLAUDEGATE_SOURCE)" in text


def test_help_fits_80_columns(tmp_path: Path) -> None:
    for how in ("file", "pipe"):
        wide = [line for line in _help(how, tmp_path).splitlines() if len(line) > 80]
        assert not wide or all(str(REPO) in line for line in wide), wide  # only a long checkout path
