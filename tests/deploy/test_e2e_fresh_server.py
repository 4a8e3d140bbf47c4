"""End to end: deploys onto a "fresh server" container (sshd only, no Docker) over SSH.

One server is shared by the whole module and the tests build on each other,
in file order: wrong host key (nothing changes) -> plan on the fresh host
(nothing changes) -> fresh deploy to a passing smoke test -> "no changes" ->
plan with diffs (nothing changes) -> interrupted deploys that resume -> the
lock -> a release whose gateway cannot start (old one keeps serving, a client
sends requests throughout) -> a release that fails its smoke test (switched
back) -> rollback -> the canary key is nowhere it should not be -> an ACME
certificate from pebble -> uninstall.

The upstream is the fake Anthropic API, reached by the deployed gateway
through the fresh server's NAT; the Anthropic key is a canary value.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import claudegate.deploy.release as release_module
from claudegate.config import DeployConfig
from claudegate.connectors import SSHConnector
from claudegate.control.progress import StepEvent
from claudegate.deploy.api import connector_for, deploy, plan, renew, rollback, status, uninstall
from claudegate.errors import ConnectionFailed, DeployFailed, HostKeyChanged
from tests.deploy.pebble import run_pebble
from tests.deploy.support import (
    DROP_SSH_SCRIPT,
    Background,
    fresh_server_and_fake,
    fresh_server_doc,
    host_snapshot,
    image_leftovers,
    sdk_client,
    timer,
    write_config,
)
from tests.support.fake_anthropic import FakeProcess
from tests.support.fresh_server import BASE_IMAGE, FreshServer, docker_client, generate_ed25519

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CANARY = "sk-ant-api03-CANARY-" + secrets.token_hex(20)
TIMINGS: dict[str, float] = {}


@dataclass
class Env:
    server: FreshServer
    fake: FakeProcess
    dir: Path
    upstream_url: str
    base: dict[str, Any]

    def doc(self, **sections: Any) -> dict[str, Any]:
        doc = {key: (dict(value) if isinstance(value, dict) else value) for key, value in self.base.items()}
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key].update(value)
            else:
                doc[key] = value
        return doc

    def cfg(self, name: str = "deploy.yaml", **sections: Any) -> DeployConfig:
        return write_config(self.dir, self.doc(**sections), name)

    def exec(self, argv: list[str]) -> tuple[int, bytes]:
        return self.server.exec(argv)

    def sh(self, script: str) -> str:
        _code, out = self.exec(["sh", "-c", script])
        return out.decode(errors="replace")

    def snapshot(self) -> str:
        return host_snapshot(self.exec)

    def current(self) -> str:
        return self.sh("readlink /opt/claudegate/releases/current").strip()

    def client(self, key: str) -> Any:
        # Each deploy's smoke test ends with a burst that fills this machine's
        # per-address bucket; at 50 r/s it drains in under half a second.
        time.sleep(0.5)
        return sdk_client(self.server.ip, 443, self.dir / "state" / "ca.pem", key)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("e2e")
    with fresh_server_and_fake(directory, CANARY) as (server, fake):
        try:
            base = fresh_server_doc(server, directory, fake, CANARY, clients=[{"name": "team-a"}])
            yield Env(server, fake, directory, base["upstream"]["base_url"], base)
        finally:
            if TIMINGS:
                print("\ndeploy timings:", {k: round(v, 1) for k, v in TIMINGS.items()})


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    """Client keys issued by the fresh deploy, for later tests."""
    return {}


def test_wrong_host_key_is_refused_and_nothing_changes(env: Env) -> None:
    impostor = generate_ed25519("impostor")
    known = env.dir / "impostor_known_hosts"
    key_type, blob = impostor.public_line.split()[:2]
    known.write_text(f"{env.server.ip} {key_type} {blob}\n")
    target = {k: v for k, v in env.base["target"].items() if k != "host_key_fingerprint"}
    cfg = env.cfg("wrong-key.yaml", target={**target, "known_hosts": str(known)})
    before = env.snapshot()
    connector = connector_for(cfg)  # connects on the first command: the deploy's connect step
    with pytest.raises(HostKeyChanged):
        deploy(cfg, connector)
    connector.close()
    assert env.snapshot() == before
    assert env.sh("test -e /opt/claudegate && echo present") == ""


def test_plan_on_a_fresh_host_changes_nothing(env: Env) -> None:
    cfg = env.cfg()
    before = env.snapshot()
    with connector_for(cfg) as connector:
        result = plan(cfg, connector)
    assert env.snapshot() == before
    text = result.plan_text()
    assert result.dry_run and result.changed
    assert "install docker.io from the distribution's packages" in text
    assert "start nginx on release" in text
    assert {"docker", "layout", "secrets", "tls", "release", "images", "gateway", "switch"} <= set(
        result.changed_steps
    )
    assert "+client_max_body_size 32m;" in text  # new files are diffed against nothing
    assert CANARY not in text


def test_fresh_deploy_passes_the_smoke_test_and_serves_the_sdk(env: Env, keys: dict[str, str]) -> None:
    cfg = env.cfg()
    events: list[StepEvent] = []
    stamps: list[float] = []

    def record(event: StepEvent) -> None:
        stamps.append(time.monotonic())
        events.append(event)

    with timer() as took, connector_for(cfg) as connector:
        result = deploy(cfg, connector, reporter=record)
    TIMINGS["fresh deploy"] = took["seconds"]
    assert result.smoke is not None and result.smoke.ok, result.smoke.table() if result.smoke else None
    assert [e.step for e in events if e.kind == "start"][:3] == ["connect", "lock", "docker"]
    # Never silent for more than 5 s, whatever the step does (heartbeats fill the quiet spells).
    gaps = [(b - a, e.step) for a, b, e in zip(stamps, stamps[1:], events[1:], strict=False)]
    assert max(gaps)[0] <= 5.0, max(gaps)
    # This machine has a Docker engine of the host's architecture and the base image, so the
    # default (images.transfer: auto) builds here and sends the images in one save | load stream;
    # on this host without Docker it starts while the Docker step installs it (images sent ahead).
    docker_notes = [e.message for e in events if e.kind == "note" and e.step == "docker"]
    assert any(n.startswith("building claudegate/gateway:") and "while Docker is installed" in n
               for n in docker_notes), docker_notes  # fmt: skip
    planned = next(e.changes for e in events if e.kind == "plan" and e.step == "images")
    assert any("on the host: built on this machine and sent while Docker was installed (auto:" in c
               for c in planned), planned  # fmt: skip
    assert not any("base image" in c for c in planned), planned  # the loaded images carry their base
    # What the thread did is reported: built (or already built) here, and how many bytes went over.
    ahead = [e.message for e in events if e.kind == "note" and e.message.startswith("images sent ahead: ")]
    assert len(ahead) == 1, ahead
    assert "gateway" in ahead[0] and "nginx" in ahead[0], ahead
    assert " here in " in ahead[0] or " already built on this machine" in ahead[0], ahead
    sent_mb = int(ahead[0].split(" MB ")[0].rsplit(" ", 1)[1])
    # Both images and their base layers, in one stream; what runs and nothing else: 243 MB when the
    # images stopped carrying apt's download cache, the wheels and pip (452 MB before).
    assert 100 < sent_mb < 330, ahead
    assert image_leftovers(env.server.exec, "claudegate-") == ""  # the gateway's and nginx's
    assert _spools(env) == ""  # the spool directory is gone
    assert any(e.kind == "work" and e.step == "gateway" and e.unit == "s" for e in events)  # health wait
    checks = [e for e in events if e.kind == "check"]
    assert checks and {e.status for e in checks} <= {"pass", "skip"}
    assert "team-a" in result.new_client_keys
    key = result.new_client_keys["team-a"].reveal()
    keys["team-a"] = key
    assert (env.dir / "state" / "keys" / "team-a.key").stat().st_mode & 0o777 == 0o600
    assert env.current() == result.release_id

    env.fake.control.clear_requests()
    client = env.client(key)
    reply = client.messages.create(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "reply with 4 words"}]
    )
    assert reply.content[0].type == "text"
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "reply with 5 words"}]
    ) as stream:
        assert len(stream.get_final_text().split()) == 5
    assert len(client.models.list().data) > 0
    seen = env.fake.control.requests("/v1/messages")
    assert seen, "the fake saw no request"
    for request in seen:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers.get("x-api-key") == CANARY  # the gateway injected the upstream key ...
        assert key not in str(request)  # ... and the client's never reached the upstream


def _spools(env: Env) -> str:
    return env.sh("ls -d /var/tmp/claudegate-images.* 2>/dev/null; true").strip()


def _container_starts(env: Env) -> str:
    return env.sh(
        "docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}} {{.RestartCount}}' $(docker ps -aq) | sort"
    )


def test_second_deploy_changes_and_restarts_nothing(env: Env) -> None:
    cfg = env.cfg()
    before = _container_starts(env)
    with timer() as took, connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    TIMINGS["no-change redeploy"] = took["seconds"]
    assert not result.changed, result.plan_text()
    assert "no changes" in result.plan_text()
    assert result.smoke is not None and result.smoke.ok
    assert _container_starts(env) == before
    # The image's own health probe (bash asking /healthz for a 200) reports every replica healthy:
    # the first probe runs 10 s after a start, and a probe that cannot pass stays "starting".
    inspect = "docker ps -q --filter name=claudegate-gateway | xargs docker inspect -f '{{.State.Health.Status}}'"
    deadline = time.monotonic() + 40
    states = env.sh(inspect).split()
    while set(states) != {"healthy"} and time.monotonic() < deadline:
        time.sleep(1)
        states = env.sh(inspect).split()
    assert set(states) == {"healthy"}, states


def test_plan_shows_the_diff_and_changes_nothing(env: Env) -> None:
    cfg = env.cfg("smaller-body.yaml", limits={"max_body_size": "16m"})
    before = env.snapshot()
    with connector_for(cfg) as connector:
        result = plan(cfg, connector)
    assert env.snapshot() == before
    text = result.plan_text()
    assert set(result.changed_steps) == {"release", "gateway", "switch"}, text
    assert "-client_max_body_size 32m;\n+client_max_body_size 16m;\n" in text
    # One knob (limits.max_body_size) bounds message bodies and file uploads alike.
    # (Line by line: gateway.yaml's keys are sorted, and max_held_download_bytes, unchanged, sits between them.)
    lines = text.splitlines()
    for line in ("-max_body_bytes: 33554432", "-max_upload_bytes: 33554432",
                 "+max_body_bytes: 16777216", "+max_upload_bytes: 16777216"):  # fmt: skip
        assert line in lines, text
    assert not [line for line in lines if line[:1] in "+-" and "max_held_download_bytes" in line], text
    assert f"switch nginx from release {env.current()}" in text


def test_deploy_cut_off_mid_way_resumes(env: Env) -> None:
    """The SSH session drops while an image builds on the host; the rerun finishes the job.

    (Between two commands a dropped session is not even noticed: the
    connector opens a new one. Here it drops under a running command.)
    """
    docker_client().images.get(BASE_IMAGE).tag("claudegate/debian-base", "e2e-alt")  # new base: new images
    cfg = env.cfg(
        "alt-base.yaml",
        limits={"max_body_size": "16m"},
        images={"base_image": "claudegate/debian-base:e2e-alt"},
    )
    old = env.current()
    stop = threading.Event()

    def keep_dropping() -> None:
        # Again and again until the run gives up: one drop is sure to hit a command in flight.
        while not stop.is_set():
            env.exec(["sh", "-c", DROP_SSH_SCRIPT])
            stop.wait(0.5)

    dropper = threading.Thread(target=keep_dropping, daemon=True)

    def drop_during_images(event: StepEvent) -> None:
        if event.kind == "start" and event.step == "images":
            dropper.start()

    try:
        with connector_for(cfg) as connector, pytest.raises(ConnectionFailed):
            deploy(cfg, connector, reporter=drop_during_images)
    finally:
        stop.set()
        if dropper.is_alive():
            dropper.join()
    assert env.current() == old  # it never got to switch
    assert '"finished": false' in env.sh("cat /opt/claudegate/state/journal.json")

    with connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    assert any("resuming the interrupted deploy" in note for note in result.notes), result.notes
    # Whatever the cut left undone (Docker may even have finished a build on its own) is done now.
    assert "switch" in result.changed_steps
    assert result.smoke is not None and result.smoke.ok
    assert env.current() == result.release_id != old
    docker_client().images.remove("claudegate/debian-base:e2e-alt")  # only the tag; the host has its images


_DEPLOY_AND_REPORT = """
import sys
from claudegate.config import load_config
from claudegate.deploy.api import connector_for, deploy
cfg = load_config(sys.argv[1])
def report(event):
    print(event.kind, event.step, event.message.replace("\\n", " "), flush=True)
