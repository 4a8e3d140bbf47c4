"""The three dependency locks agree: CI's venv (requirements-test.lock) has the very
versions and files install.sh gives users and the gateway image is built from, and
covers every dependency the projects declare. tests/infra/relock.sh makes them so;
these tests catch a lock edited or regenerated on its own."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
TEST_LOCK = REPO / "requirements-test.lock"
INSTALLER_LOCK = REPO / "installer" / "requirements.lock"
GATEWAY_LOCK = REPO / "assets" / "gateway" / "requirements.lock"

_ENTRY = re.compile(
    r"^([A-Za-z0-9._-]+)==(\S+)(?: ;[^\\\n]*)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M
)


def _entries(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, sha256 set); every entry must pin one version with hashes."""
    text = lock.read_text()
    found = _ENTRY.findall(text)
    assert len(found) == len(re.findall(r"^[A-Za-z0-9]", text, re.M)), f"{lock.name}: an entry without hashes"
    assert "--index-url" not in text and "--find-links" not in text and "file://" not in text, lock.name
    return {
        canonicalize_name(name): (version, frozenset(re.findall(r"sha256:([0-9a-f]{64})", hashes)))
        for name, version, hashes in found
    }


@pytest.mark.parametrize("shipped", [INSTALLER_LOCK, GATEWAY_LOCK], ids=["installer", "gateway"])
def test_ci_installs_the_versions_and_files_that_ship(shipped: Path) -> None:
    test = _entries(TEST_LOCK)
    for name, (version, hashes) in _entries(shipped).items():
        assert name in test, f"{name} ({shipped.relative_to(REPO)}) is missing from requirements-test.lock: run tests/infra/relock.sh"
        assert test[name][0] == version, (
            f"{name}: {version} in {shipped.relative_to(REPO)}, {test[name][0]} in requirements-test.lock: "
            "run tests/infra/relock.sh"
        )
        # The same release, so the same published files: a hash the user's pip
        # would accept is one CI's pip accepted too.
        assert hashes <= test[name][1] or test[name][1] <= hashes, name


def test_the_test_lock_covers_what_the_projects_declare() -> None:
    locked = _entries(TEST_LOCK)
    main = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gateway = tomllib.loads((REPO / "assets" / "gateway" / "pyproject.toml").read_text())["project"]
    declared = [
        *main["dependencies"], *main["optional-dependencies"]["test"], *main["optional-dependencies"]["acme"],
        *gateway["dependencies"],
        *(line.split("#")[0].strip() for line in (REPO / "tests/infra/requirements-test-extra.in").read_text().splitlines()),
    ]
    for dep in filter(None, declared):
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared but not in requirements-test.lock: run tests/infra/relock.sh"
        assert req.specifier.contains(locked[name][0], prereleases=True), (dep, locked[name][0])


def test_ci_installs_from_the_lock_and_the_projects_without_resolving() -> None:
    run = (REPO / ".ci" / "run").read_text()
    assert "--require-hashes -r requirements-test.lock" in run
    assert "--no-deps --no-build-isolation -e . -e assets/gateway" in run
