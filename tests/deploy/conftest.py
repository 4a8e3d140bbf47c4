"""Fixtures for the deploy tests: configs and a state directory, and the shared deployed stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claudegate.config import DeployConfig
from tests.deploy.shared_stack import Stack, deployed_stack
from tests.deploy.support import write_config, write_secret

ConfigFactory = Callable[..., DeployConfig]

UPSTREAM_KEY = "sk-ant-api03-unit-test-key"


@pytest.fixture
def make_cfg(tmp_path: Path) -> ConfigFactory:
    """``make_cfg(**sections)``: a loaded deploy.yaml (remote target) with a 0600 key file."""
    key_file = write_secret(tmp_path / "anthropic_api_key", UPSTREAM_KEY)

    def make(**sections: Any) -> DeployConfig:
        doc: dict[str, Any] = {
            "target": {
                "host": "203.0.113.10",
                "user": "deploy",
                "known_hosts": str(tmp_path / "known_hosts"),
            },
            "domain": "gw.example.com",
            "tls": {"mode": "internal-ca"},
            "upstream": {"api_key_file": str(key_file)},
            "clients": [{"name": "team-a", "models": ["claude-haiku-*"], "rpm": 60}],
            "state_dir": str(tmp_path / "state"),
        }
        doc.update(sections)
        return write_config(tmp_path / "cfg", doc)

    return make


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack deployed once for every end-to-end module that needs *a* deployment (tests/deploy/shared_stack.py)."""
    with deployed_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack
