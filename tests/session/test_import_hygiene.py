"""The core imports no UI library: core modules, in a fresh interpreter, leave textual (and typer) out.

(harlequin's rule: the TUI and the CLI are front ends; the core must be usable without either.)
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

import claudegate

REPO = Path(__file__).resolve().parents[2]
FRONT_ENDS = ("claudegate.cli", "claudegate.tui", "claudegate.wizard")
# Not rich or click: httpx (the smoke test's client) imports both for its own command line when they
# are installed. Our own code importing them directly is caught by the import-linter contract below.
UI_LIBRARIES = ("textual", "typer")


def core_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(claudegate.__path__, "claudegate.")
        if not info.name.startswith(FRONT_ENDS)
    )


def _ui_loaded_after_importing(*modules: str) -> str:
    code = (
        f"import sys, importlib\nfor m in {list(modules)!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {UI_LIBRARIES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_the_core_is_found() -> None:
    names = core_modules()
    for expected in ("claudegate.session.core", "claudegate.control.interaction", "claudegate.deploy.api",
                     "claudegate.connectors.ssh", "claudegate.smoke"):
        assert expected in names


def test_the_whole_core_imports_no_ui_library() -> None:
    """Every core module at once (one interpreter: cheap); the test below names a culprit module."""
    assert _ui_loaded_after_importing(*core_modules()) == ""


@pytest.mark.parametrize("module", [m for m in core_modules() if m.startswith("claudegate.session")])
def test_each_session_module_alone_imports_no_ui_library(module: str) -> None:
    assert _ui_loaded_after_importing(module) == "", module


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env, check=False)


def test_the_import_contract_holds() -> None:
    """import-linter's contracts in pyproject.toml: no UI library in the core, and the layers."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert any(c["type"] == "layers" for c in contracts)
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(contracts)} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "reported"),
    [
        # A base module importing the deploy.
        ("knobs.py", "from claudegate.deploy import layout", "claudegate.knobs -> claudegate.deploy.layout"),
        # The audit and the smoke test share the probes, never each other's code...
        ("audit/result.py", "from claudegate.smoke import CHECK_NAMES", "claudegate.audit.result -> claudegate.smoke"),
        ("smoke.py", "from claudegate.audit import result", "claudegate.smoke -> claudegate.audit.result"),
        # ...and neither reaches into the deploy that runs them.
        ("audit/runner.py", "from claudegate.deploy import layout", "claudegate.audit.runner -> claudegate.deploy.layout"),
        # The probes are below both.
        ("probes/wire.py", "from claudegate import smoke", "claudegate.probes.wire -> claudegate.smoke"),
    ],
)
def test_the_layers_contract_catches_a_forbidden_import(tmp_path: Path, module: str, line: str, reported: str) -> None:
    """A copy of the package with one import the layers forbid: the contract must break, naming it."""
    shutil.copytree(REPO / "installer" / "claudegate", tmp_path / "claudegate")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "claudegate" / module
    path.write_text(path.read_text() + f"\n{line} as _forbidden  # noqa\n")
    result = _lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert reported in result.stdout, result.stdout[-3000:]


def test_every_module_can_be_imported_first() -> None:
    """In one interpreter, each module imported with no claudegate module loaded before it.

    A loop through a package's ``__init__`` (which runs before any of its
    modules) shows here, where the module graph below cannot see it.
    """
    code = (
        "import importlib, sys\nbad = []\n"
        f"for m in {core_modules()!r}:\n"
        "    for k in [k for k in sys.modules if k == 'claudegate' or k.startswith('claudegate.')]: del sys.modules[k]\n"
        "    try: importlib.import_module(m)\n"
        "    except ImportError as e: bad.append((m, str(e)))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_imports_itself_back_at_run_time() -> None:
    """No import loop between modules (typing-only imports aside): each can be imported first."""
    graph = grimp.build_graph("claudegate", exclude_type_checking_imports=True)
    loops = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                loops.append((module, imported))
    assert loops == []
