"""The core imports no UI library: core modules, in a fresh interpreter, leave textual (and typer) out.

(harlequin's rule: the TUI and the CLI are front ends; the core must be usable without either.)
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

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
    for expected in ("claudegate.session.core", "claudegate.session.interaction", "claudegate.deploy.api",
                     "claudegate.connectors.ssh", "claudegate.smoke"):
        assert expected in names


def test_the_whole_core_imports_no_ui_library() -> None:
    """Every core module at once (one interpreter: cheap); the test below names a culprit module."""
    assert _ui_loaded_after_importing(*core_modules()) == ""


@pytest.mark.parametrize("module", [m for m in core_modules() if m.startswith("claudegate.session")])
def test_each_session_module_alone_imports_no_ui_library(module: str) -> None:
    assert _ui_loaded_after_importing(module) == "", module


def test_the_import_contract_holds() -> None:
    """import-linter's contract in pyproject.toml: the core never imports a UI library or the CLI."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout
