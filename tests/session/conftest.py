"""Fixtures shared by the session tests (the deploy tests' config factory)."""

from tests.deploy.conftest import make_cfg

__all__ = ["make_cfg"]