with connector_for(cfg) as target:
    deploy(cfg, target, reporter=report)
"""


def test_deploy_killed_mid_way_then_rerun_converges(env: Env) -> None:
    """The operator's process dies (kill -9) right after switching nginx; the rerun takes its lock over."""
    cfg = env.cfg("bigger-body.yaml", limits={"max_body_size": "24m"})
    old = env.current()
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEPLOY_AND_REPORT, str(env.dir / "bigger-body.yaml")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("finish switch"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    # Killed after the switch but before its smoke test: the host serves an
    # unproven release and still carries the dead run's lock.
    assert env.current() != old
    assert env.sh("cat /opt/claudegate/state/lock/token").strip()

    with connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    notes = " ".join(result.notes)
    assert "resuming the interrupted deploy" in notes and f"last good release: {old}" in notes
    assert result.previous_release == old
    assert result.smoke is not None and result.smoke.ok
    assert env.current() == result.release_id
    assert env.sh("readlink /opt/claudegate/releases/previous").strip() == old


def test_a_held_lock_stops_a_second_deploy_until_it_expires(env: Env) -> None:
    cfg = env.cfg("bigger-body.yaml", limits={"max_body_size": "24m"})
    env.sh(
        "mkdir -p /opt/claudegate/state/lock && cd /opt/claudegate/state/lock && echo other-token >token "
        """&& echo '{"user": "alice", "operator_host": "alice-laptop", "pid": 4242}' >owner.json """
        "&& echo $(( $(date +%s) + 600 )) >expires"
    )
    with connector_for(cfg) as connector, pytest.raises(DeployFailed, match="alice@alice-laptop"):
        deploy(cfg, connector)
    env.sh("echo 1 >/opt/claudegate/state/lock/expires")  # alice's deploy crashed long ago
    with connector_for(cfg) as connector:
        result = deploy(cfg, connector)
    assert not result.changed
    assert env.sh("test -e /opt/claudegate/state/lock && echo held") == ""


def test_a_gateway_that_cannot_start_is_rolled_back_while_the_old_one_serves(
    env: Env, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = env.cfg("bigger-body.yaml", limits={"max_body_size": "24m"})
    old = env.current()
    render = release_module.render_gateway_yaml
    # A key the gateway does not know makes it exit at start with a config error.
    monkeypatch.setattr(release_module, "render_gateway_yaml", lambda c: render(c) + b"no_such_setting: 1\n")
    with Background(env.client(keys["team-a"])) as background, connector_for(cfg) as connector:
        time.sleep(1)
        with pytest.raises(DeployFailed, match="did not start") as failed:
            deploy(cfg, connector)
        time.sleep(1)
    assert "no_such_setting" in str(failed.value)  # the gateway's own message, from its log
    assert background.failures == [] and background.ok > 5, background.failures
    assert env.current() == old
    names = env.sh("docker ps -a --format '{{.Names}}'").split()
    assert len([n for n in names if "gateway" in n]) == 2  # serving + previous; the broken one is gone


def test_a_release_failing_its_smoke_test_is_switched_back(env: Env, keys: dict[str, str]) -> None:
    # The gateway starts fine but cannot reach its upstream (nothing listens there).
    cfg = env.cfg("dead-upstream.yaml", upstream={"base_url": env.upstream_url.rsplit(":", 1)[0] + ":9"})
    old = env.current()
    with connector_for(cfg) as connector, pytest.raises(DeployFailed, match="switched back") as failed:
        deploy(cfg, connector)
    assert "api.models" in str(failed.value)
    assert env.current() == old
    assert env.client(keys["team-a"]).models.list().data


def test_rollback_serves_the_previous_release_and_back(env: Env, keys: dict[str, str]) -> None:
    cfg = env.cfg("bigger-body.yaml", limits={"max_body_size": "24m"})
    current = env.current()
    previous = env.sh("readlink /opt/claudegate/releases/previous").strip()
    with connector_for(cfg) as connector:
        result = rollback(cfg, connector)
    assert result.smoke is not None and result.smoke.ok
    assert env.current() == previous
    assert env.client(keys["team-a"]).models.list().data
    with connector_for(cfg) as connector:
        rollback(cfg, connector)
        report = status(cfg, connector)
    assert env.current() == current == report.current_release
    assert report.serving and report.previous_release == previous


def test_the_upstream_key_is_only_in_its_secret_file(env: Env) -> None:
    """The canary key is found only in the secret file (and the gateway's memory), nowhere else."""
    assert CANARY in env.sh("cat /opt/claudegate/shared/secrets/anthropic_api_key")  # the search works
    # The pattern goes into a file from two halves, so that the search itself
    # never puts the whole key into a command line or an environment.
    half = len(CANARY) // 2
    env.exec(
        [
            "env",
            f"A={CANARY[:half]}",
            f"B={CANARY[half:]}",
            "sh",
            "-c",
            'printf \'%s%s\\n\' "$A" "$B" >/root/.canary',
        ]
    )
    places = {
        "files outside the secret mount": "grep -rl --exclude-dir=secrets -F -f /root/.canary /opt/claudegate /etc /var/log /tmp",
        "container logs": "for c in $(docker ps -aq); do docker logs $c 2>&1; done | grep -F -f /root/.canary",
        "ps (command lines)": "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -F -f /root/.canary",
        "process environments": "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -F -f /root/.canary",
        "docker inspect": "docker inspect $(docker ps -aq) $(docker images -q) $(docker network ls -q) | grep -F -f /root/.canary",
        "shell history": "cat /root/.*history /home/*/.*history 2>/dev/null | grep -F -f /root/.canary",
    }
    assert (
        env.sh("grep -c -F -f /root/.canary /opt/claudegate/shared/secrets/anthropic_api_key").strip() == "1"
    )
    for what, script in places.items():
        _code, out = env.exec(["sh", "-c", script])
        assert CANARY not in out.decode(errors="replace"), f"the key leaked into {what}"
    journal = env.sh("cat /opt/claudegate/state/journal.json")
    assert journal and CANARY not in journal


def test_acme_certificate_from_pebble(
    env: Env, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tls.mode acme: certbot on the host gets a certificate from pebble over HTTP-01, nginx serves it."""
    gateway_ip = env.server.host_address
    with run_pebble(env.dir / "pebble", listen_ip=gateway_ip, names_resolve_to=env.server.ip) as pebble:
        monkeypatch.setenv("CLAUDEGATE_ACME_CA_BUNDLE", str(pebble.api_ca))  # pebble's API certificate
        monkeypatch.setenv("CLAUDEGATE_ACME_RESOLVER", pebble.dns)  # the pre-check resolves as pebble does
        monkeypatch.setenv("SSL_CERT_FILE", str(pebble.issuing_root))  # for the smoke test's verification
        tls = {"mode": "acme", "email": "ops@example.com", "acme_directory": pebble.directory}
        cfg = env.cfg("acme.yaml", tls=tls, limits={"max_body_size": "24m"})
        with connector_for(cfg) as connector:
            result = deploy(cfg, connector)
        assert "acme" in result.changed_steps, result.plan_text()
        assert result.smoke is not None and result.smoke.ok, result.smoke.table()
        served = env.sh("cat /opt/claudegate/shared/tls/fullchain.pem").encode()
        issuer = x509.load_pem_x509_certificate(served).issuer.rfc4514_string()
        assert "Pebble" in issuer, issuer
        assert env.sh("stat -c '%a %U' /opt/claudegate/shared/tls/privkey.pem").strip() == "600 root"
        with connector_for(cfg) as connector:
            assert not renew(cfg, connector).changed  # not due: pebble's certificates live 5 years
        assert env.sh("docker inspect -f '{{.State.Status}}' claudegate-certbot").strip() == "running"


def test_uninstall_removes_everything_but_docker(env: Env) -> None:
    cfg = env.cfg()
    with connector_for(cfg) as connector:
        result = uninstall(cfg, connector)
    assert "uninstall" in result.changed_steps
    assert (
        env.sh(
            "docker ps -aq; docker network ls --filter name=claudegate -q; test -e /opt/claudegate && echo left"
        )
        == ""
    )
    assert env.sh("docker info --format '{{.ServerVersion}}'").strip()


def test_connector_for_uses_the_configs_known_hosts(env: Env) -> None:
    cfg = env.cfg()
    connector = connector_for(cfg)
    assert isinstance(connector, SSHConnector)
    assert connector.known_hosts.path == Path(env.base["target"]["known_hosts"])
