"""The deploy lock on the host: one deploy at a time, never stuck after a crash.

The lock is a directory (``state/lock``) holding ``token``, ``expires`` (host
clock, epoch seconds) and ``owner.json`` (who: operator host, user, pid,
boot id, playbook, start time). It is created complete in a temporary
directory and renamed into place, so the rename either wins the lock or
finds it taken -- there is no half-written lock to misread.

It is taken over without anyone cleaning up by hand when:

- it expired (the holder stopped refreshing it: crashed, or lost the
  connection and gave up). Deploys refresh it before every step;
- its holder provably is dead: it was taken from this same operator machine
  (same host name and boot id) by a process that no longer runs, or by this
  very process in a run that has ended (a deploy whose SSH session dropped).

Takeover renames the old lock aside first, so of two deploys taking over at
once only one succeeds.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claudegate import __version__
from claudegate.connectors.base import Connector
from claudegate.errors import DeployFailed

__all__ = [
    "LOCK_HELD_STATUS",
    "LockHolder",
    "RemoteLock",
    "acquire_argv",
    "holder_is_dead",
    "parse_holder",
    "read_argv",
    "read_holder",
    "release_argv",
]

#: Exit status of the acquire script when someone else holds the lock.
LOCK_HELD_STATUS = 3
#: Long enough for the slowest step (an image build may take minutes on a
#: small host); a crashed run on this same machine is taken over at once anyway.
DEFAULT_TTL = 1800
#: Refresh when this much of the lifetime has passed.
REFRESH_AFTER = 120

# Tokens of deploys running in this process: a lock carrying one of our
# tokens that is not in here belongs to a run of ours that has ended.
_ACTIVE_TOKENS: set[str] = set()

_ACQUIRE = """set -eu
d=$1 token=$2 ttl=$3 force=$4
now=$(date +%s)
owner=$(cat)
mkdir -p -- "$(dirname -- "$d")"
held=$(cat -- "$d/token" 2>/dev/null || true)
if [ -n "$held" ] && [ "$held" = "$token" ]; then
  # Ours already (a refresh, or this run resuming after a reconnect).
  echo $((now + ttl)) >"$d/expires.new" && mv -f -- "$d/expires.new" "$d/expires"
  echo refreshed; exit 0
fi
if [ -d "$d" ]; then
  exp=$(cat -- "$d/expires" 2>/dev/null || echo 0)
  if [ "$exp" -lt "$now" ] || { [ -n "$force" ] && [ "$held" = "$force" ]; }; then
    stale="$d.stale.$$"
    if mv -T -- "$d" "$stale" 2>/dev/null; then rm -rf -- "$stale"; fi
  fi
