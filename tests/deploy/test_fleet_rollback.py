"""A fleet rollback that fails half-way (deploy/fleet_rollback.py), on canned host facts.

Each host is a pair of links (current, previous) that the recorded rollback
swaps, as the real rollback playbook does; a host set to fail raises
instead. The real playbooks run in test_e2e_multihost.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from claudegate.config import DeployConfig
from claudegate.deploy.api import mixed_release_notes
from claudegate.deploy.every_host import FleetCommandFailed
from claudegate.deploy.fleet_rollback import rollback_fleet
from claudegate.deploy.results import DeployResult
from claudegate.errors import ExitCode, SmokeTestFailed
from tests.deploy.test_every_host import Hosts
from tests.deploy.test_fleet_roll import HOSTS, _cfg


class Links:
    """Every host on r2 with r1 before it; ``fail`` maps a host to the rollback calls (1st, 2nd) that fail."""

    def __init__(self, count: int, fail: dict[str, set[int]] | None = None) -> None:
        self.links = {h: ["r2", "r1"] for h in HOSTS[:count]}
        self.fail = fail or {}
        self.calls: list[str] = []

    def roll_back(self, cfg: DeployConfig, connector: Any) -> DeployResult:
        host = cfg.target.host
        self.calls.append(host)
        if self.calls.count(host) in self.fail.get(host, set()):
            raise SmokeTestFailed(f"smoke test failed on {host}", hint="see the smoke table")
        current, previous = self.links[host]
        self.links[host] = [previous, current]
        return DeployResult("rollback", False, host, previous, current, ())

    def read_current(self, cfg: DeployConfig, connector: Any) -> str:
        return self.links[cfg.target.host][0]

    def run(self, cfg: DeployConfig) -> Any:
        return rollback_fleet(cfg, Hosts().connect, roll_back=self.roll_back, read_current=self.read_current,
                              config_path="fleet.yaml")  # fmt: skip


def test_every_host_goes_back_in_order(tmp_path: Path) -> None:
    links = Links(3)
    runs = links.run(_cfg(tmp_path, 3))
    assert runs.ok and links.calls == HOSTS[:3]
    assert {current for current, _ in links.links.values()} == {"r1"}


def test_a_host_that_fails_half_way_has_the_rolled_back_ones_rolled_forward_again(tmp_path: Path) -> None:
    links = Links(3, fail={HOSTS[1]: {1}})
    with pytest.raises(FleetCommandFailed) as failed:
        links.run(_cfg(tmp_path, 3))
    # Host 1 went back, host 2 failed, host 3 was never touched; host 1 went forward again.
    assert links.calls == [HOSTS[0], HOSTS[1], HOSTS[0]]
    assert {current for current, _ in links.links.values()} == {"r2"}
    text = str(failed.value)
    assert text.startswith(f"rollback failed on host 2/3 ({HOSTS[1]}): smoke test failed on {HOSTS[1]}")
    assert f"host 1/3 ({HOSTS[0]}) had rolled back to r1: rolled forward again to r2 (smoke-tested)" in text
    assert f"not started: host 3/3 ({HOSTS[2]})" in text
    assert f"now: host 1/3 ({HOSTS[0]}) on r2; host 2/3 ({HOSTS[1]}) on r2; host 3/3 ({HOSTS[2]}) on r2" in text
    assert "every host serves release r2, as before this rollback" in text
    assert failed.value.exit_code == ExitCode.SMOKE  # the failing host's own
    assert failed.value.hint and "run claudegate rollback again" in failed.value.hint


def test_a_host_that_cannot_go_forward_again_is_named_with_the_one_command_that_fixes_it(tmp_path: Path) -> None:
    links = Links(3, fail={HOSTS[2]: {1}, HOSTS[0]: {2}})  # host 3 fails; host 1's roll forward fails too
    with pytest.raises(FleetCommandFailed) as failed:
        links.run(_cfg(tmp_path, 3))
    assert links.calls == [HOSTS[0], HOSTS[1], HOSTS[2], HOSTS[1], HOSTS[0]]  # forward in reverse order
    text = str(failed.value)
    assert f"host 2/3 ({HOSTS[1]}) had rolled back to r1: rolled forward again to r2" in text
    assert f"host 1/3 ({HOSTS[0]}) had rolled back to r1; rolling it forward again FAILED: smoke test failed" in text
    assert f"now: host 1/3 ({HOSTS[0]}) on r1; host 2/3 ({HOSTS[1]}) on r2; host 3/3 ({HOSTS[2]}) on r2" in text
    assert "the hosts serve DIFFERENT releases" in text
    assert failed.value.hint is not None and failed.value.hint.startswith(
        "claudegate deploy --config fleet.yaml puts every host on one release")


def test_the_first_host_failing_touches_no_other(tmp_path: Path) -> None:
    links = Links(2, fail={HOSTS[0]: {1}})
    with pytest.raises(FleetCommandFailed) as failed:
        links.run(_cfg(tmp_path, 2))
    assert links.calls == [HOSTS[0]]
    assert "every host serves release r2, as before this rollback" in str(failed.value)


def test_status_warns_when_the_hosts_serve_different_releases() -> None:
    assert mixed_release_notes([("host 1/2 (a)", "r2"), ("host 2/2 (b)", "r2")]) == []
    (note,) = mixed_release_notes([("host 1/2 (a)", "r1"), ("host 2/2 (b)", "r2"), ("host 3/3 (c)", None)])
    assert note.startswith("WARNING: the hosts serve different releases (release r1: host 1/2 (a); "
                           "release r2: host 2/2 (b); release nothing: host 3/3 (c))")  # fmt: skip
    assert "claudegate deploy" in note
