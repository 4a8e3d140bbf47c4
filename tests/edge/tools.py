"""External tools the edge tests drive. A missing tool is a failure that says
how to install it (see tests/edge/REQUIREMENTS.md), never a skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def tool(name: str, env: str, default: str) -> str:
    """Absolute path of ``name``: $env, else ``default``, else the PATH."""
    candidate = os.environ.get(env, default)
    if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed ({env} unset, {default} missing); see tests/edge/REQUIREMENTS.md")


def bin_gixy() -> str:
    return tool("gixy", "CLAUDEGATE_GIXY", "/work/venv-gixy/bin/gixy")


def bin_sslyze() -> str:
    return tool("sslyze", "CLAUDEGATE_SSLYZE", "/work/venv-sslyze/bin/sslyze")


def bin_testssl() -> str:
    return tool("testssl", "CLAUDEGATE_TESTSSL", "/usr/bin/testssl")


def bin_slowhttptest() -> str:
    return tool("slowhttptest", "CLAUDEGATE_SLOWHTTPTEST", "/usr/bin/slowhttptest")


def bin_curl() -> str:
    return tool("curl", "CLAUDEGATE_CURL", "/usr/bin/curl")
