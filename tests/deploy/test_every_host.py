"""A day-2 command on every host of ``hosts:`` (deploy/every_host.py), with the per-host calls recorded.

The per-host commands are the real ones in the end-to-end test
(test_e2e_multihost.py: status, logs, audit, backup, rollback, renew,
uninstall on two servers); here every branch of the loop (a host that
fails, a cancel, a bug, what the error and the output say) is checked
without servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claudegate.config import DeployConfig
from claudegate.connectors.local import LocalConnector
from claudegate.deploy.every_host import on_every_host
from claudegate.errors import Cancelled, ConnectionFailed, ExitCode, HostKeyError
from tests.deploy.test_fleet_roll import HOSTS, _cfg


class Hosts:
    """Connections that record their close; ``down`` hosts refuse the connection."""

    def __init__(self, down: dict[str, Exception] | None = None) -> None:
        self.down = down or {}
        self.closed: list[str] = []
        self.events: list[str] = []

    def connect(self, host_cfg: DeployConfig) -> LocalConnector:
        host = host_cfg.target.host
        if host in self.down:
            raise self.down[host]
        recorder = self

        class Conn(LocalConnector):
            def close(self) -> None:
                recorder.closed.append(host)

        return Conn()

    def report(self, event: Any) -> None:
        self.events.append(event.message)


def test_every_host_is_done_in_order_with_its_own_target(tmp_path: Path) -> None:
    hosts = Hosts()
    runs = on_every_host(_cfg(tmp_path, 3), hosts.connect, "status", lambda cfg, c: f"ok {cfg.target.host}",
                         reporter=hosts.report)  # fmt: skip
    assert runs.ok and runs.error() is None
    assert runs.results == tuple(f"ok {h}" for h in HOSTS[:3])
    assert hosts.closed == HOSTS[:3]
    assert hosts.events == [f"host {i}/3: {h}" for i, h in enumerate(HOSTS[:3], 1)]
    text = runs.text(lambda r: r)
    assert text.index(f"[host 1/3 ({HOSTS[0]})]\nok {HOSTS[0]}") < text.index(f"[host 3/3 ({HOSTS[2]})]\nok {HOSTS[2]}")


def test_a_failing_host_is_named_and_the_others_are_still_done(tmp_path: Path) -> None:
    down = ConnectionFailed("connection refused", target=f"root@{HOSTS[1]}", hint="is sshd running?")
    hosts = Hosts({HOSTS[1]: down})
    runs = on_every_host(_cfg(tmp_path, 3), hosts.connect, "logs", lambda cfg, c: "lines")
    assert not runs.ok
    assert [r.host for r in runs.failed] == [HOSTS[1]]
    assert runs.results == ("lines", "lines")  # host 3 after the failing host 2
    error = runs.error()
    assert error is not None
    assert error.exit_code == ExitCode.CONNECTION  # the failure's own exit code, not a generic one
    text = str(error)
    assert text.startswith("logs failed on 1 of 3 hosts:")
    assert f"host 2/3 ({HOSTS[1]}): FAILED: connection refused (fix: is sshd running?)" in text
    assert f"done on: host 1/3 ({HOSTS[0]}), host 3/3 ({HOSTS[2]})" in text
    shown = runs.text(lambda r: r)
    assert f"[host 2/3 ({HOSTS[1]})] FAILED: connection refused" in shown
    data = runs.to_json(lambda r: r)
    assert data["ok"] is False
    assert [h["ok"] for h in data["hosts"]] == [True, False, True]
    assert data["hosts"][1]["error"] == "connection refused" and data["hosts"][1]["host"] == HOSTS[1]


def test_a_failure_inside_the_command_closes_that_host_and_goes_on(tmp_path: Path) -> None:
    hosts = Hosts()

    def fn(cfg: DeployConfig, connector: Any) -> str:
        if cfg.target.host == HOSTS[0]:
            raise HostKeyError("the host key changed", host=HOSTS[0], port=22)
        return "fine"

    runs = on_every_host(_cfg(tmp_path, 2), hosts.connect, "rollback", fn)
    assert hosts.closed == HOSTS[:2]
    error = runs.error()
    assert error is not None and error.exit_code == ExitCode.HOST_KEY
    assert f"host 1/2 ({HOSTS[0]}): FAILED: the host key changed" in str(error)


def test_a_cancel_stops_the_loop_and_a_bug_is_not_swallowed(tmp_path: Path) -> None:
    hosts = Hosts()
    seen: list[str] = []

    def cancelled(cfg: DeployConfig, connector: Any) -> str:
        seen.append(cfg.target.host)
        raise Cancelled("cancelled")

    with pytest.raises(Cancelled):
        on_every_host(_cfg(tmp_path, 3), hosts.connect, "uninstall", cancelled)
    assert seen == [HOSTS[0]] and hosts.closed == [HOSTS[0]]

    def bug(cfg: DeployConfig, connector: Any) -> str:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        on_every_host(_cfg(tmp_path, 2), hosts.connect, "status", bug)


def _rollback_to(release: dict[str, str | None]) -> Any:
    from claudegate.deploy.results import DeployResult
    from claudegate.errors import DeployFailed

    def fn(cfg: DeployConfig, connector: Any) -> DeployResult:
        rid = release[cfg.target.host]
        if rid is None:
            raise DeployFailed("there is no previous release to roll back to (current: r2)")
        return DeployResult("rollback", True, cfg.target.host, rid, "r2", ())

    return fn


def test_a_fleet_rollback_needs_every_host_to_go_back_to_one_release(tmp_path: Path) -> None:
    from claudegate.deploy.every_host import FleetCommandFailed, same_release_everywhere

    cfg, hosts = _cfg(tmp_path, 3), Hosts()
    same_release_everywhere(on_every_host(cfg, hosts.connect, "rollback", _rollback_to(dict.fromkeys(HOSTS, "r1"))))
    # A host that never switched (the one a failed roll stopped at) has nothing to go back to.
    planned = on_every_host(cfg, hosts.connect, "rollback", _rollback_to({**dict.fromkeys(HOSTS, "r1"), HOSTS[1]: None}))
    with pytest.raises(FleetCommandFailed) as no_previous:
        same_release_everywhere(planned)
    assert f"host 2/3 ({HOSTS[1]}): FAILED: there is no previous release" in str(no_previous.value)
    assert "nothing was rolled back" in str(no_previous.value)
    # Hosts whose previous releases differ would leave two releases serving.
    planned = on_every_host(cfg, hosts.connect, "rollback", _rollback_to({**dict.fromkeys(HOSTS, "r1"), HOSTS[2]: "r0"}))
    with pytest.raises(FleetCommandFailed) as differ:
        same_release_everywhere(planned)
    text = str(differ.value)
    assert f"host 1/3 ({HOSTS[0]}), host 2/3 ({HOSTS[1]}) -> release r1; host 3/3 ({HOSTS[2]}) -> release r0" in text
    assert "nothing was rolled back" in text


# --- keys: the first host that answers (every_host.first_answering) --------------------------------


def test_the_first_host_that_answers_does_and_the_ones_before_it_are_named(tmp_path: Path) -> None:
    from claudegate.deploy.every_host import first_answering

    down = ConnectionFailed("connection refused", target=f"root@{HOSTS[0]}")
    hosts = Hosts({HOSTS[0]: down})
    asked: list[str] = []

    def fn(cfg: DeployConfig, connector: Any) -> str:
        asked.append(cfg.target.host)
        return f"clients via {cfg.target.host}"

    answer = first_answering(_cfg(tmp_path, 3), hosts.connect, "keys list", fn)
    assert answer.result == f"clients via {HOSTS[1]}" and asked == [HOSTS[1]]  # host 3 is not asked
    assert hosts.closed == [HOSTS[1]]
    assert answer.note() == f"answered by host 2/3 ({HOSTS[1]}); host 1/3 ({HOSTS[0]}) did not answer: connection refused"
    assert answer.to_json()["skipped"] == [{"host": HOSTS[0], "index": 1, "error": "connection refused"}]
    # All up: the first host, nothing skipped.
    first = first_answering(_cfg(tmp_path, 3), Hosts().connect, "keys list", fn)
    assert first.served.index == 1 and first.note() == f"answered by host 1/3 ({HOSTS[0]})"


def test_a_read_that_fails_on_a_host_goes_on_and_none_answering_names_every_host(tmp_path: Path) -> None:
    from claudegate.deploy.every_host import FleetCommandFailed, first_answering
    from claudegate.errors import DeployFailed

    def fn(cfg: DeployConfig, connector: Any) -> str:
        raise DeployFailed(f"no serving gateway on {cfg.target.host}")

    down = ConnectionFailed("connection refused", target=f"root@{HOSTS[0]}")
    with pytest.raises(FleetCommandFailed) as none:
        first_answering(_cfg(tmp_path, 2), Hosts({HOSTS[0]: down}).connect, "keys list", fn)
    text = str(none.value)
    assert f"host 1/2 ({HOSTS[0]}): FAILED: connection refused" in text
    assert f"host 2/2 ({HOSTS[1]}): FAILED: no serving gateway on {HOSTS[1]}" in text
    assert "no host answered" in text
    assert none.value.exit_code == ExitCode.CONNECTION  # the first failure's


def test_a_change_is_sent_to_one_host_only_once_it_was_sent(tmp_path: Path) -> None:
    from claudegate.deploy.every_host import first_answering
    from claudegate.errors import DeployFailed

    asked: list[str] = []

    def create(cfg: DeployConfig, connector: Any) -> str:
        asked.append(cfg.target.host)
        raise DeployFailed("the connection dropped while creating the key")

    down = ConnectionFailed("connection refused", target=f"root@{HOSTS[0]}")
    with pytest.raises(DeployFailed) as sent:
        first_answering(_cfg(tmp_path, 3), Hosts({HOSTS[0]: down}).connect, "keys create", create,
                        retry_after_sent=False)  # fmt: skip
    # Host 1 was never reached (skipped), host 2 got it and failed: host 3 is not asked to make a second key.
    assert asked == [HOSTS[1]]
    assert f"tried on host 2/3 ({HOSTS[1]}); host 1/3 ({HOSTS[0]}) did not answer" in str(sent.value)


def test_usage_on_several_hosts_sums_every_host_log_and_names_a_missing_one() -> None:
    from claudegate.usage import fleet_usage

    def line(client: str, tokens: int) -> bytes:
        return json.dumps({"time": "2026-12-07T10:00:00Z", "key_name": client, "model": "claude-haiku-4-5",
                           "status": 200, "input_tokens": tokens, "output_tokens": 1}).encode()  # fmt: skip

    read = [("host 2/3 (b)", ["/log/audit.jsonl"], [line("ci", 10), line("ci", 5)]),
            ("host 3/3 (c)", ["/log/audit.jsonl"], [line("ci", 7)])]  # fmt: skip
    report = fleet_usage(read, ["host 1/3 (a): connection refused"])
    (row,) = report.rows
    assert (row.client, row.requests, row.input_tokens) == ("ci", 3, 22)
    assert report.files == ("host 2/3 (b):/log/audit.jsonl", "host 3/3 (c):/log/audit.jsonl")
    assert "summed from the audit logs of host 2/3 (b), host 3/3 (c)" in report.hosts_text()
    assert "WARNING: these hosts' requests are NOT counted: host 1/3 (a): connection refused" in report.hosts_text()
    assert report.to_json()["missing_hosts"] == ["host 1/3 (a): connection refused"]
