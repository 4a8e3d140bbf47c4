"""The deploy lock, with the real script on this machine (LocalConnector)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from claudegate.connectors import LocalConnector
from claudegate.deploy.lock import LockHolder, RemoteLock, holder_is_dead, parse_holder, read_holder
from claudegate.errors import DeployFailed

local = LocalConnector(default_timeout=30)


def lock(tmp_path: Path, ttl: int = 600) -> RemoteLock:
    return RemoteLock(local, str(tmp_path / "state" / "lock"), playbook="deploy", sudo=False, ttl=ttl)


def test_one_holder_at_a_time_and_release(tmp_path: Path) -> None:
    first, second = lock(tmp_path), lock(tmp_path)
    first.acquire()
    owner = json.loads((tmp_path / "state" / "lock" / "owner.json").read_text())
    assert owner["pid"] == os.getpid() and owner["operator_host"] == socket.gethostname()
    with pytest.raises(DeployFailed, match="another deploy holds the lock") as held:
        second.acquire()
    assert "expires in" in (held.value.hint or "")
    first.release()
    assert not (tmp_path / "state" / "lock").exists()
    second.acquire()
    second.release()


def test_refresh_of_ones_own_lock(tmp_path: Path) -> None:
    mine = lock(tmp_path)
    mine.acquire()
    before = (tmp_path / "state" / "lock" / "expires").read_text()
    mine._refreshed = 0  # pretend it is due
    mine.refresh_if_due()
    assert int((tmp_path / "state" / "lock" / "expires").read_text()) >= int(before)
    mine.release()


def test_an_expired_lock_is_taken_over(tmp_path: Path) -> None:
    crashed = lock(tmp_path, ttl=-10)  # expired as soon as it was taken
    crashed.acquire()
    crashed.forget()
    other = lock(tmp_path)
    other.acquire()
    assert (tmp_path / "state" / "lock" / "token").read_text().strip() == other.token
    other.release()


def test_a_dead_local_holder_is_taken_over(tmp_path: Path) -> None:
    lock_dir = tmp_path / "state" / "lock"
    code = (
        "import sys; from claudegate.connectors import LocalConnector; from claudegate.deploy.lock import RemoteLock;"
        "RemoteLock(LocalConnector(), sys.argv[1], playbook='deploy', sudo=False).acquire()"
    )
    subprocess.run([sys.executable, "-c", code, str(lock_dir)], check=True)  # exits holding the lock
    assert (lock_dir / "token").exists()
    mine = lock(tmp_path)
    mine.acquire()  # its pid is gone: taken over at once, not after the expiry
    assert (lock_dir / "token").read_text().strip() == mine.token
    mine.release()


def test_a_lost_run_of_this_process_is_taken_over(tmp_path: Path) -> None:
    lost = lock(tmp_path)
    lost.acquire()
    lost.forget()  # e.g. its SSH session dropped
    again = lock(tmp_path)
    again.acquire()
    again.release()


def test_a_live_holder_elsewhere_is_respected() -> None:
    holder = LockHolder("t", 2000, 1000, {"operator_host": "elsewhere", "pid": 1, "boot_id": "b"})
    assert not holder_is_dead(holder, hostname="here", boot_id="b")
    mine = LockHolder("t", 2000, 1000, {"operator_host": "here", "pid": 2**22 + 7, "boot_id": "b"})
    assert holder_is_dead(mine, hostname="here", boot_id="b")
    assert not holder_is_dead(mine, hostname="here", boot_id="rebooted")


def test_parse_and_read_holder(tmp_path: Path) -> None:
    assert parse_holder("") is None
    holder = parse_holder(
        'now=100\nexpires=160\ntoken=abc\n{"user": "alice", "operator_host": "lap", "pid": 7}\n'
    )
    assert holder is not None and holder.seconds_left == 60 and "alice@lap (pid 7" in holder.describe()
    assert read_holder(local, str(tmp_path / "none"), sudo=False) is None
    mine = lock(tmp_path)
    mine.acquire()
    found = read_holder(local, mine.lock_dir, sudo=False)
    assert found is not None and found.token == mine.token
    mine.release()
