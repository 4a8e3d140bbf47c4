"""End to end: ACME certificates that renew themselves on the host, against pebble.

One fresh server (sshd only) for the module; the tests build on each other
in file order:

1. pebble issuing 6-day certificates (Let's Encrypt's short-lived profile):
   a DNS record pointing elsewhere, then a firewalled port 80, each fail the
   deploy within seconds, naming the record to set, and pebble receives no
   order; with DNS fixed the deploy passes, ``renew`` finds nothing due,
   and the host's renewer reports "not due" with a check interval of hours.
2. A new pebble issuing 2-minute certificates (the operator moved CA): the
   deploy passes (a 30-day rule would call it due at once and fail), and
   then -- with no command run -- the host's renewer renews at a third of
   the lifetime left, nginx reloads gracefully and serves the new serial,
   while an SSE stream opened before the reload runs to its end.
   ``status`` shows the served certificate and the renewal's result.
3. dockerd stops and starts again (what a reboot does): nginx, the gateway
   and the renewer come back with no command run; a renewer whose restore
   start failed (nginx not yet running) is started by the host hook.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from claudegate.config import DeployConfig
from claudegate.deploy import host_cli, renewer_restore
from claudegate.deploy.api import connector_for, deploy, renew, status
from claudegate.deploy.cert_lifetime import renewal_point
from claudegate.deploy.cert_status import fetch_served
from claudegate.deploy.steps.clients import read_saved_key
from claudegate.errors import DeployFailed
from tests.deploy.pebble import Pebble, run_pebble
from tests.deploy.support import (
    DOMAIN,
    fresh_server_and_fake,
    fresh_server_doc,
    image_leftovers,
    sdk_client,
    write_config,
)
from tests.support.fake_anthropic import FakeProcess
from tests.support.fresh_server import FreshServer, docker_client

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

UPSTREAM_KEY = "sk-ant-api03-acme-renewal-test-key"
SHORT_LIFETIME = 120  # seconds: due 80 s after issuance


@dataclass
class Env:
    server: FreshServer
    fake: FakeProcess
    dir: Path
    bridge: str  # this machine's address on the server's network
    base: dict[str, Any]
    keys: dict[str, str]

    def cfg(self, pebble: Pebble, name: str) -> DeployConfig:
        tls = {"mode": "acme", "email": "ops@example.com", "acme_directory": pebble.directory}
        return write_config(self.dir, {**self.base, "tls": tls}, name)

    def sh(self, script: str) -> str:
        _code, out = self.server.exec(["sh", "-c", script])
        return out.decode(errors="replace")

    def served(self) -> x509.Certificate:
        cert = fetch_served(self.server.ip, 443, DOMAIN)
        assert cert is not None, "nothing answers on the server's port 443"
        return cert


def _lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def _bridge_address(server: FreshServer) -> str:
    # The container's own view of its network: present on every Docker version
    # (the network's IPAM gateway is optional, and Debian's 20.10 leaves it out).
    attrs = docker_client().containers.get(server.container_id).attrs
    return str(attrs["NetworkSettings"]["Networks"][server.network]["Gateway"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("acme")
    with fresh_server_and_fake(directory, UPSTREAM_KEY, name_prefix="claudegate-acme", docker_installed=True) as (
        server,
        fake,
    ):
        bridge = _bridge_address(server)
        base = fresh_server_doc(server, directory, fake, UPSTREAM_KEY, clients=[{"name": "team-a"}],
                                upstream_address=bridge)  # fmt: skip
        yield Env(server, fake, directory, bridge, base, {})


@pytest.fixture
def use_pebble(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(pebble: Pebble) -> None:
        monkeypatch.setenv("CLAUDEGATE_ACME_CA_BUNDLE", str(pebble.api_ca))  # pebble's API certificate
        monkeypatch.setenv("CLAUDEGATE_ACME_RESOLVER", pebble.dns)  # the pre-check asks pebble's DNS
        monkeypatch.setenv("SSL_CERT_FILE", str(pebble.issuing_root))  # the smoke test verifies the chain

    return use


@pytest.fixture(scope="module")
def long_pebble(env: Env) -> Iterator[Pebble]:
    with run_pebble(
        env.dir / "pebble-6d",
        listen_ip=env.bridge,
        names_resolve_to=env.server.ip,
        validity_seconds=6 * 86400,
    ) as pebble:
        yield pebble


def _wait_for_renewer_report(env: Env, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = env.sh("cat /opt/claudegate/shared/letsencrypt/claudegate-renewal.json 2>/dev/null")
        if '"result"' in text and '"served"' in text:
            return text
        time.sleep(1)
    logs = env.sh("docker logs --tail 30 claudegate-certbot 2>&1; docker ps -a")
    raise AssertionError(f"the renewer wrote no report in {timeout:.0f} s:\n{logs}")


def test_a_wrong_dns_record_fails_fast_without_an_order(
    env: Env, long_pebble: Pebble, use_pebble: Any
) -> None:
    use_pebble(long_pebble)
    # The record points at another machine (this one, where port 80 is not this deploy's nginx).
    long_pebble.set_a_record(DOMAIN, env.bridge)
    cfg = env.cfg(long_pebble, "wrong-dns.yaml")
    with connector_for(cfg) as connector, pytest.raises(DeployFailed) as failed:
        deploy(cfg, connector)
    message = f"{failed.value} {failed.value.hint}"
    assert f"{DOMAIN} resolves to {env.bridge}" in message, message
    assert f"A record {DOMAIN} -> {env.server.ip}" in message, message  # the record to set
    assert "no certificate was ordered" in message
    assert long_pebble.orders() == 0
    # The probe token was removed again.
    assert env.sh("ls -A /opt/claudegate/shared/acme/.well-known/acme-challenge/").strip() == ""


def test_a_closed_port_80_fails_fast_without_an_order(env: Env, long_pebble: Pebble, use_pebble: Any) -> None:
    use_pebble(long_pebble)
    long_pebble.clear_a_record(DOMAIN)  # the record is right now ...
    # ... but a firewall drops port 80 on its way to nginx (as a cloud security group would).
    rule = "DOCKER-USER -p tcp --dport 80 -j REJECT --reject-with tcp-reset"
    assert env.sh(f"iptables -I {rule} && echo ok").strip() == "ok"
    try:
        cfg = env.cfg(long_pebble, "closed-80.yaml")
        started = time.monotonic()
        with connector_for(cfg) as connector, pytest.raises(DeployFailed) as failed:
            deploy(cfg, connector)
        took = time.monotonic() - started
    finally:
        env.sh(f"iptables -D {rule}")
    message = f"{failed.value} {failed.value.hint}"
    assert f"{DOMAIN} resolves to {env.server.ip}" in message, message
    assert "port 80 did not answer" in message and "open TCP port 80" in message, message
    assert long_pebble.orders() == 0
    assert took < 120, took  # nothing is rebuilt, and the check does not wait for a CA


def test_six_day_certificates_deploy_and_are_not_due(env: Env, long_pebble: Pebble, use_pebble: Any) -> None:
    use_pebble(long_pebble)
    cfg = env.cfg(long_pebble, "six-days.yaml")
    with connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    assert "acme" in result.changed_steps and "renewal" in result.changed_steps, result.plan_text()
    assert result.smoke is not None and result.smoke.ok, result.smoke.table()
    # The first (failed) deploy already issued team-a's key, and saved it.
    saved = read_saved_key(env.dir / "state" / "keys", "team-a")
    assert saved is not None
    env.keys["team-a"] = saved.reveal()
    served = env.served()
    assert "Pebble" in served.issuer.rfc4514_string()
    assert abs(_lifetime(served) - dt.timedelta(days=6)) <= dt.timedelta(seconds=2)  # pebble: validity - 1 s
    with connector_for(cfg) as connector:
        assert not renew(cfg, connector).changed  # due only when 2 days are left
    report = _wait_for_renewer_report(env)
    assert '"result": "ok"' in report and '"not due"' in report, report
    assert '"interval_seconds": 21600' in report, report  # 6 days / 24
    assert image_leftovers(env.server.exec, "claudegate-certbot") == ""  # the renewer's image
    with connector_for(cfg) as connector:
        again = deploy(cfg, connector)
    assert not again.changed, again.plan_text()


def test_short_lived_certificates_renew_on_the_host_without_dropping_a_stream(
    env: Env, long_pebble: Pebble, use_pebble: Any
) -> None:
    # The operator moves to another CA: certbot's state for the old one goes.
    env.sh("rm -rf /opt/claudegate/shared/letsencrypt/live /opt/claudegate/shared/letsencrypt/archive "
           "/opt/claudegate/shared/letsencrypt/renewal /opt/claudegate/shared/letsencrypt/accounts")  # fmt: skip
    with run_pebble(
        env.dir / "pebble-2m",
        listen_ip=env.bridge,
        names_resolve_to=env.server.ip,
        validity_seconds=SHORT_LIFETIME,
    ) as pebble:
        use_pebble(pebble)
        cfg = env.cfg(pebble, "two-minutes.yaml")
        with connector_for(cfg) as connector:
            result = deploy(cfg, connector)
        assert "acme" in result.changed_steps, result.plan_text()
        assert result.smoke is not None and result.smoke.ok, result.smoke.table()
        first = env.served()
        assert abs(_lifetime(first) - dt.timedelta(seconds=SHORT_LIFETIME)) <= dt.timedelta(seconds=2)
        orders_after_deploy = pebble.orders()

        # An SSE stream that is open when the renewer reloads nginx: ~1 event a second
        # from a few seconds before the renewal point until well after it.
        due = renewal_point(first)
        env.fake.control.config(event_delay=1.0)
        wait = (due - dt.datetime.now(dt.UTC)).total_seconds() - 8
        if wait > 0:
            time.sleep(wait)
        client = sdk_client(env.server.ip, 443, pebble.issuing_root, env.keys["team-a"])
        words: list[str] = []
        stream_error: list[BaseException] = []

        def consume() -> None:
            try:
                with client.messages.stream(
                    model="claude-haiku-4-5",
                    max_tokens=200,
                    messages=[{"role": "user", "content": "reply with 40 words"}],
                ) as stream:
                    words.extend(stream.get_final_text().split())
            except BaseException as exc:
                stream_error.append(exc)

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        try:
            # No command is run from here on: only the host's renewer can change the serial.
            deadline = time.monotonic() + SHORT_LIFETIME
            renewed = first
            while time.monotonic() < deadline and renewed.serial_number == first.serial_number:
                time.sleep(2)
                renewed = env.served()
            assert renewed.serial_number != first.serial_number, env.sh(
                "docker logs --tail 30 claudegate-certbot 2>&1"
            )
            assert reader.is_alive(), "the stream had ended before the reload: it proves nothing"
            reader.join(timeout=90)
        finally:
            env.fake.control.config(event_delay=0.02)
        assert not stream_error, stream_error
        assert len(words) == 40, words  # the whole reply arrived over the pre-reload connection
        assert pebble.orders() > orders_after_deploy
        assert renewed.not_valid_before_utc > first.not_valid_before_utc
        on_disk = x509.load_pem_x509_certificate(
            env.sh("cat /opt/claudegate/shared/tls/fullchain.pem").encode()
        )
        assert on_disk.serial_number == renewed.serial_number
        assert env.sh("stat -c '%a %U' /opt/claudegate/shared/tls/privkey.pem").strip() == "600 root"

        with connector_for(cfg) as connector:
            report = status(cfg, connector)
        assert report.served_certificate is not None
        assert f"serial {renewed.serial_number:x}" in report.served_certificate, report.text()
        assert report.renewal is not None and report.renewal["last_renewal"]["ok"], report.text()
        assert "nginx serves serial" in report.renewal["last_renewal"]["message"], report.text()
        assert "last renewal:" in report.text()


def test_the_renewer_comes_back_after_a_restart_of_the_host_docker(env: Env) -> None:
    """What a reboot does to the stack: dockerd stops everything and starts again.

    On a systemd host the docker step enabled docker.service, so boot starts
    dockerd; this server has no init beyond sshd, so the test starts dockerd
    the way the docker step does. Containers with a restart policy come back
    -- the renewer too, back in (re-created) nginx's namespaces.
    """
    before = env.sh("docker inspect -f '{{.State.StartedAt}}' claudegate-certbot").strip()
    gone = env.sh(
        "pid=$(cat /var/run/docker.pid); kill $pid; "
        "for i in $(seq 90); do kill -0 $pid 2>/dev/null || { echo gone; break; }; sleep 1; done"
    )
    assert gone.strip() == "gone"
    code, out = env.server.exec(host_cli.start_docker())
    assert code == 0, out
    deadline = time.monotonic() + 90
    states = ""
    while time.monotonic() < deadline:
        states = env.sh("docker ps --format '{{.Names}} {{.Status}}' 2>&1")
        running = {line.split()[0] for line in states.splitlines() if " Up " in f" {line}"}
        if {"claudegate-nginx", "claudegate-certbot"} <= running:
            break
        time.sleep(2)
    diagnosis = env.sh(
        "docker ps -a --format '{{.Names}} {{.Status}}'; docker logs --tail 8 claudegate-nginx 2>&1; "
        "docker logs --tail 8 claudegate-certbot 2>&1; grep -i -E 'error|fail|restart' /run/claudegate-dockerd.log | tail -n 25"
    )
    print(
        env.sh(
            "grep -i -E 'cannot join|failed to start|restart' /run/claudegate-dockerd.log | tail -n 20; docker ps -a --format '{{.Names}} {{.Status}}'"
        ),
    )
    assert "claudegate-certbot" in states and "claudegate-nginx" in states, diagnosis
    after = env.sh("docker inspect -f '{{.State.StartedAt}}' claudegate-certbot").strip()
    assert after != before
    # It works in nginx's new namespaces: its next round sees what nginx serves.
    deadline = time.monotonic() + 60
    report = ""
    while time.monotonic() < deadline:
        report = env.sh("cat /opt/claudegate/shared/letsencrypt/claudegate-renewal.json")
        if '"served": {' in report and after[:19] <= _checked_at(report):
            break
        time.sleep(2)
    assert '"served": {' in report and after[:19] <= _checked_at(report), (report, after)
    assert env.served().serial_number  # nginx serves again
    # ... and proxies to the gateway, which answers for team-a's key (the fake upstream's reply).
    # The gateway boots alongside nginx (a slow machine saw it still "health: starting"
    # when the renewer's round was done), so nginx may answer 502 for a few seconds.
    deadline = time.monotonic() + 90
    statuses: list[int] = []
    while time.monotonic() < deadline:
        statuses.append(_message_status(env))
        if statuses[-1] == 200:
            break
        time.sleep(1)
    assert statuses[-1] == 200, (statuses[-5:], env.sh(
        "docker ps -a --format '{{.Names}} {{.Status}}'; docker logs --tail 20 claudegate-nginx 2>&1;"
        " for c in $(docker ps -a --format '{{.Names}}' | grep gateway); do docker logs --tail 20 $c 2>&1; done"
    ))


def _message_status(env: Env) -> int:
    """A Messages call through nginx and the gateway; TLS unverified (which CA issued it is not the point)."""
    body = json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    )
    request = (
        f"POST /v1/messages HTTP/1.1\r\nHost: {DOMAIN}\r\nx-api-key: {env.keys['team-a']}\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}"
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((env.server.ip, 443), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(request.encode())
        status_line = tls.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def _checked_at(report: str) -> str:
    return str(json.loads(report).get("checked_at", ""))


def test_a_renewer_whose_restore_start_failed_is_started_by_the_host_hook(env: Env) -> None:
    """Docker's restore may start the renewer before nginx (no ordering for ``--network container:``).

    That start fails for good inside Docker; the hook the deploy installed
    (run by docker.service's drop-in, or by the deploy's start of dockerd)
    starts it once nginx runs. Reproduced deterministically: the renewer is
    started while nginx is stopped (Docker records the error), nginx comes
    back, the hook runs.
    """
    hook = renewer_restore.HOOK_PATH
    assert env.sh(f"test -x {hook} && echo ok").strip() == "ok"
    failed = env.sh(
        "docker stop -t 5 claudegate-certbot claudegate-nginx >/dev/null; "
        "docker start claudegate-certbot 2>&1; docker inspect -f '{{.State.Error}}' claudegate-certbot"
    )
    assert "non running container" in failed, failed
    env.sh("docker start claudegate-nginx >/dev/null")
    code, out = env.server.exec(
        ["sh", "-c", f"timeout 90 {hook}; docker inspect -f '{{{{.State.Running}}}}' claudegate-certbot"]
    )
    assert code == 0 and out.decode().strip().endswith("true"), out
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fetch_served(env.server.ip, 443, DOMAIN) is None:
        time.sleep(1)
    assert env.served().serial_number
    # A renewer an operator stopped has no start error: the hook does not start it.
    env.sh("docker stop -t 5 claudegate-certbot >/dev/null")
    code, out = env.server.exec(
        ["sh", "-c", f"timeout 90 {hook}; docker inspect -f '{{{{.State.Running}}}}' claudegate-certbot"]
    )
    assert code == 0 and out.decode().strip().endswith("false"), out
    env.sh("docker start claudegate-certbot >/dev/null")
