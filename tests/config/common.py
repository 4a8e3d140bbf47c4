"""Helpers for the deploy config tests: load text, get the problem lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from claudegate.config import DeployConfig, DeployConfigError, load_config_text

# A valid remote config, 9 lines; tests append sections after it, so an
# appended section starts on line 10.
BASE = """\
target:
  host: gw.example.com
domain: gw.example.com
tls:
  mode: acme
  email: ops@example.com
upstream:
  api_key_file: /etc/claudegate-test/anthropic_api_key
images: {transfer: build}
"""

# The same for this machine with the internal CA.
LOCAL = """\
target:
  host: local
domain: localhost
tls:
  mode: internal-ca
upstream:
  api_key_env: ANTHROPIC_API_KEY
"""


def load(text: str, *, base: str = "", base_dir: Path | None = None) -> DeployConfig:
    return load_config_text(base + textwrap.dedent(text), source="deploy.yaml", base_dir=base_dir)


def problems(text: str, *, base: str = "") -> list[str]:
    """The problem lines ``text`` (appended to ``base``) is refused with."""
    with pytest.raises(DeployConfigError) as info:
        load(text, base=base)
    lines = str(info.value).splitlines()
    assert lines == [str(p) for p in info.value.problems]
    return lines
