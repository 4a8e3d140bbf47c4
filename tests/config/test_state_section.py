"""deploy.yaml's `state:` section: URLs of servers that exist, or a host claudegate deploys them on (the multi-host deploy: tests/config/test_hosts.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claudegate.config import DeployConfig
from claudegate.config.files import check_secret_files
from claudegate.config.model import RULES_DEFERRED
from claudegate.config.problems import DeployConfigError
from claudegate.config.rules import format_path, rule_problems
from tests.config.common import BASE, problems

GOOD = """\
state:
  redis: {url: "rediss://10.0.0.5:6379/0", password_file: /etc/cg/redis_pw}
  postgres: {url: "postgresql://claudegate@10.0.0.5:5432/claudegate", password_file: /etc/cg/pg_pw}
"""


def rules_of(text: str) -> list[tuple[str, str]]:
    import yaml

    raw = yaml.safe_load(BASE + text)
    cfg = DeployConfig.model_validate(raw, context={RULES_DEFERRED: True})
    return [(format_path(p.loc), p.problem) for p in rule_problems(cfg)]


def test_without_state_nothing_changes() -> None:
    assert rules_of("") == []


def test_a_valid_section_is_accepted_for_one_host() -> None:
    assert rules_of(GOOD) == []


HOST = """\
state:
  host: {host: 10.0.0.5, user: deploy, private_address: 10.0.0.5}
"""


def test_a_state_host_section_loads_with_defaults() -> None:
    from claudegate.config.load import load_config_text

    state = load_config_text(BASE + HOST).state
    assert state is not None and state.host is not None and state.redis is None and state.postgres is None
    assert (str(state.host.private_address), state.host.redis_port, state.host.postgres_port) == ("10.0.0.5", 6379, 5432)
    detected = load_config_text(BASE + "state: {host: {host: db.internal}}\n").state
    assert detected is not None and detected.host is not None and detected.host.private_address is None


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ('state: {host: {host: 10.0.0.5}, redis: {url: "redis://10.0.0.5/0"}}',
         "state: host: and redis: are both set; choose one: state.host"),
        ('state: {host: {host: 10.0.0.5}, redis: {url: "redis://10.0.0.5/0"}, postgres: {url: "postgresql://u@h/db"}}',
         "host: and redis and postgres: are both set"),
        ("state: {}", "state.redis and state.postgres missing; give both"),
        ('state: {postgres: {url: "postgresql://u@10.0.0.5/db"}}', "state.redis missing"),
        ("state: {host: {host: 10.0.0.5, private_address: 93.184.216.34}}",
         "state.host.private_address: 93.184.216.34 is not a private address"),
        ("state: {host: {host: 10.0.0.5, private_address: 0.0.0.0}}", "0.0.0.0 is not a private address"),
        ("state: {host: {host: 10.0.0.5, private_address: 127.0.0.1}}", "127.0.0.1 is not a private address"),
        ('state: {host: {host: 10.0.0.5, private_address: "fd00::5"}}', "is IPv6"),
        ("state: {host: {host: 10.0.0.5, private_address: db}}", "is not an IP address"),
        ("state: {host: {host: 10.0.0.5, redis_port: 0}}", "state.host.redis_port"),
        ("state: {host: {host: 10.0.0.5, adress: 10.0.0.5}}", "state.host.adress: is not a known key"),
    ],
)
def test_state_host_errors_name_the_key_and_the_fix(section: str, needle: str) -> None:
    lines = problems(section + "\n", base=BASE)
    assert any(needle in line for line in lines), lines


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ('state: {redis: {url: "redis://:pw@10.0.0.5/0"}, postgres: {url: "postgresql://u@10.0.0.5/db"}}',
         "state.redis.url: the URL holds a password; put the password in a 0600 file"),
        ('state: {redis: {url: "http://10.0.0.5"}, postgres: {url: "postgresql://u@10.0.0.5/db"}}',
         "is not a redis:// or rediss:// URL"),
        ('state: {redis: {url: "redis://10.0.0.5/0"}, postgres: {url: "postgresql://u:secret@10.0.0.5/db"}}',
         "state.postgres.url: the URL holds a password"),
        ('state: {redis: {url: "redis://10.0.0.5/0"}}', "state.postgres"),
        ('state: {redis: {url: "redis://10.0.0.5/0", lease: 3}, postgres: {url: "postgresql://u@10.0.0.5/db"}}',
         "state.redis.lease: is not a known key; the keys allowed here are: url, password_file, tls_ca_file, lease_seconds"),
        ('state: {redis: {url: "redis://10.0.0.5/0", lease_seconds: 0}, postgres: {url: "postgresql://u@h/db"}}',
         "state.redis.lease_seconds"),
    ],
)
def test_model_errors_name_the_key_and_the_fix(section: str, needle: str) -> None:
    lines = problems(section + "\n", base=BASE)
    assert any(needle in line for line in lines), lines
    assert not any("secret" in line and "u:secret" in line for line in lines)  # a password is never echoed


@pytest.mark.parametrize(
    ("section", "where", "needle"),
    [
        ('state: {redis: {url: "redis://93.184.216.34/0"}, postgres: {url: "postgresql://u@10.0.0.5/db"}}',
         "state.redis.url", "plain text"),
        ('state: {redis: {url: "redis://redis.example.com/0"}, postgres: {url: "postgresql://u@10.0.0.5/db"}}',
         "state.redis.url", "plain text"),
        ('state: {redis: {url: "rediss://10.0.0.5/0"}, postgres: {url: "postgresql://u@93.184.216.34/db", tls: disable}}',
         "state.postgres.tls", "not private"),
        ('state: {redis: {url: "redis://10.0.0.5/0", tls_ca_file: /x.pem}, postgres: {url: "postgresql://u@h/db"}}',
         "state.redis.tls_ca_file", "plain redis://"),
        ('state: {redis: {url: "rediss://10.0.0.5/0"}, postgres: {url: "postgresql://u@h/db", tls: require,'
         " tls_ca_file: /x.pem}}", "state.postgres.tls_ca_file", "tls is require"),
    ],
)
def test_rules_refuse_plain_text_to_public_addresses_and_misplaced_ca_files(section: str, where: str, needle: str) -> None:
    found = rules_of(section + "\n")
    assert any(loc == where and needle in problem for loc, problem in found), found


def test_password_files_must_be_0600(tmp_path: Path) -> None:
    import yaml

    pw = tmp_path / "redis_pw"
    pw.write_text("hunter2\n")
    os.chmod(pw, 0o644)
    raw = yaml.safe_load(BASE + GOOD.replace("/etc/cg/redis_pw", str(pw)).replace("/etc/cg/pg_pw", str(pw)))
    raw["upstream"]["api_key_file"] = str(pw)
    cfg = DeployConfig.model_validate(raw, context={RULES_DEFERRED: True})
    with pytest.raises(DeployConfigError) as info:
        check_secret_files(cfg)
    text = str(info.value)
    assert "state.redis.password_file" in text and "state.postgres.password_file" in text
    assert "chmod 600" in text and "hunter2" not in text
