"""Day-2 pieces without a server: gateway key commands as data, the keystore's listing
as the installer reads it, usage sums from audit lines, prices, and the CLI's input errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.config.model import Client
from claudegate.deploy import gateway_cli
from claudegate.deploy.docker_cli import GATEWAY_CONFIG_IN_CONTAINER, GATEWAY_PYTHON
from claudegate.deploy.steps.clients import SMOKE_SCOPES, smoke_scopes
from claudegate.errors import ConfigError
from claudegate.keys import client_spec, expiring_clients, parse_duration
from claudegate.prices import PRICES_AS_OF, price_for
from claudegate.usage import parse_since, summarize
from claudegate_gateway.keystore import KeyStore, Scopes

runner = CliRunner()
CONFIG = ["--config", GATEWAY_CONFIG_IN_CONTAINER]


def test_every_gateway_keys_command_names_its_config() -> None:
    # Without --config the gateway CLI inside the container cannot find its keystore.
    client = Client(name="team-a", models=["claude-haiku-*"], rpm=60, stream=False,
                    expires=datetime(2027, 6, 30, tzinfo=UTC))  # fmt: skip
    scope = ["team-a", "--models", "claude-haiku-*", "--endpoints", "/v1/*", "--no-stream", "--rpm", "60",
             "--expires", "2027-06-30T00:00:00Z"]  # fmt: skip
    assert gateway_cli.keys_list() == [*GATEWAY_PYTHON, "keys", "list", "--json", *CONFIG]
    assert gateway_cli.keys_create(client) == [*GATEWAY_PYTHON, "keys", "create", *scope, *CONFIG]
    assert gateway_cli.keys_update(client) == [*GATEWAY_PYTHON, "keys", "update", *scope, *CONFIG]
    assert gateway_cli.keys_rotate("team-a", 3600) == [
        *GATEWAY_PYTHON, "keys", "rotate", "team-a", "--overlap", "3600s", *CONFIG
    ]  # fmt: skip
    assert gateway_cli.keys_revoke("team-a") == [*GATEWAY_PYTHON, "keys", "revoke", "team-a", *CONFIG]


def test_keystore_listing_parses_and_diffs_against_the_config(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db", "p")
    ends = datetime(2027, 1, 1, tzinfo=UTC)
    store.create("team-a", Scopes(models=("claude-haiku-*",), rpm=60), ends.timestamp())
    store.rotate("team-a", 3600)
    store.create("gone", Scopes())
    store.revoke("gone")
    records = {r.name: r for r in gateway_cli.parse_client_list(json.dumps(store.list()))}
    a = records["team-a"]
    assert a.active and a.expires_at == ends and len(a.credentials) == 2
    assert [c.active for c in a.credentials] == [True, True] and a.credentials[0].not_after is not None
    assert records["gone"].state == "revoked" and not records["gone"].active
    same = Client(name="team-a", models=["claude-haiku-*"], rpm=60, expires=ends)
    assert a.differences(same) == []
    changed = Client(name="team-a", models=["claude-haiku-*"], rpm=120)
    assert a.differences(changed) == [("rpm", 60, 120), ("expires", "2027-01-01T00:00:00Z", None)]
    assert (
        gateway_cli.describe_differences(a.differences(changed))
        == "rpm 60 -> 120, expires 2027-01-01T00:00:00Z -> none"
    )


def test_expiring_clients(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.db", "p")
    now = datetime.now(UTC)
    store.create("soon", Scopes(), (now + timedelta(days=3)).timestamp())
    store.create("later", Scopes(), (now + timedelta(days=40)).timestamp())
    store.create("never", Scopes())
    store.create("revoked-soon", Scopes(), (now + timedelta(days=1)).timestamp())
    store.revoke("revoked-soon")
    records = gateway_cli.parse_client_list(json.dumps(store.list()))
    assert [c.name for c in expiring_clients(records, 14, now)] == ["soon"]
    assert [c.name for c in expiring_clients(records, 60, now)] == ["soon", "later"]


def test_smoke_client_is_scoped_to_what_the_smoke_test_calls() -> None:
    assert SMOKE_SCOPES.models == ["claude-haiku-4-5"]
    assert sorted(SMOKE_SCOPES.endpoints) == ["/v1/claudegate/pace", "/v1/messages", "/v1/messages/count_tokens", "/v1/models"]
    assert SMOKE_SCOPES.rpm is not None and SMOKE_SCOPES.rpm <= 30
    assert SMOKE_SCOPES.max_tokens == 64
    scopes = Scopes(models=tuple(SMOKE_SCOPES.models), endpoints=tuple(SMOKE_SCOPES.endpoints))
    assert not scopes.model_allowed("claude-opus-4-1")
    for path in ("/v1/messages/batches", "/v1/files", "/v1/models/claude-opus-4-1"):
        assert not scopes.endpoint_allowed(path), path


def test_smoke_client_rpm_is_per_host_because_a_fleet_shares_one_window() -> None:
    # With state: every host's smoke test counts in one rpm window; a roll and a rollback of two
    # hosts and a deploy within a minute used a fixed 30 up (pristine multihost run).
    assert smoke_scopes(1) == SMOKE_SCOPES
    assert smoke_scopes(3).rpm == 3 * (SMOKE_SCOPES.rpm or 0)
    assert smoke_scopes(3).model_copy(update={"rpm": SMOKE_SCOPES.rpm}) == SMOKE_SCOPES  # nothing else grows


def _line(**fields: object) -> str:
    base: dict[str, object] = {"time": "2026-11-30T10:00:00.000+00:00", "key_name": "team-a", "status": 200,
                               "model": "claude-haiku-4-5", "input_tokens": 0, "output_tokens": 0}  # fmt: skip
    return json.dumps({**base, **fields})


def test_usage_sums_per_client_per_day_with_cost() -> None:
    lines = [
        _line(input_tokens=1_000_000, output_tokens=100_000),
        _line(input_tokens=10, output_tokens=5, status=200),
        _line(model=None, status=401, key_name=None),  # refused before auth: nobody's usage
        _line(model=None, status=200),  # a models list: counted, costs nothing
        _line(time="2026-11-29T23:59:59+00:00", input_tokens=7, output_tokens=3, status=429),
        _line(key_name="team-b", model="claude-opus-4-1", input_tokens=1_000_000, output_tokens=0),
        _line(key_name="team-b", model="mystery-model", input_tokens=5, output_tokens=5),
    ]
    rows, skipped = summarize(lines)
    assert skipped == 0
    table = {(r.client, r.day): r for r in rows}
    a = table[("team-a", "2026-11-30")]
    assert (a.requests, a.errors, a.input_tokens, a.output_tokens) == (3, 0, 1_000_010, 100_005)
    assert a.cost_usd == pytest.approx((1_000_010 * 1.0 + 100_005 * 5.0) / 1e6)
    assert table[("team-a", "2026-11-29")].errors == 1
    b = table[("team-b", "2026-11-30")]
    assert b.cost_usd == pytest.approx(15.0) and b.unpriced_models == ("mystery-model",)
    assert [r.client for r in summarize(lines, client="team-b")[0]] == ["team-b"]
    assert {r.day for r in summarize(lines, since=date(2026, 11, 30))[0]} == {"2026-11-30"}


def test_usage_survives_hostile_audit_lines() -> None:
    # The audit log is written by the gateway from client-influenced data: a
    # broken line, odd types or absurd numbers must not break or skew the report.
    lines = [
        b"not json",
        b"[1, 2]",
        b'{"time": 5, "key_name": "team-a"}',
        _line(input_tokens=-50, output_tokens=True).encode(),
        _line(input_tokens="9999", output_tokens=1.5).encode(),
        _line(key_name=["team-a"]).encode(),
        _line(time="yesterday").encode(),
        b'{"time": "2026-11-30T10:00:00", "key_name": "team-a", "input_tokens": 4, "output_tokens": 2}',
    ]
    rows, skipped = summarize(lines)
    assert skipped == 2
    assert [(r.client, r.requests, r.input_tokens, r.output_tokens) for r in rows] == [("team-a", 3, 4, 2)]


def test_prices_have_a_date_and_match_families() -> None:
    assert date.fromisoformat(PRICES_AS_OF)
    assert price_for("claude-haiku-4-5") is not None and price_for("claude-haiku-4-5").output_per_mtok == 5.0  # type: ignore[union-attr]
    assert price_for("claude-opus-4-5-20251101").input_per_mtok == 5.0  # type: ignore[union-attr]
    assert price_for("claude-opus-4-1").input_per_mtok == 15.0  # type: ignore[union-attr]
    assert price_for("gpt-4") is None and price_for(None) is None


def test_durations_dates_and_client_specs_name_the_field() -> None:
    assert parse_duration("24h") == 86400 and parse_duration("0s") == 0
    for bad in ("24", "1 h", "-1h", "1w", "", "1h30m"):
        with pytest.raises(ConfigError, match="--overlap"):
            parse_duration(bad)
    with pytest.raises(ConfigError, match="--since"):
        parse_since("30/11/2026")
    with pytest.raises(ConfigError, match="name"):
        client_spec("bad name")
    with pytest.raises(ConfigError, match="rpm"):
        client_spec("ok", rpm=0)
    with pytest.raises(ConfigError, match="expires"):
        client_spec("ok", expires="next tuesday")
    assert client_spec("ok", models=None, rpm=5).models == ["*"]


def test_cli_refuses_bad_input_before_connecting(tmp_path: Path) -> None:
    # The config names a closed loopback port: each refusal must come before any connection (exit 2, not 3).
    cfg = tmp_path / "deploy.yaml"
    key = tmp_path / "key"
    key.write_text("sk-ant-api03-" + "k" * 40 + "\n")
    key.chmod(0o600)
    cfg.write_text(f"target: {{host: 127.0.0.1, port: 1, user: deploy, known_hosts: {tmp_path / 'kh'}}}\n"
                   f"domain: gw.example.com\ntls: {{mode: internal-ca}}\nupstream: {{api_key_file: {key}}}\n")  # fmt: skip
    r = runner.invoke(app, ["keys", "rotate", "team-a", "--config", str(cfg), "--overlap", "1 day"])
    assert r.exit_code == 2 and "--overlap" in r.stderr and "24h" in r.stderr
    r = runner.invoke(app, ["keys", "create", "bad name", "--config", str(cfg)])
    assert r.exit_code == 2 and "name" in r.stderr
    for action in ("rotate", "revoke"):
        r = runner.invoke(app, ["keys", action, "--config", str(cfg), "--", "--models"])
        assert r.exit_code == 2 and "is not a client name" in r.stderr, r.output
    r = runner.invoke(app, ["usage", "--config", str(cfg), "--json", "--csv"])
    assert r.exit_code == 2 and "choose one" in r.stderr
    r = runner.invoke(app, ["usage", "--config", str(cfg), "--since", "last week"])
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.stderr


def test_usage_never_prints_a_clients_control_characters() -> None:
    # A key scoped to any model can put any string in the audit's model field;
    # the operator's terminal must not receive escape sequences from it.
    from claudegate.usage import UsageReport

    evil = "\x1b]0;owned\x07\x1b[2J" + "x" * 5000
    many = [_line(model=f"m-{i}", input_tokens=1) for i in range(50)]
    rows, _ = summarize([_line(model=evil, input_tokens=1, output_tokens=1), *many])
    text = UsageReport(tuple(rows)).text()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned" in text
    assert max(len(line) for line in text.splitlines()) < 1200
    (row,) = rows
    assert len(row.unpriced_models) == 11 and "(more)" in row.unpriced_models


def test_refresh_stamp_moves_every_tag_and_nothing_else(tmp_path: Path) -> None:
    from claudegate.deploy.build_contexts import gateway_context, nginx_context, with_refresh
    from claudegate.deploy.docker_cli import build_image
    from claudegate.deploy.layout import HostLayout
    from claudegate.deploy.release import build_release, parse_manifest
    from tests.deploy.support import write_config, write_secret

    key = write_secret(tmp_path / "k", "sk-ant-api03-" + "u" * 40)
    cfg = write_config(tmp_path, {"target": {"host": "local"}, "domain": "gw.example.com",
                                  "tls": {"mode": "internal-ca"}, "upstream": {"api_key_file": str(key)},
                                  "state_dir": str(tmp_path / "state")})  # fmt: skip
    assert with_refresh(gateway_context(), "") == gateway_context()  # no stamp: earlier tags stay
    plain = build_release(cfg, HostLayout(), key_fingerprint="f")
    fresh = build_release(cfg, HostLayout(), key_fingerprint="f", refresh="20261130T140000Z")
    assert b"images_refresh" not in plain.files["release.json"]  # earlier release ids unchanged
    assert fresh.rid != plain.rid and fresh.gateway_id != plain.gateway_id
    assert all(fresh.images[n] != plain.images[n] for n in ("gateway", "nginx"))
    assert {n: t.split(":")[0] for n, t in fresh.images.items()} == {
        n: t.split(":")[0] for n, t in plain.images.items()
    }
    assert fresh.files["nginx/nginx.conf"] == plain.files["nginx/nginx.conf"].replace(
        plain.gateway_id.encode(), fresh.gateway_id.encode()
    )
    assert parse_manifest(fresh.rid, fresh.files["release.json"]).images_refresh == "20261130T140000Z"
    assert with_refresh(nginx_context(), "s").tag("b") == with_refresh(nginx_context(), "s").tag("b")
    argv = build_image("t", base_image="b", no_cache=True)
    assert argv[:5] == ["docker", "build", "--pull=false", "--force-rm", "--no-cache"]
    assert "--no-cache" not in build_image("t", base_image="b")


def test_usage_reads_rotated_audit_files_oldest_first_and_nothing_else() -> None:
    from claudegate.usage import _audit_files

    listing = "audit.jsonl\naudit.jsonl.2.gz\naudit.jsonl.1\nnginx.log\naudit.jsonl.bak\n.audit.jsonl.swp\naudit.jsonl.10\n"
    assert _audit_files(listing) == ["audit.jsonl.10", "audit.jsonl.2.gz", "audit.jsonl.1", "audit.jsonl"]