fi
tmp=$(mktemp -d "$d.new.XXXXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
printf '%s\\n' "$owner" >"$tmp/owner.json"
printf '%s\\n' "$token" >"$tmp/token"
echo $((now + ttl)) >"$tmp/expires"
if mv -T -- "$tmp" "$d" 2>/dev/null; then echo acquired; exit 0; fi
printf 'now=%s\\n' "$now"
printf 'expires=%s\\n' "$(cat -- "$d/expires" 2>/dev/null || echo 0)"
printf 'token=%s\\n' "$(cat -- "$d/token" 2>/dev/null || true)"
cat -- "$d/owner.json" 2>/dev/null || true
exit 3"""

_READ = """d=$1
[ -d "$d" ] || exit 0
printf 'now=%s\\n' "$(date +%s)"
printf 'expires=%s\\n' "$(cat -- "$d/expires" 2>/dev/null || echo 0)"
printf 'token=%s\\n' "$(cat -- "$d/token" 2>/dev/null || true)"
cat -- "$d/owner.json" 2>/dev/null || true"""

_RELEASE = """d=$1 token=$2
if [ "$(cat -- "$d/token" 2>/dev/null || true)" = "$token" ]; then rm -rf -- "$d"; fi"""


def acquire_argv(lock_dir: str, token: str, ttl: int, force: str = "") -> list[str]:
    """Take (or refresh) the lock; owner.json on stdin. Exit 3 + holder details when held."""
    return ["sh", "-c", _ACQUIRE, "claudegate-lock", lock_dir, token, str(ttl), force]


def read_argv(lock_dir: str) -> list[str]:
    """Print the holder (as the acquire script does when held); nothing when free."""
    return ["sh", "-c", _READ, "claudegate-lock-read", lock_dir]


def release_argv(lock_dir: str, token: str) -> list[str]:
    """Remove the lock if it is still ours."""
    return ["sh", "-c", _RELEASE, "claudegate-unlock", lock_dir, token]


@dataclass(frozen=True)
class LockHolder:
    token: str
    expires: int
    now: int
    owner: dict[str, Any]

    @property
    def seconds_left(self) -> int:
        return self.expires - self.now

    def describe(self) -> str:
        who = f"{self.owner.get('user', '?')}@{self.owner.get('operator_host', '?')}"
        pid = self.owner.get("pid", "?")
        return f"{who} (pid {pid}, {self.owner.get('playbook', 'deploy')} started {self.owner.get('started_at', '?')})"


def parse_holder(text: str) -> LockHolder | None:
    """The holder from the read/acquire scripts' output; None when the lock is free."""
    values: dict[str, str] = {}
    owner: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                owner = json.loads(line)
            except ValueError:
                owner = {}
            continue
        key, sep, value = line.partition("=")
        if sep and key in ("now", "expires", "token"):
            values[key] = value.strip()
    if "now" not in values:
        return None
    try:
        return LockHolder(values.get("token", ""), int(values.get("expires") or 0), int(values["now"]), owner)
    except ValueError:
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(holder: LockHolder, *, hostname: str | None = None, boot_id: str | None = None) -> bool:
    """True when the lock was taken from this machine by a run that has certainly ended."""
    owner = holder.owner
    if owner.get("operator_host") != (hostname or socket.gethostname()):
        return False
    if not owner.get("boot_id") or owner.get("boot_id") != (boot_id if boot_id is not None else _boot_id()):
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return holder.token not in _ACTIVE_TOKENS
    return not _pid_alive(pid)


class RemoteLock:
    """The lock of one run. ``acquire`` / ``refresh_if_due`` / ``release``."""

    def __init__(
        self, connector: Connector, lock_dir: str, *, playbook: str, sudo: bool, ttl: int = DEFAULT_TTL
    ):
        self.connector = connector
        self.lock_dir = lock_dir
        self.playbook = playbook
        self.sudo = sudo
        self.ttl = ttl
        self.token = secrets.token_hex(16)
        self.held = False
        self._refreshed = 0.0

    def owner_json(self) -> bytes:
        owner = {
            "token": self.token,
            "user": getpass.getuser(),
            "operator_host": socket.gethostname(),
            "boot_id": _boot_id(),
            "pid": os.getpid(),
            "playbook": self.playbook,
            "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "claudegate": __version__,
        }
        return json.dumps(owner, sort_keys=True).encode()

    def _try(self, force: str = "") -> LockHolder | None:
        result = self.connector.run(
            acquire_argv(self.lock_dir, self.token, self.ttl, force),
            input=self.owner_json(),
            sudo=self.sudo,
            timeout=30,
            check=False,
        )
        if result.ok:
            return None
        if result.exit_status != LOCK_HELD_STATUS:
            self.connector.raise_failed(acquire_argv(self.lock_dir, self.token, self.ttl, force), result)
        holder = parse_holder(result.text)
        if holder is None:
            raise DeployFailed(f"the deploy lock at {self.lock_dir} is held but unreadable")
        return holder

    def acquire(self) -> None:
        _ACTIVE_TOKENS.add(self.token)
        holder = self._try()
        if holder is not None and holder_is_dead(holder):
            holder = self._try(force=holder.token)
        if holder is not None:
            _ACTIVE_TOKENS.discard(self.token)
            raise DeployFailed(
                f"another deploy holds the lock on {self.connector.target}: {holder.describe()}",
                hint=(
                    f"wait for it to finish; if it crashed, its lock expires in {max(holder.seconds_left, 0)} s "
                    "and the next deploy takes it over by itself"
                ),
            )
        self.held = True
        self._refreshed = time.monotonic()

    def refresh_if_due(self) -> None:
        if self.held and time.monotonic() - self._refreshed > REFRESH_AFTER:
            if self._try() is not None:
                self.held = False
                raise DeployFailed("the deploy lock was taken over by another deploy while this one ran")
            self._refreshed = time.monotonic()

    def release(self) -> None:
        try:
            if self.held:
                self.connector.run(release_argv(self.lock_dir, self.token), sudo=self.sudo, timeout=30)
                self.held = False
        finally:
            _ACTIVE_TOKENS.discard(self.token)

    def forget(self) -> None:
        """The run ended without releasing (connection lost): the lock may be taken over."""
        self.held = False
        _ACTIVE_TOKENS.discard(self.token)


def read_holder(connector: Connector, lock_dir: str, *, sudo: bool) -> LockHolder | None:
    result = connector.run(read_argv(lock_dir), sudo=sudo, timeout=30, check=False)
    return parse_holder(result.text) if result.ok else None
