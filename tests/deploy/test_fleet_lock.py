"""The lock across a fleet (deploy/fleet_lock.py) against a real redis-server (Debian's package).

The channel is a plain TCP socket here (in a deploy it is an SSH
direct-tcpip channel through a host: test_e2e_multihost.py); everything
else is the real lock: the SET NX with a lease, the renewer, the release
that only deletes its own value, a holder killed with SIGKILL, TLS.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claudegate.deploy.fleet_lock import KEY, FleetLock, FleetLockHeld, RedisEndpoint, holder_note
from claudegate.errors import ClaudegateError
from tests.support.state_services import RedisServer


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def _endpoint(redis: RedisServer, **kw: Any) -> RedisEndpoint:
    return RedisEndpoint.from_url(redis.url, redis.password, kw.get("ca"))


def _lock(redis: RedisServer, playbook: str = "deploy", **kw: Any) -> FleetLock:
    lost: list[str] = kw.pop("lost", [])
    endpoint = kw.pop("endpoint", None) or _endpoint(redis)
    return FleetLock(endpoint, lambda: socket.create_connection(("127.0.0.1", redis.port)), playbook=playbook,
                     on_lost=lost.append, **kw)  # fmt: skip


def test_a_second_run_is_refused_at_once_naming_the_holder_and_gets_it_after_release(redis: RedisServer) -> None:
    first, second = _lock(redis, "deploy"), _lock(redis, "uninstall")
    first.acquire()
    started = time.monotonic()
    with pytest.raises(FleetLockHeld) as held:
        second.acquire()
    assert time.monotonic() - started < 2  # refused at once, not after a wait
    owner = json.loads(first.value)
    text = str(held.value)
    assert text.startswith("another run holds the fleet's lock (uninstall refused, nothing was changed): ")
    assert f"{owner['user']}@{owner['operator_host']} (pid {owner['pid']}, deploy started {owner['started_at']})" in text
    assert "its lease runs out in" in text and held.value.hint and "lapses by itself" in held.value.hint
    first.release()
    assert redis.cli("EXISTS", KEY) == "0"  # gone when the run ends
    second.acquire()
    second.release()


def test_the_renewer_keeps_the_lock_past_its_lease_and_release_deletes_only_its_own(redis: RedisServer) -> None:
    first = _lock(redis, lease=1.0, renew_every=0.2)
    first.acquire()
    time.sleep(2.0)  # two leases: only the renewals keep it
    with pytest.raises(FleetLockHeld):
        _lock(redis).acquire()
    # A lock that is no longer ours (lapsed, taken by another run) is left alone by our release.
    first._stop.set()
    assert first._thread is not None
    first._thread.join()
    redis.cli("SET", KEY, "someone-else")
    first.release()
    assert redis.cli("GET", KEY) == "someone-else"


def test_a_lost_lease_cancels_the_run(redis: RedisServer) -> None:
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    lock = FleetLock(_endpoint(redis), lambda: socket.create_connection(("127.0.0.1", redis.port)),
                     playbook="deploy", on_lost=on_lost, lease=5.0, renew_every=0.2)  # fmt: skip
    lock.acquire()
    redis.cli("DEL", KEY)  # as if the lease had run out while this run was suspended
    assert lost.wait(10), "the renewer did not notice"
    assert reasons[0].startswith("the fleet's lock was lost: its lease ran out")
    assert not lock.held
    lock.release()


_HOLDER = """
import socket, sys, time
from claudegate.deploy.fleet_lock import FleetLock, RedisEndpoint
port, password = int(sys.argv[1]), sys.argv[2]
lock = FleetLock(RedisEndpoint.from_url(f"redis://127.0.0.1:{port}/0", password, None),
                 lambda: socket.create_connection(("127.0.0.1", port)), playbook="deploy", on_lost=print,
                 lease=4.0, renew_every=0.5)
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_leaves_a_lock_that_lapses_within_its_lease(redis: RedisServer) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(redis.port), redis.password],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        with pytest.raises(FleetLockHeld) as held:
            _lock(redis).acquire()  # still held: nobody knows yet that it died
        assert f"pid {holder.pid}," in str(held.value)
        while True:
            try:
                taken = _lock(redis)
                taken.acquire()
                break
            except FleetLockHeld:
                assert time.monotonic() - killed < 4.0 + 3.0, "the dead holder's lock did not lapse"
                time.sleep(0.1)
        taken.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_wrong_password_is_an_error_not_a_held_lock(redis: RedisServer) -> None:
    wrong = RedisEndpoint.from_url(redis.url, "not-the-password", None)
    with pytest.raises(ClaudegateError) as refused:
        _lock(redis, endpoint=wrong).acquire()
    assert not isinstance(refused.value, FleetLockHeld)
    assert "WRONGPASS" in str(refused.value) or "invalid" in str(refused.value)


def test_rediss_over_the_channel_with_the_operators_ca(tmp_path: Path) -> None:
    from tests.state.test_state_tls import make_ca, server_cert

    ca_file, ca, ca_key = make_ca(tmp_path, "state-ca")
    server = RedisServer(tmp_path / "redis", tls=server_cert(tmp_path, ca, ca_key)).start()
    try:
        endpoint = RedisEndpoint.from_url(server.url, server.password, ca_file)
        assert endpoint.tls
        lock = _lock(server, endpoint=endpoint)
        lock.acquire()
        with pytest.raises(FleetLockHeld):
            _lock(server, endpoint=endpoint).acquire()
        lock.release()
        foreign, _, _ = make_ca(tmp_path, "foreign-ca")
        with pytest.raises(ClaudegateError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            _lock(server, endpoint=RedisEndpoint.from_url(server.url, server.password, foreign)).acquire()
    finally:
        server.stop()


def test_holder_note_says_free_held_or_unreadable(redis: RedisServer) -> None:
    endpoint = _endpoint(redis)

    def dial() -> socket.socket:
        return socket.create_connection(("127.0.0.1", redis.port))

    assert holder_note(endpoint, dial) == "the fleet's lock is free: no deploy, rollback or uninstall is running"
    lock = _lock(redis, "rollback")
    lock.acquire()
    try:
        note = holder_note(endpoint, dial)
    finally:
        lock.release()
    owner = json.loads(lock.value)
    assert note.startswith(f"the fleet's lock is held by {owner['user']}@{owner['operator_host']} (pid {owner['pid']}, "
                           f"rollback started {owner['started_at']}); its lease runs out in "), note
    wrong = RedisEndpoint.from_url(redis.url, "not-the-password", None)
    assert holder_note(wrong, dial).startswith("the fleet's lock could not be read in the state tier's Redis"), \
        holder_note(wrong, dial)  # fmt: skip
    assert holder_note(endpoint, dial) == "the fleet's lock is free: no deploy, rollback or uninstall is running"
