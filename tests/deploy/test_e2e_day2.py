"""End to end, day 2: keys, clients that converge, the smoke client, usage -- on a fresh server over SSH.

The stack the end-to-end modules share (tests/deploy/shared_stack.py),
deployed once; these tests run after the audit's (which leave it as
deployed) and build on each other in file order. Every `claudegate` command runs through the real
CLI (typer's runner, the same code path as the console script) against the
deployed stack, and every key is tried with the official SDK through the
deployed nginx:

fresh deploy (narrow smoke client) -> keys create/list/rotate --overlap/revoke
-> status warns of a key about to expire -> an rpm change applied in place
(old key works, new rpm enforced) -> a removed client is reported, revoked
only with --prune -> the smoke key is replaced by every deploy -> usage sums
what the tests sent -> backup, then restore onto a second server: through the
Session with a canned interaction (a no restores nothing, a yes restores),
then through the CLI with --yes.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
from datetime import UTC, datetime, timedelta

import anthropic
import pytest
import yaml
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.control.interaction import ConsentQuestion
from claudegate.deploy.api import connector_for, deploy, plan
from claudegate.deploy.steps.clients import SMOKE_CLIENT, SMOKE_SCOPES
from claudegate.errors import Declined
from claudegate.keys import list_clients
from claudegate.redact import Secret
from claudegate.session import ScriptedInteraction, Session
from tests.deploy.shared_stack import CANARY, Stack, stack_clients
from tests.deploy.support import sdk_client, timer, write_config
from tests.support.fresh_server import FreshServer, start_fresh_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

runner = CliRunner()


def _default_gateway(server: FreshServer) -> str:
    """The fresh server's default route, from /proc (no optional field of Docker's network info)."""
    _code, out = server.exec(["cat", "/proc/net/route"])
    for line in out.decode().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    raise AssertionError(f"no default route in the fresh server:\n{out.decode()}")


#: The day-2 tests' client lists: the stack's own (deploy.yaml), then an rpm change, then one removed.
_clients = stack_clients


@pytest.fixture
def env(shared_stack: Stack) -> Stack:
    """The shared stack (tests/deploy/shared_stack.py); these tests build on each other in file order."""
    return shared_stack


def test_the_smoke_client_is_narrow_and_its_key_saved_0600(env: Stack) -> None:
    _path, cfg = env.write()
    with connector_for(cfg) as connector:
        records = {c.name: c for c in list_clients(cfg, connector)}
    smoke = records[SMOKE_CLIENT]
    assert smoke.active and smoke.differences(SMOKE_SCOPES) == []
    saved = env.dir / "state" / "keys" / f"{SMOKE_CLIENT}.key"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert (saved.parent.stat().st_mode & 0o777) == 0o700
    key = saved.read_text().strip()
    # What the smoke test calls works; nothing else does.
    client = env.sdk(key)
    assert client.models.list().data
    with pytest.raises(anthropic.PermissionDeniedError):
        env.ask(key, model="claude-opus-4-1")
    with pytest.raises(
        (anthropic.BadRequestError, anthropic.PermissionDeniedError)
    ):  # above its max_tokens cap
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=4096, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises((anthropic.PermissionDeniedError, anthropic.NotFoundError)):
        client.messages.batches.list()


def test_keys_create_list_rotate_with_overlap_and_revoke(env: Stack) -> None:
    expires = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = env.cli("keys", "create", "ci", "--model", "claude-haiku-*", "--rpm", "100", "--expires", expires)
    assert r.exit_code == 0, r.output
    first = r.stdout.strip().splitlines()[-1]
    assert first.startswith("cgk_") and "shown once" in r.stderr
    assert (env.dir / "state" / "keys" / "ci.key").read_text().strip() == first
    assert env.ask(first).content  # 200 through nginx, with the official SDK

    r = env.cli("keys", "list", "--json")
    assert r.exit_code == 0, r.output
    listed = {c["name"]: c for c in json.loads(r.stdout)}
    assert set(listed) >= {"ci", "team-a", "old-team", SMOKE_CLIENT}
    assert listed["ci"]["expires_at"] == expires and listed["ci"]["scopes"]["rpm"] == 100
    assert first not in r.stdout and first.split("_", 2)[2] not in r.stdout
    r = env.cli("keys", "list")
    assert r.exit_code == 0 and "ci" in r.stdout and "(in 5d)" in r.stdout and "rpm=100" in r.stdout

    # status warns: ci stops working within 14 days
    r = env.cli("status")
    assert r.exit_code == 0, r.output
    assert "ci" in r.stdout and "expires" in r.stdout
    r = env.cli("status", "--json")
    warnings = json.loads(r.stdout)["client_expiry"]
    assert [w["name"] for w in warnings] == ["ci"]

    r = env.cli("keys", "rotate", "ci", "--overlap", "1h", "--json")
    assert r.exit_code == 0, r.output
    rotated = json.loads(r.stdout)
    second = rotated["key"]
    assert second != first and rotated["old_keys_end"]
    assert env.ask(second).content
    assert env.ask(first).content  # the old key works during the overlap
    r = env.cli("keys", "list", "--json")
    creds = next(c for c in json.loads(r.stdout) if c["name"] == "ci")["credentials"]
    assert [c["active"] for c in creds] == [True, True] and creds[0]["not_after"] is not None

    r = env.cli("keys", "revoke", "ci")
    assert r.exit_code == 0, r.output
    for key in (first, second):
        with pytest.raises(anthropic.AuthenticationError):
            env.ask(key)

    r = env.cli("keys", "revoke", "nobody")
    assert r.exit_code == 1 and "no client named 'nobody'" in r.stderr
    r = env.cli("keys", "rotate", "ci")
    assert r.exit_code == 1 and "revoked" in r.stderr


def test_an_rpm_change_is_applied_in_place_and_the_key_keeps_working(env: Stack) -> None:
    old_key = env.keys["team-a"]
    path, cfg = env.write("rpm.yaml", clients=_clients(team_a_rpm=3))
    with connector_for(cfg) as connector:
        preview = plan(cfg, connector)
    text = preview.plan_text()
    assert "update client team-a in place (rpm 600 -> 3)" in text
    assert "-rpm: 600" in text and "+rpm: 3" in text
    assert preview.changed_steps == ["clients"]

    r = env.cli("deploy", config=path)
    assert r.exit_code == 0, r.output
    assert "new key" not in r.stdout
    client = env.sdk(old_key)
    for _ in range(3):
        assert client.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ).content
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert "3 requests per minute" in str(caught.value)
    # Converged: the next plan has nothing to do for clients.
    with connector_for(cfg) as connector:
        assert "clients" not in plan(cfg, connector).changed_steps


def test_a_removed_client_is_reported_and_revoked_only_with_prune(env: Stack) -> None:
    old_key = env.keys["old-team"]
    path, cfg = env.write("pruned.yaml", clients=_clients(team_a_rpm=3, with_old=False))
    r = env.cli("plan", config=path)
    assert r.exit_code == 0, r.output
    assert "client old-team is in the keystore but not in deploy.yaml" in r.stderr
    assert "--prune" in r.stderr
    r = env.cli("deploy", config=path)
    assert r.exit_code == 0, r.output
    assert env.ask(old_key).content  # still works: nothing is revoked without --prune

    r = env.cli("plan", "--prune", config=path)
    assert r.exit_code == 0 and "revoke client old-team" in r.stdout + r.stderr
    r = runner.invoke(app, ["deploy", "--prune", "--config", str(path)])
    assert r.exit_code == 0, r.output
    with pytest.raises(anthropic.AuthenticationError):
        env.ask(old_key)
    with connector_for(cfg) as connector:
        states = {c.name: c.state for c in list_clients(cfg, connector)}
    assert (
        states["old-team"] == "revoked" and states["team-a"] == "active" and states[SMOKE_CLIENT] == "active"
    )


def test_every_deploy_replaces_the_smoke_key(env: Stack) -> None:
    saved = env.dir / "state" / "keys" / f"{SMOKE_CLIENT}.key"
    before = saved.read_text().strip()
    path, cfg = env.write("pruned.yaml", clients=_clients(team_a_rpm=3, with_old=False))
    with connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    assert not result.changed, result.plan_text()  # a new smoke key is not a change to the config's state
    assert result.smoke is not None and result.smoke.ok
    after = saved.read_text().strip()
    assert after != before and saved.stat().st_mode & 0o777 == 0o600
    with pytest.raises(anthropic.AuthenticationError):
        env.sdk(before).models.list()
    assert env.sdk(after).models.list().data
    r = env.cli("smoke-test", config=path)  # the CLI's smoke test uses the saved key
    assert r.exit_code == 0, r.output


def test_usage_sums_requests_and_tokens_per_client_per_day(env: Stack) -> None:
    r = env.cli("usage", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    rows = {(row["client"], row["day"]): row for row in report["rows"]}
    today = datetime.now(UTC).date().isoformat()
    team_a = rows[("team-a", today)]
    # 3 answered, 1 refused by the new rpm (and whatever the fixture's deploy sent: nothing).
    assert team_a["requests"] == 4 and team_a["errors"] == 1
    assert team_a["input_tokens"] > 0 and team_a["output_tokens"] > 0
    assert team_a["cost_usd"] > 0 and report["prices_as_of"]
    ci = rows[("ci", today)]
    # Three answered; the two refused after the revocation are nobody's (no client authenticated).
    assert ci["requests"] == 3 and ci["errors"] == 0
    assert (SMOKE_CLIENT, today) in rows

    r = env.cli("usage", "--client", "team-a", "--csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "client,day,requests,errors,input_tokens,output_tokens,cost_usd"
    assert len(lines) == 2 and lines[1].startswith(f"team-a,{today},4,1,")

    r = env.cli("usage")
    assert r.exit_code == 0 and "TOTAL" in r.stdout and "prices as of" in r.stdout

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    r = env.cli("usage", "--since", tomorrow, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"] == []
    # The upstream key never shows up in what usage printed.
    assert CANARY not in r.stdout + r.stderr


def test_refresh_rebuilds_the_images_through_the_smoke_tested_switch(env: Stack) -> None:
    path, cfg = env.write("pruned.yaml", clients=_clients(team_a_rpm=3, with_old=False))
    r = env.cli("status", "--json", config=path)
    before = json.loads(r.stdout)
    assert before["images"]["same_as_this_claudegate"] is True and before["images"]["refreshed"] == ""
    assert set(before["images"]["built"]) == {"gateway", "nginx"}

    r = env.cli("deploy", "--refresh", config=path)
    assert r.exit_code == 0, r.output
    after = json.loads(env.cli("status", "--json", config=path).stdout)
    assert after["current_release"] != before["current_release"]
    assert after["previous_release"] == before["current_release"]  # the old release kept for rollback
    assert after["images"]["refreshed"] and after["images"]["same_as_this_claudegate"] is True
    for name in ("gateway", "nginx"):
        # Built anew: with the layer cache, the same sources would give the same image and time.
        assert after["images"]["built"][name] > before["images"]["built"][name]
    smoke_key = (env.dir / "state" / "keys" / f"{SMOKE_CLIENT}.key").read_text().strip()
    assert env.sdk(smoke_key).models.list().data  # the keystore came along to the new gateway

    # A plain deploy keeps the refreshed images: nothing to do.
    with connector_for(cfg) as connector:
        again = deploy(cfg, connector)
    assert not again.changed, again.plan_text()
    assert again.release_id == after["current_release"]


def test_config_on_disk_is_not_rewritten(env: Stack) -> None:
    # keys and usage only read deploy.yaml.
    doc = yaml.safe_load((env.dir / "deploy.yaml").read_text())
    assert doc["clients"] == _clients()


def test_backup_then_restore_on_a_second_fresh_server_keeps_old_keys_working(
    env: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CG_BACKUP_PASS", "a passphrase for the test " + secrets.token_hex(8))
    out = env.dir / "gw.cgbackup"
    path, _cfg = env.write("pruned.yaml", clients=_clients(team_a_rpm=3, with_old=False))
    r = env.cli("backup", "--out", str(out), "--passphrase-env", "CG_BACKUP_PASS", config=path)
    assert r.exit_code == 0, r.output
    assert "encrypted" in r.stdout and out.stat().st_mode & 0o777 == 0o600
    sealed = out.read_bytes()
    pepper = env.server.exec(["cat", "/opt/claudegate/shared/secrets/key_pepper"])[1].strip()
    assert pepper and pepper not in sealed and b"team-a" not in sealed and CANARY.encode() not in sealed
    r = env.cli("backup", "--out", str(out), config=path)
    assert r.exit_code == 2 and "exists" in r.stderr  # never overwritten by accident

    with start_fresh_server(env.dir / "server2", name_prefix="claudegate-fresh2", docker_installed=True) as second:
        doc = {
            **env.base,
            # Its own known_hosts: bridges come and go during the run and a new one may reuse the subnet
            # of one an earlier test's extra server was on, so this address may be in the stack's file
            # with that other server's key (pristine run 13: HOST KEY CHANGED, rightly).
            "target": {**env.base["target"], "host": second.ip, "ssh_key": str(second.key_path),
                       "host_key_fingerprint": second.host_key_fingerprint,
                       "known_hosts": str(env.dir / "server2" / "known_hosts")},
            "upstream": {**env.base["upstream"],
                         "base_url": f"http://{_default_gateway(second)}:{env.fake.url.rsplit(':', 1)[1]}"},
            "clients": _clients(team_a_rpm=3, with_old=False),
        }  # fmt: skip
        cfg2 = write_config(env.dir, doc, "second.yaml")
        path2 = env.dir / "second.yaml"
        with timer() as took, connector_for(cfg2) as connector:
            result = deploy(cfg2, connector)
        print(f"\nday2 second fresh deploy: {took['seconds']:.1f}s")
        assert result.smoke is not None and result.smoke.ok
        fresh_team_a = result.new_client_keys["team-a"].reveal()  # the new server's own, before the restore

        def second_sdk(key: str) -> anthropic.Anthropic:
            return sdk_client(second.ip, 443, env.dir / "state" / "ca.pem", key)

        old_key = env.keys["team-a"]
        with pytest.raises(anthropic.AuthenticationError):
            second_sdk(old_key).models.list()

        monkeypatch.setenv("CG_WRONG_PASS", "not the passphrase at all")
        r = env.cli("restore", "--from", str(out), "--passphrase-env", "CG_WRONG_PASS", "--yes", config=path2)
        assert r.exit_code == 1 and "wrong passphrase" in r.stderr, r.output

        # Restore asks through the session's interaction: a no restores nothing (the new server's key still works).
        passphrase = Secret(os.environ["CG_BACKUP_PASS"])
        refusing = ScriptedInteraction(consent_answers=False)
        with Session(cfg2, refusing) as session, pytest.raises(Declined, match="nothing was restored"):
            session.restore(out, passphrase=passphrase)
        assert [q.topic for q in refusing.asked if isinstance(q, ConsentQuestion)] == ["restore-backup"]
        second_sdk(fresh_team_a).models.list()
        with pytest.raises(anthropic.AuthenticationError):
            second_sdk(old_key).models.list()

        # A host account holding the gateway's uid owns the data directory: it
        # swaps keys.db for a symlink to a directory of root's. Root's restore
        # must replace the link, never write through it.
        planted = second.exec(["sh", "-c", "mkdir -p /root/victim && cd /opt/claudegate/shared/data && "
                               "setpriv --reuid=10001 --regid=10001 --clear-groups "
                               "sh -c 'rm -f keys.db && ln -s /root/victim keys.db'"])  # fmt: skip
        assert planted[0] == 0, planted
        accepting = ScriptedInteraction(consent_answers={"restore-backup": True})
        with Session(cfg2, accepting) as session:
            restored = session.restore(out, passphrase=passphrase)
        assert "team-a" in restored.clients and restored.source_domain == "gw.test"
        assert [q.topic for q in accepting.asked if isinstance(q, ConsentQuestion)] == ["restore-backup"]
        # The restored pepper is root's and the secrets group's, as a deploy makes it,
        # never the image's uid 10001 (which a host account could hold).
        stat = second.exec(["stat", "-c", "%a %u %G", "/opt/claudegate/shared/secrets/key_pepper"])[1].split()
        assert stat[:2] == [b"640", b"0"] and stat[2] != b"10001", stat
        assert second.exec(["ls", "-A", "/root/victim"])[1] == b""  # nothing written through the link
        kind = second.exec(["stat", "-c", "%F %u", "/opt/claudegate/shared/data/keys.db"])[1].strip()
        assert kind == b"regular file 10001", kind
        reply = second_sdk(old_key).messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.content  # 200: the old server's key works on the new one
        for gone in (fresh_team_a, env.keys["old-team"]):  # the new server's own key; a revoked one
            with pytest.raises(anthropic.AuthenticationError):
                second_sdk(gone).models.list()
        # The CLI answers the same question with --yes (a second restore of the same file changes nothing).
        r = env.cli(
            "restore", "--from", str(out), "--passphrase-env", "CG_BACKUP_PASS", "--yes", config=path2
        )
        assert r.exit_code == 0, r.output
        assert "team-a" in r.stdout
        second_sdk(old_key).models.list()
        # A deploy after the restore converges (new smoke key) and passes its smoke test.
        r = env.cli("deploy", config=path2)
        assert r.exit_code == 0, r.output
