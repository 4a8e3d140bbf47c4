"""``claudegate init --example``: the commented examples, written from inside the installed package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.config import load_config
from claudegate.resources import EXAMPLES_DIR
from claudegate.session.examples import EXAMPLES, example_text, header_for

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_init_writes_a_commented_example_that_loads(tmp_path: Path, name: str) -> None:
    out = tmp_path / "conf" / "deploy.yaml"
    r = runner.invoke(app, ["init", "--example", name, "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    # The example's text, with the commands in its header naming the file it was written to.
    assert (REPO / "examples" / f"{name}.yaml").read_text() == example_text(name)
    assert text == header_for(example_text(name), name, out) != example_text(name)
    assert f"--config {out}" in text
    assert text.lstrip().startswith("#") and oct(out.stat().st_mode & 0o777) == "0o644"
    assert f"claudegate deploy --config {out}" in r.stderr
    cfg = load_config(out)  # a valid config as written (the secret files are checked at deploy time)
    assert cfg.target.is_local == (name == "local")


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    out = tmp_path / "deploy.yaml"
    out.write_text("mine\n")
    r = runner.invoke(app, ["init", "--example", "local", "--out", str(out)])
    assert r.exit_code == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_text() == "mine\n"
    assert runner.invoke(app, ["init", "--example", "local", "--out", str(out), "--force"]).exit_code == 0
    assert out.read_text() != "mine\n"


def test_unknown_example_names_the_choices(tmp_path: Path) -> None:
    r = runner.invoke(app, ["init", "--example", "cloud", "--out", str(tmp_path / "x.yaml")])
    assert r.exit_code == 2 and "local, remote" in r.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_the_wheel_carries_the_examples(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("claudegate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n.split("/data/share/claudegate/", 1)[1]: zf.read(n) for n in zf.namelist()
                   if "/data/share/claudegate/examples/" in n}
    assert set(shipped) == {f"examples/{name}.yaml" for name in EXAMPLES}
    for name in EXAMPLES:
        assert shipped[f"examples/{name}.yaml"] == (EXAMPLES_DIR / f"{name}.yaml").read_bytes()
