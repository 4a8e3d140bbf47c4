"""The rolling deploy's order and rollback decisions (deploy/fleet.py), with the per-host runs recorded.

The per-host deploy and rollback are the real playbooks in the end-to-end
test (test_e2e_multihost.py); here they are recorded calls, so every branch
of the roll (which host goes when, which are rolled back, what the error
says) is checked without servers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from claudegate.config import DeployConfig
from claudegate.connectors.local import LocalConnector
from claudegate.deploy.fleet import deploy_fleet
from claudegate.deploy.results import DeployResult, StepReport
from claudegate.errors import DeployFailed
from tests.deploy.support import write_config, write_secret

HOSTS = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"]


def _cfg(tmp_path: Path, count: int, batch: int = 1) -> DeployConfig:
    pw = write_secret(tmp_path / "pw", "secret-pw")
    doc = {
        "hosts": [{"host": h, "known_hosts": str(tmp_path / "kh")} for h in HOSTS[:count]],
        "domain": "gw.test",
        "tls": {"mode": "internal-ca"},
        "upstream": {"api_key_file": str(write_secret(tmp_path / "key", "sk-ant-api03-x"))},
        "rollout": {"batch": batch},
        "state": {"redis": {"url": "redis://10.0.0.5/0", "password_file": str(pw)},
                  "postgres": {"url": "postgresql://u@10.0.0.5/db", "password_file": str(pw), "tls": "disable"}},
        "state_dir": str(tmp_path / "state"),
    }  # fmt: skip
    return write_config(tmp_path, doc)


def _result(host: str, *, switched: bool) -> DeployResult:
    steps = (StepReport("switch", "Switch", ("switch nginx",) if switched else (), (), 0.0),)
    return DeployResult("deploy", False, host, "r2", "r1", steps)


class Recorder:
    def __init__(self, fail: set[str] = frozenset(), unchanged: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail, self.unchanged = fail, unchanged
        self.calls: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.closed: list[str] = []

    def connect(self, host_cfg: DeployConfig) -> LocalConnector:
        recorder, host = self, host_cfg.target.host

        class Conn(LocalConnector):
            def close(self) -> None:
                recorder.closed.append(host)

        return Conn()

    def run_one(self, host_cfg: DeployConfig, connector: Any, **kw: Any) -> DeployResult:
        host = host_cfg.target.host
        with self.lock:
            self.calls.append(("deploy", host, kw["options"].migrate))
        if host in self.fail:
            raise DeployFailed(f"smoke test failed on {host}", hint="see the table")
        return _result(host, switched=host not in self.unchanged)

    def roll_back(self, host_cfg: DeployConfig, connector: Any, **kw: Any) -> DeployResult:
        self.calls.append(("rollback", host_cfg.target.host, False))
        return _result(host_cfg.target.host, switched=True)

    def deploy(self, cfg: DeployConfig, **kw: Any) -> Any:
        return deploy_fleet(cfg, self.connect, run_one=self.run_one, roll_back=self.roll_back, **kw)


def test_hosts_go_one_at_a_time_and_only_the_first_migrates(tmp_path: Path) -> None:
    rec = Recorder()
    result = rec.deploy(_cfg(tmp_path, 3))
    assert rec.calls == [("deploy", HOSTS[0], True), ("deploy", HOSTS[1], False), ("deploy", HOSTS[2], False)]
    assert [r.target for r in result.hosts] == HOSTS[:3]
    assert sorted(rec.closed) == HOSTS[:3]  # every connection closed
    assert "[host 3/3]" in result.plan_text()


def test_a_failing_host_rolls_back_the_switched_ones_in_reverse_and_starts_no_more(tmp_path: Path) -> None:
    rec = Recorder(fail={HOSTS[2]}, unchanged={HOSTS[0]})
    with pytest.raises(DeployFailed) as failed:
        rec.deploy(_cfg(tmp_path, 4))
    # Host 1 was already at the release (not switched): nothing to roll back there.
    assert rec.calls[3:] == [("rollback", HOSTS[1], False)]
    assert ("deploy", HOSTS[3], False) not in rec.calls
    text = str(failed.value)
    assert f"host 3/4 ({HOSTS[2]}) failed: smoke test failed on {HOSTS[2]}" in text
    assert f"rolled back to the release they served before: {HOSTS[1]}" in text
    assert f"not started: {HOSTS[3]}" in text
    assert failed.value.hint is not None and failed.value.hint.startswith("see the table; ")


def test_a_rollback_that_fails_is_said_not_hidden(tmp_path: Path) -> None:
    rec = Recorder(fail={HOSTS[1]})

    def no_previous(host_cfg: DeployConfig, connector: Any, **kw: Any) -> DeployResult:
        raise DeployFailed("there is no previous release to roll back to (current: r2)")

    with pytest.raises(DeployFailed) as failed:
        deploy_fleet(_cfg(tmp_path, 2), rec.connect, run_one=rec.run_one, roll_back=no_previous)
    assert f"NOT rolled back (they serve the new release): {HOSTS[0]} (there is no previous release" in str(failed.value)


def test_a_batch_runs_together_after_the_first_host(tmp_path: Path) -> None:
    inside = threading.Barrier(3, timeout=10)  # hosts 2..4 must be in their deploys at the same time
    rec = Recorder()

    def run_one(host_cfg: DeployConfig, connector: Any, **kw: Any) -> DeployResult:
        result = rec.run_one(host_cfg, connector, **kw)
        if host_cfg.target.host != HOSTS[0]:
            inside.wait()
        return result

    result = deploy_fleet(_cfg(tmp_path, 4, batch=3), rec.connect, run_one=run_one, roll_back=rec.roll_back)
    assert rec.calls[0] == ("deploy", HOSTS[0], True)
    assert [r.target for r in result.hosts] == HOSTS


def test_a_dry_run_failure_is_raised_as_is_and_rolls_nothing_back(tmp_path: Path) -> None:
    rec = Recorder(fail={HOSTS[1]})
    with pytest.raises(DeployFailed, match="smoke test failed"):
        rec.deploy(_cfg(tmp_path, 2), dry_run=True)
    assert [c[0] for c in rec.calls] == ["deploy", "deploy"]


def test_a_batch_with_two_failures_names_both_and_rolls_back_its_switched_host(tmp_path: Path) -> None:
    rec = Recorder(fail={HOSTS[1], HOSTS[3]})
    with pytest.raises(DeployFailed) as failed:
        rec.deploy(_cfg(tmp_path, 4, batch=3))
    text = str(failed.value)
    assert f"host 2/4 ({HOSTS[1]}) failed" in text and f"also failed (in the same batch): {HOSTS[3]}" in text
    assert "not started" not in text
    rolled = sorted(host for kind, host, _ in rec.calls if kind == "rollback")
    assert rolled == [HOSTS[0], HOSTS[2]]  # the canary and the batch's host that passed


def test_a_failed_roll_reads_every_hosts_release_and_names_the_fix_when_they_differ(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, 3)
    serving = {HOSTS[0]: "r1", HOSTS[1]: "r1", HOSTS[2]: "r1"}

    def read(host_cfg: DeployConfig, connector: Any) -> str:
        return serving[host_cfg.target.host]

    recorder = Recorder(fail={HOSTS[1]})
    with pytest.raises(DeployFailed) as failed:
        deploy_fleet(cfg, recorder.connect, run_one=recorder.run_one, roll_back=recorder.roll_back,
                     read_current=read)  # fmt: skip
    text = str(failed.value)
    assert f"now: host 1/3 ({HOSTS[0]}) on r1; host 2/3 ({HOSTS[1]}) on r1; host 3/3 ({HOSTS[2]}) on r1" in text
    assert "DIFFERENT" not in text and failed.value.hint and "deploy again" in failed.value.hint
    # Host 1's rollback did not take (it still serves the new release): said, with the one command.
    serving[HOSTS[0]] = "r2"
    with pytest.raises(DeployFailed) as mixed:
        deploy_fleet(cfg, Recorder(fail={HOSTS[1]}).connect, run_one=Recorder(fail={HOSTS[1]}).run_one,
                     roll_back=recorder.roll_back, read_current=read)  # fmt: skip
    assert f"now: host 1/3 ({HOSTS[0]}) on r2; host 2/3 ({HOSTS[1]}) on r1" in str(mixed.value)
    assert "the hosts serve DIFFERENT releases" in str(mixed.value)
    assert mixed.value.hint and mixed.value.hint.startswith("claudegate deploy --config ")


class Contract:
    """Records the contract calls; each host's release as ``read_current`` reads it after the roll."""

    def __init__(self, serving: dict[str, str | None], *, fails: bool = False) -> None:
        self.serving, self.fails = serving, fails
        self.calls: list[str] = []

    def read(self, host_cfg: DeployConfig, connector: Any) -> str | None:
        return self.serving[host_cfg.target.host]

    def contract(self, host_cfg: DeployConfig, connector: Any) -> str:
        self.calls.append(host_cfg.target.host)
        if self.fails:
            raise DeployFailed("migrate --contract failed: lock timeout")
        return "applied 4"


