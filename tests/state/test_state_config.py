"""gateway.yaml's `state:` section: parsed with messages that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from claudegate_gateway.config import ConfigError, parse_config
from claudegate_gateway.stateconfig import StateConfig


def test_absent_state_is_the_one_host_default() -> None:
    assert parse_config({}).state == StateConfig()
    assert parse_config({"state": None}).state == StateConfig()


def test_a_full_section() -> None:
    cfg = parse_config({"state": {
        "redis": {"url": "rediss://10.0.0.5:6379/0", "password_file": "/run/secrets/r", "tls_ca_file": "/ca.pem",
                  "lease_seconds": 5},
        "postgres": {"url": "postgresql://cg@10.0.0.5/cg", "password_file": "/run/secrets/p", "tls": "verify-full",
                     "cache_entries": 10, "cache_seconds": 60},
        "replica_id": "gw-a-1",
    }})  # fmt: skip
    assert cfg.state.redis is not None and cfg.state.redis.lease_seconds == 5.0
    assert cfg.state.redis.password_file == Path("/run/secrets/r")
    assert cfg.state.postgres is not None and cfg.state.postgres.cache_entries == 10
    assert cfg.state.replica_id == "gw-a-1"


@pytest.mark.parametrize(
    ("state", "needle"),
    [
        ({"redis": {"url": "redis://:pw@h/0"}}, "state.redis.url: the URL holds a password; put the password in a 0600 file"),
        ({"redis": {"url": "http://h"}}, "state.redis.url: 'http://h' is not a redis/rediss URL"),
        ({"redis": {"url": "redis://h", "lease": 3}}, "state.redis.lease: unknown key; did you mean state.redis.lease_seconds?"),
        ({"redis": {"url": "redis://h", "tls_ca_file": "/ca"}}, "state.redis.tls_ca_file: given for a plain redis:// URL"),
        ({"redis": {"url": "redis://h", "lease_seconds": 0.5}}, "state.redis.lease_seconds: expected a number >= 1.0"),
        ({"postgres": {"url": "postgresql://u@h/db"}}, "state.redis: missing while state.postgres is set"),
        ({"redis": {"url": "redis://h"}, "postgres": {"url": "postgresql://u:pw@h/db"}}, "state.postgres.url: the URL holds a password"),
        ({"redis": {"url": "redis://h"}, "postgres": {"url": "postgresql://u@h/db", "tls": "on"}}, "state.postgres.tls: 'on' is not a mode"),
        ({"redis": {"url": "redis://h"}, "postgres": {"url": "postgresql://u@h/db", "cache_entries": 0}}, "state.postgres.cache_entries"),
        ({"redis": "redis://h"}, "state.redis: must be a mapping"),
        ({"replica_id": ""}, "state.replica_id"),
        ({"reddis": {}}, "did you mean state.redis?"),
    ],
)
def test_mistakes_name_the_key_and_the_fix(state: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"state": state}, "gw.yaml")
    assert str(info.value).startswith("gw.yaml: ") and needle in str(info.value)
    assert ":pw@" not in str(info.value)


def test_a_missing_engine_binary_fails_naming_the_apt_packages() -> None:
    from tests.support.state_services import _need

    with pytest.raises(RuntimeError) as info:
        _need("redis-server-that-is-not-there", "redis-server")
    assert "apt-get install -y --no-install-recommends redis-server postgresql" in str(info.value)
