"""The ``state:`` section of gateway.yaml: where shared state lives when the
gateway runs on several hosts.

Absent (the default), the gateway keeps everything in its SQLite keystore
and its own process, exactly as a one-host deployment always did. With
``state.redis`` admission (rates, in-flight, daily budgets) is decided in
Redis for every replica at once; with ``state.postgres`` keys, owned objects
and the usage ledger live in PostgreSQL.

Passwords are never written in the YAML or in a URL: each sits in a file
(mode 0600, like the upstream key) named by ``password_file``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_STATE_KEYS = {"redis", "postgres", "replica_id"}
_REDIS_KEYS = {"url", "password_file", "tls_ca_file", "lease_seconds", "timeout_seconds"}
_PG_KEYS = {"url", "password_file", "tls", "tls_ca_file", "cache_entries", "cache_seconds"}
PG_TLS_MODES = ("disable", "require", "verify-full")


class StateConfigError(ValueError):
    """One line: where, what, and how to fix it (config.py wraps it into a ConfigError)."""


@dataclass(frozen=True)
class RedisState:
    url: str
    password_file: Path | None = None
    tls_ca_file: Path | None = None  # rediss:// only: the CA that signed the server's certificate
    # A replica renews its in-flight holds every lease/3; one that died gives them back after this.
    lease_seconds: float = 15.0
    # Longer than this and the request is decided without Redis (see admission_redis).
    timeout_seconds: float = 0.5


@dataclass(frozen=True)
class PostgresState:
    url: str
    password_file: Path | None = None
    tls: str = "disable"
    tls_ca_file: Path | None = None
    # Keys known to this replica, kept so they keep working while PostgreSQL is away.
    cache_entries: int = 4096
    # How long a cached key may be served during an outage before it is refused.
    cache_seconds: float = 3600.0


@dataclass(frozen=True)
class StateConfig:
    redis: RedisState | None = None
    postgres: PostgresState | None = None
    replica_id: str | None = None  # default: hostname, pid and a random suffix


def _fail(source: str, key: str, problem: str, fix: str) -> StateConfigError:
    return StateConfigError(f"{source}: {key}: {problem}; {fix}")


def _unknown(source: str, prefix: str, given: set[str], known: set[str]) -> None:
    for key in sorted(given - known):
        # A cut-short name (lease for lease_seconds) is the likeliest slip.
        close = difflib.get_close_matches(key, sorted(known), n=1) or sorted(k for k in known if k.startswith(key))
        hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(sorted(known))}"
        raise _fail(source, prefix + key, "unknown key", hint)


def _mapping(source: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, key, f"must be a mapping, got {type(value).__name__}", "see the gateway README, 'Shared state'")
    return value


def _url(source: str, key: str, value: Any, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _fail(source, key, "missing or not a string", f"write e.g. {schemes[0]}://host:port/...")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise _fail(source, key, f"{value!r} is not a {'/'.join(schemes)} URL", f"write e.g. {schemes[0]}://host:port/...")
    if parts.password is not None:
        raise _fail(source, key, "the URL holds a password", "put the password in a 0600 file and set password_file")
    return value


def _seconds(source: str, key: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise _fail(source, key, f"expected a number >= {minimum}, got {value!r}", f"set {key} to a number of seconds")
    return float(value)


def _path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(str(value))


def parse_state(raw: Any, source: str) -> StateConfig:
    if raw is None:
        return StateConfig()
    raw = _mapping(source, "state", raw)
    _unknown(source, "state.", set(raw), _STATE_KEYS)
    redis = None
    if raw.get("redis") is not None:
        r = _mapping(source, "state.redis", raw["redis"])
        _unknown(source, "state.redis.", set(r), _REDIS_KEYS)
        url = _url(source, "state.redis.url", r.get("url"), ("redis", "rediss"))
        ca = _path(r.get("tls_ca_file"))
        if ca is not None and not url.startswith("rediss://"):
            raise _fail(source, "state.redis.tls_ca_file", "given for a plain redis:// URL", "use rediss:// for TLS")
        lease = _seconds(source, "state.redis.lease_seconds", r.get("lease_seconds", RedisState.lease_seconds), 1.0)
        redis = RedisState(
            url=url, password_file=_path(r.get("password_file")), tls_ca_file=ca, lease_seconds=lease,
            timeout_seconds=_seconds(
                source, "state.redis.timeout_seconds", r.get("timeout_seconds", RedisState.timeout_seconds), 0.01
            ),
        )  # fmt: skip
    postgres = None
    if raw.get("postgres") is not None:
        p = _mapping(source, "state.postgres", raw["postgres"])
        _unknown(source, "state.postgres.", set(p), _PG_KEYS)
        tls = p.get("tls", "disable")
        if tls not in PG_TLS_MODES:
            raise _fail(source, "state.postgres.tls", f"{tls!r} is not a mode", f"use one of {', '.join(PG_TLS_MODES)}")
        entries = p.get("cache_entries", PostgresState.cache_entries)
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            raise _fail(source, "state.postgres.cache_entries", f"expected a whole number >= 1, got {entries!r}",
                        "set it to e.g. 4096")  # fmt: skip
        postgres = PostgresState(
            url=_url(source, "state.postgres.url", p.get("url"), ("postgresql", "postgres")),
            password_file=_path(p.get("password_file")), tls=tls, tls_ca_file=_path(p.get("tls_ca_file")),
            cache_entries=entries,
            cache_seconds=_seconds(
                source, "state.postgres.cache_seconds", p.get("cache_seconds", PostgresState.cache_seconds), 1.0
            ),
        )  # fmt: skip
    replica = raw.get("replica_id")
    if replica is not None and (not isinstance(replica, str) or not replica or len(replica) > 64):
        raise _fail(source, "state.replica_id", f"{replica!r} is not a short name", "leave it out to use host and pid")
    return StateConfig(redis=redis, postgres=postgres, replica_id=replica)