def test_the_contract_steps_run_once_after_a_roll_that_left_every_host_on_the_release(tmp_path: Path) -> None:
    rec, con = Recorder(), Contract(dict.fromkeys(HOSTS[:3], "r2"))
    result = rec.deploy(_cfg(tmp_path, 3), read_current=con.read, contract=con.contract)
    assert con.calls == [HOSTS[0]]  # once, through the first host, after every host deployed
    assert rec.calls[-1][1] == HOSTS[2]
    assert result.notes == ("migrate --contract (every host serves release r2): applied 4",)


def test_the_contract_steps_never_run_after_a_failed_roll_nor_while_a_host_serves_another_release(
    tmp_path: Path,
) -> None:
    rec, con = Recorder(fail={HOSTS[1]}), Contract(dict.fromkeys(HOSTS[:3], "r1"))
    with pytest.raises(DeployFailed):
        rec.deploy(_cfg(tmp_path, 3), read_current=con.read, contract=con.contract)
    assert con.calls == []
    # Every host deployed, yet one reads another release afterwards (someone rolled it back meanwhile).
    rec, con = Recorder(), Contract({HOSTS[0]: "r2", HOSTS[1]: "r1"})
    result = rec.deploy(_cfg(tmp_path, 2), read_current=con.read, contract=con.contract)
    assert con.calls == [] and "WARNING: the schema's contract steps were not run" in result.notes[0]
    assert "host 2/2 on r1" in result.notes[0]
    # A dry run never contracts.
    rec, con = Recorder(), Contract(dict.fromkeys(HOSTS[:2], "r2"))
    rec.deploy(_cfg(tmp_path, 2), dry_run=True, read_current=con.read, contract=con.contract)
    assert con.calls == []


def test_a_failing_contract_step_is_a_warning_not_a_rollback(tmp_path: Path) -> None:
    rec, con = Recorder(), Contract(dict.fromkeys(HOSTS[:2], "r2"), fails=True)
    result = rec.deploy(_cfg(tmp_path, 2), read_current=con.read, contract=con.contract)
    assert [c[0] for c in rec.calls] == ["deploy", "deploy"]  # nothing rolled back
    assert result.notes[0].startswith("WARNING: the schema's contract steps failed")
