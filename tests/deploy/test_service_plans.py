"""Plans of the gateway, clients, acme and renewal steps from canned host facts, one case a row.

See :mod:`tests.deploy.canned`: no host, no Docker; any command a plan is
not expected to run fails the case, and so does a host fact read that the
step does not declare.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from claudegate.config.derive import client_scopes
from claudegate.config.model import Client
from claudegate.connectors.base import Result
from claudegate.deploy.docker_cli import ContainerSpec
from claudegate.deploy.facts import HostFacts, parse_container
from claudegate.deploy.layout import LABEL_SPEC, HostLayout
from claudegate.deploy.release import build_release
from claudegate.deploy.services import gateway_spec_for
from claudegate.deploy.steps.acme import AcmeStep
from claudegate.deploy.steps.clients import SMOKE_CLIENT, SMOKE_SCOPES, ClientsStep
from claudegate.deploy.steps.gateway import GatewayStep
from claudegate.deploy.steps.renewal import LABEL_NGINX_ID, RenewalStep
from tests.deploy.canned import MISSING, assert_declared, context, kind, kinds, ok, plan
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()
GID = 998


def _container(spec: ContainerSpec, *, status: str = "running", label: str | None = None,
               networks: tuple[str, ...] | None = None, labels: dict[str, str] | None = None,
               cid: str = "c0ffee") -> str:  # fmt: skip
    nets = networks if networks is not None else (spec.network, *(n for n, _ in spec.extra_networks))
    return json.dumps({
        "Id": cid, "Name": f"/{spec.name}",
        "Config": {"Image": spec.image, "Labels": {LABEL_SPEC: label or spec.digest(), **(labels or {})}},
        "State": {"Status": status}, "NetworkSettings": {"Networks": {n: {} for n in nets}},
    })  # fmt: skip


# -- gateway -------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayCase:
    id: str
    container: str  # "absent", "matching", "stale spec", "missing a network", "stopped"
    current: str | None = "r00000000001"
    docker_missing: bool = False
    summary: str | None = None
    ops: tuple[str, ...] = ()


CREATE = ("docker create", "docker network connect", "docker container start", "call: wait until")
GATEWAY = [
    GatewayCase("first deploy", "absent", current=None, summary="start gateway", ops=CREATE),
    GatewayCase("a new gateway beside the serving one", "absent", summary="start gateway", ops=CREATE),
    GatewayCase("no engine yet: nothing to inspect", "absent", docker_missing=True, summary="start gateway",
                ops=CREATE),
    GatewayCase("its settings changed", "stale spec", summary="recreate gateway",
                ops=("docker container rm", *CREATE)),
    GatewayCase("left off its egress network", "missing a network", summary="recreate gateway",
                ops=("docker container rm", *CREATE)),
    GatewayCase("stopped", "stopped", summary="start the stopped gateway",
                ops=("docker container start", "call: wait until")),
    GatewayCase("running as wanted", "matching"),
]


@pytest.mark.parametrize("case", GATEWAY, ids=[c.id for c in GATEWAY])
def test_gateway_plan(make_cfg: ConfigFactory, case: GatewayCase) -> None:
    _gateway(make_cfg, case)


def _gateway(make_cfg: ConfigFactory, case: GatewayCase) -> set[str]:
    cfg = make_cfg()
    release = build_release(cfg, LAYOUT, key_fingerprint="f")
    facts = HostFacts(current=case.current, docker_missing=case.docker_missing, secrets_gid=GID)
    spec = gateway_spec_for(context(cfg, facts=HostFacts(secrets_gid=GID)), release)

    def answer(argv: list[str]) -> Result | None:
        if argv[:3] == ["docker", "container", "inspect"] and argv[-1] == spec.name and not case.docker_missing:
            if case.container == "absent":
                return MISSING
            return ok(_container(
                spec, status="exited" if case.container == "stopped" else "running",
                label="stale" if case.container == "stale spec" else None,
                networks=(spec.network,) if case.container == "missing a network" else None,
            ))  # fmt: skip
        return None

    ctx = context(cfg, answer, facts=facts)
    ctx.state.release = release
    changes, read = plan(GatewayStep(), ctx)
    if case.summary is None:
        assert changes == []
        return read
    (change,) = changes
    assert change.summary.startswith(case.summary), change.summary
    assert change.summary.endswith("beside the one serving now") == (
        case.container == "absent" and case.current is not None
    )
    got = kinds(change)
    assert len(got) == len(case.ops) and all(k.startswith(o) for k, o in zip(got, case.ops, strict=True)), got
    create = next((op for op in change.ops if kind(op) == "docker create"), None)
    if create is not None:  # the container joins the secrets group learned from the host
        assert ("--group-add", str(GID)) in zip(create.argv, create.argv[1:], strict=False)  # type: ignore[union-attr]
    return read


# -- clients -------------------------------------------------------------------


def _record(client: Client, *, state: str = "active", **scopes: Any) -> dict[str, Any]:
    return {
        "name": client.name, "state": state, "created_at": 1767225600,
        "expires_at": None, "revoked_at": None, "scopes": {**client_scopes(client), **scopes}, "credentials": [],
    }  # fmt: skip


TEAM_A = Client(name="team-a", models=["claude-haiku-*"], rpm=60)


@dataclass(frozen=True)
class ClientsCase:
    id: str
    keystore: tuple[dict[str, Any], ...] | None  # None: no gateway answers
    dry_run: bool = False
    prune: bool = False
    docker_missing: bool = False
    changes: tuple[tuple[str, str], ...] = ()  # (summary start, op kind)
    notes: tuple[str, ...] = ()


SETTLED = (_record(TEAM_A), _record(SMOKE_SCOPES))
CLIENTS = [
    ClientsCase("settled", SETTLED),
    ClientsCase("a new host: both clients are made (their keys come back on stdout)", (),
                changes=(("create client team-a", "call: create team-a"),
                         (f"create the smoke test's client {SMOKE_CLIENT}", f"call: create {SMOKE_CLIENT}"))),
    ClientsCase("a revoked client gets a new key", (_record(TEAM_A, state="revoked"), _record(SMOKE_SCOPES)),
                changes=(("create client team-a (revoked in the keystore: a new key)", "call: create team-a"),)),
    ClientsCase("changed scopes: updated in place, one command", (_record(TEAM_A, rpm=5), _record(SMOKE_SCOPES)),
                changes=(("update client team-a in place (rpm", "docker exec keys update"),)),
    ClientsCase("a client deploy.yaml dropped is only noted", (*SETTLED, _record(Client(name="old"))),
                notes=("client old is in the keystore but not in deploy.yaml",)),
    ClientsCase("--prune revokes it", (*SETTLED, _record(Client(name="old"))), prune=True,
                changes=(("revoke client old (not in deploy.yaml; --prune)", "docker exec keys revoke"),)),
    ClientsCase("an interrupted audit's client goes without --prune",
                (*SETTLED, _record(Client(name="claudegate-audit-1a2b"))),
                changes=(("revoke client claudegate-audit-1a2b (left by an interrupted claudegate audit)",
                          "docker exec keys revoke"),)),
    ClientsCase("no engine yet: every client is new", None, docker_missing=True,
                changes=(("create client team-a", "call: create team-a"),
                         (f"create the smoke test's client {SMOKE_CLIENT}", f"call: create {SMOKE_CLIENT}"))),
    ClientsCase("a dry run asks a gateway that runs when the new one does not", SETTLED, dry_run=True),
]


@pytest.mark.parametrize("case", CLIENTS, ids=[c.id for c in CLIENTS])
def test_clients_plan(make_cfg: ConfigFactory, case: ClientsCase) -> None:
    _clients(make_cfg, case)


def _clients(make_cfg: ConfigFactory, case: ClientsCase) -> set[str]:
    cfg = make_cfg()
    release = build_release(cfg, LAYOUT, key_fingerprint="f")
    ours = LAYOUT.gateway_container(release.gateway_id)
    serving = LAYOUT.gateway_container("g00000000001")

    def answer(argv: list[str]) -> Result | None:
        if case.docker_missing:
            return None
        if argv[:2] == ["docker", "exec"] and "list" in argv:
            # In a dry run the new gateway does not run yet; the serving one answers.
            asked = argv[2]
            if case.keystore is None or (case.dry_run and asked == ours):
                return MISSING
            return ok(json.dumps(list(case.keystore)))
        if argv[:3] == ["docker", "container", "ls"] and case.dry_run:
            return ok(f"{serving}\n")
        return None

    notes: list[str] = []
    ctx = context(cfg, answer, dry_run=case.dry_run, prune=case.prune,
                  facts=HostFacts(docker_missing=case.docker_missing))  # fmt: skip
    ctx.state.release = release
    ctx.reporter = lambda event: notes.append(event.message) if event.kind == "note" else None
    changes, read = plan(ClientsStep(), ctx)
    got = [(c.summary, kinds(c)) for c in changes]
    assert len(got) == len(case.changes), got
    for (summary, ops), (want, op) in zip(got, case.changes, strict=True):
        assert summary.startswith(want), summary
        assert len(ops) == 1 and ops[0].startswith(op), ops
    for change in changes:  # a keystore command runs in this release's gateway, never in another
        for run in (op for op in change.ops if kind(op).startswith("docker exec")):
            assert run.argv[2] == ours  # type: ignore[union-attr]
    assert [n for n in notes if any(n.startswith(w) for w in case.notes)] == [
        n for n in notes if "keystore" in n
    ]
    assert len([n for n in notes if "keystore" in n]) == len(case.notes)
    return read


# -- acme ----------------------------------------------------------------------


def _certificate(days_left: float, lifetime: float = 90) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "gw.example.com")])
    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_left)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(end - dt.timedelta(days=lifetime)).not_valid_after(end)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(Encoding.PEM)


LIVE = f"{LAYOUT.acme_state}/live/claudegate/fullchain.pem"
SERVED = f"{LAYOUT.tls}/fullchain.pem"


@dataclass(frozen=True)
class AcmeCase:
    id: str
    mode: str = "acme"
    issued: bytes | None = None  # certbot's live certificate
    served_same: bool = True  # nginx's copy equals it
    summary: str | None = None
    ops: tuple[str, ...] = ()


FRESH, DUE = _certificate(80), _certificate(10)
ACME = [
    AcmeCase("not acme: nothing", mode="internal-ca"),
    AcmeCase("none issued yet", summary="obtain a certificate for gw.example.com from", ops=("call: certbot",)),
    AcmeCase("issued and served", issued=FRESH),
    AcmeCase("issued, not yet served: copied, nginx reloaded", issued=FRESH, served_same=False,
             summary="install the issued certificate for nginx",
             ops=("claudegate-acme-copy", "call: reload nginx if it runs")),
    AcmeCase("a third of its lifetime left: renewed", issued=DUE, summary="renew the certificate for gw.example.com (ends",
             ops=("call: certbot",)),
    AcmeCase("unreadable: renewed", issued=b"not a certificate", summary="renew the certificate for gw.example.com",
             ops=("call: certbot",)),
]


@pytest.mark.parametrize("case", ACME, ids=[c.id for c in ACME])
def test_acme_plan(make_cfg: ConfigFactory, case: AcmeCase) -> None:
    _acme(make_cfg, case)


def _acme(make_cfg: ConfigFactory, case: AcmeCase) -> set[str]:
    tls: dict[str, Any] = {"mode": case.mode}
    if case.mode == "acme":
        tls |= {"email": "ops@example.com"}
    cfg = make_cfg(tls=tls)

    def answer(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-sha256"] and case.mode == "acme":
            if case.issued is None:
                return ok()
            digest = "a" * 64
            served = digest if case.served_same else "b" * 64
            return ok(f"{digest}  {LIVE}\n{served}  {SERVED}\n")
        return None

    files = {LIVE: case.issued} if case.issued is not None else {}
    changes, read = plan(AcmeStep(), context(cfg, answer, files))
    if case.summary is None:
        assert changes == []
        return read
    (change,) = changes
    assert change.summary.startswith(case.summary), change.summary
    assert kinds(change) == case.ops
    return read


# -- renewal -------------------------------------------------------------------


@dataclass(frozen=True)
class RenewalCase:
    id: str
    mode: str = "acme"
    renewer: str = "absent"  # "absent", "matching", "other nginx", "stale spec", "stopped", "restarting"
    nginx: str = "running"  # "running", "absent"
    docker_missing: bool = False
    summary: str | None = None
    ops: tuple[str, ...] = ()


RENEWER = ("docker create", "docker container start", "claudegate-install-hook")
RENEWAL = [
    RenewalCase("not acme, no renewer: nothing", mode="internal-ca"),
    RenewalCase("not acme any more: the renewer goes", mode="internal-ca", renewer="matching",
                summary="remove claudegate-certbot (tls.mode is not acme)", ops=("docker container rm",)),
    RenewalCase("first time: created in nginx's namespaces, commands shown", summary="schedule ACME renewal",
                ops=RENEWER),
    RenewalCase("nginx does not run yet (a dry run on a new host)", nginx="absent", summary="schedule ACME renewal",
                ops=("call: start claudegate-certbot",)),
    RenewalCase("no engine yet", docker_missing=True, summary="schedule ACME renewal",
                ops=("call: start claudegate-certbot",)),
    RenewalCase("nginx was recreated", renewer="other nginx", summary="recreate claudegate-certbot (nginx was recreated)",
                ops=("docker container rm", *RENEWER)),
    RenewalCase("its settings changed", renewer="stale spec",
                summary="recreate claudegate-certbot (its settings changed)", ops=("docker container rm", *RENEWER)),
    RenewalCase("stopped", renewer="stopped", summary="start the stopped claudegate-certbot",
                ops=("docker container start",)),
    RenewalCase("restarting by itself (nginx restarted): left alone", renewer="restarting"),
    RenewalCase("running as wanted", renewer="matching"),
]


@pytest.mark.parametrize("case", RENEWAL, ids=[c.id for c in RENEWAL])
def test_renewal_plan(make_cfg: ConfigFactory, case: RenewalCase) -> None:
    _renewal(make_cfg, case)


def _renewal(make_cfg: ConfigFactory, case: RenewalCase) -> set[str]:
    tls: dict[str, Any] = {"mode": case.mode}
    if case.mode == "acme":
        tls |= {"email": "ops@example.com"}
    cfg = make_cfg(tls=tls)
    step = RenewalStep()
    nginx_id = "abc123"
    nginx_state = json.dumps({"Id": nginx_id, "Name": f"/{LAYOUT.nginx_container}", "Config": {"Labels": {}},
                              "State": {"Status": "running"}, "NetworkSettings": {"Networks": {}}})  # fmt: skip
    probe = context(cfg)
    parsed = parse_container(nginx_state)
    assert parsed is not None
    spec = step._spec(probe, parsed)

    def answer(argv: list[str]) -> Result | None:
        if argv[:3] != ["docker", "container", "inspect"] or case.docker_missing:
            return None
        if argv[-1] == LAYOUT.nginx_container:
            return MISSING if case.nginx == "absent" else ok(nginx_state)
        if argv[-1] == LAYOUT.certbot_container:
            if case.renewer == "absent":
                return MISSING
            status = {"stopped": "exited", "restarting": "restarting"}.get(case.renewer, "running")
            other = case.renewer == "other nginx"
            return ok(_container(
                spec, status=status, label="stale" if case.renewer in ("stale spec", "other nginx") else None,
                labels={LABEL_NGINX_ID: "old" if other else nginx_id},
            ))  # fmt: skip
        return None

    changes, read = plan(step, context(cfg, answer, facts=HostFacts(docker_missing=case.docker_missing)))
    if case.summary is None:
        assert changes == []
        return read
    (change,) = changes
    assert change.summary.startswith(case.summary), change.summary
    assert kinds(change) == case.ops
    create = next((op for op in change.ops if kind(op) == "docker create"), None)
    if create is not None:  # it joins nginx's namespaces by the id nginx has now
        assert f"container:{nginx_id}" in create.argv  # type: ignore[union-attr]
    return read


# -- the declarations ----------------------------------------------------------


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(GatewayStep, [_gateway(make_cfg, c) for c in GATEWAY])
    assert_declared(ClientsStep, [_clients(make_cfg, c) for c in CLIENTS])
    assert_declared(AcmeStep, [_acme(make_cfg, c) for c in ACME])
    assert_declared(RenewalStep, [_renewal(make_cfg, c) for c in RENEWAL])
