"""Plans of the networks and secrets steps from canned host facts (no host, no Docker), one case a row.

See :mod:`tests.deploy.canned`; the layout step's table is in ``test_host_plans``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

from claudegate.connectors.base import Result
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Put, Run
from claudegate.deploy.facts import HostFacts
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.files import SecretsStep, TLSStep, tls_material
from claudegate.deploy.steps.host import LayoutStep
from claudegate.deploy.steps.network import NetworksStep
from claudegate.deploy.tls_material import self_signed
from claudegate.errors import ConfigError, DeployFailed
from claudegate.redact import Secret
from tests.deploy.canned import MISSING, Answer, assert_declared, context, kinds, ok, plan
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()


def ctx_for(make_cfg: ConfigFactory, answer: Answer) -> Context:
    return context(make_cfg(), answer)


def test_the_internal_network_gets_no_host_address(make_cfg: ConfigFactory) -> None:
    ctx = ctx_for(make_cfg, lambda argv: MISSING if argv[:3] == ["docker", "network", "inspect"] else None)
    changes, _ = plan(NetworksStep(), ctx)
    internal = next(c for c in changes if "claudegate-internal" in c.summary)
    (op,) = internal.ops
    assert isinstance(op, Run)
    assert "--opt" in op.argv and "com.docker.network.bridge.inhibit_ipv4=true" in op.argv
    assert "--internal" in op.argv


def test_an_internal_network_with_a_host_address_stops_the_deploy(make_cfg: ConfigFactory) -> None:
    def answer(argv: list[str]) -> Result | None:
        if argv[:3] != ["docker", "network", "inspect"]:
            return None
        name = argv[-1]
        internal = name.endswith("-internal")
        doc = {
            "Name": name,
            "Internal": internal,
            "IPAM": {"Config": [{"Subnet": "10.213.71.0/28"}] if internal else []},
            "Options": {},  # made by an older claudegate: the bridge has a host address
        }
        return ok(json.dumps(doc))

    with pytest.raises(DeployFailed) as caught:
        plan(NetworksStep(), ctx_for(make_cfg, answer))
    assert "host" in str(caught.value) and "without going through nginx" in str(caught.value)
    assert caught.value.hint is not None and "docker network rm claudegate-internal" in caught.value.hint


def test_layout_makes_the_secrets_group_first_and_gives_it_the_secrets_dir(make_cfg: ConfigFactory) -> None:
    def answer(argv: list[str]) -> Result | None:
        if argv[:2] == ["getent", "group"]:
            return MISSING
        if argv[3:4] == ["claudegate-stat"]:
            return ok()  # nothing exists yet
        return None

    changes, _ = plan(LayoutStep(), ctx_for(make_cfg, answer))
    assert changes[0].summary.startswith("create the system group claudegate")
    (op,) = changes[0].ops
    assert isinstance(op, Run) and op.argv[-1] == "claudegate" and "groupadd --system" in op.argv[2]
    secrets = next(c for c in changes if c.summary.startswith("create /opt/claudegate/shared/secrets "))
    assert secrets.summary.endswith("(0750 0:claudegate)")


def test_secrets_owned_by_uid_10001_are_given_to_root_and_the_group(make_cfg: ConfigFactory) -> None:
    key = "sk-ant-api03-plan-test"
    layout = HostLayout()

    def answer(argv: list[str]) -> Result | None:
        if argv == ["getent", "group", "claudegate"]:
            return ok("claudegate:x:998:\n")
        if argv[3:4] == ["claudegate-sha256"]:
            return ok(f"{hashlib.sha256(key.encode()).hexdigest()}  {layout.api_key_file}\n")
        if argv[3:4] == ["claudegate-stat"]:
            return ok(
                f"600 10001 10001 regular file|{layout.api_key_file}\n"
                f"600 10001 10001 regular file|{layout.pepper_file}\n"
            )
        return None

    ctx = ctx_for(make_cfg, answer)
    ctx.state.upstream_key = Secret(key)
    changes, _ = plan(SecretsStep(), ctx)
    assert [c.summary for c in changes] == [
        f"replace the Anthropic API key ({layout.api_key_file}, 0640, root:claudegate)",
        f"set {layout.pepper_file} to 0640, root:claudegate",
    ]
    (put,) = changes[0].ops
    assert isinstance(put, Put) and (put.mode, put.owner) == (0o640, "0:claudegate")
    (fix,) = changes[1].ops
    assert isinstance(fix, Run) and 'chown -h -- "$2" "$1"' in fix.argv[2] and fix.argv[-1] == "0:claudegate"

    # Already right: nothing to do.
    def settled(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-stat"]:
            return ok(
                f"640 0 998 regular file|{layout.api_key_file}\n640 0 998 regular file|{layout.pepper_file}\n"
            )
        return answer(argv)

    ctx = ctx_for(make_cfg, settled)
    ctx.state.upstream_key = Secret(key)
    assert plan(SecretsStep(), ctx)[0] == []


# -- tables --------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkCase:
    id: str
    found: dict[str, dict[str, object]]  # network name -> its inspect document (absent: not there)
    creates: tuple[str, ...] = ()
    error: str | None = None


def _net(name: str, *, internal: bool = False, subnet: str | None = None, inhibit: bool = True) -> dict[str, object]:
    return {
        "Name": name, "Internal": internal, "IPAM": {"Config": [{"Subnet": subnet}] if subnet else []},
        "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"} if internal and inhibit else {},
    }  # fmt: skip


SUBNET = "10.213.71.0/28"
ALL = {
    LAYOUT.internal_network: _net(LAYOUT.internal_network, internal=True, subnet=SUBNET),
    LAYOUT.egress_network: _net(LAYOUT.egress_network),
    LAYOUT.edge_network: _net(LAYOUT.edge_network),
}
NETWORKS = [
    NetworkCase("none yet", {}, (LAYOUT.internal_network, LAYOUT.egress_network, LAYOUT.edge_network)),
    NetworkCase("all there", ALL),
    NetworkCase("the edge network went", {k: v for k, v in ALL.items() if k != LAYOUT.edge_network},
                (LAYOUT.edge_network,)),
    NetworkCase("an internal network on another subnet", {**ALL, LAYOUT.internal_network: _net(
        LAYOUT.internal_network, internal=True, subnet="10.9.9.0/28")}, error="exists with other settings"),
    NetworkCase("an egress network made internal", {**ALL, LAYOUT.egress_network: _net(
        LAYOUT.egress_network, internal=True)}, error="exists with other settings"),
    NetworkCase("an internal network with a host address", {**ALL, LAYOUT.internal_network: _net(
        LAYOUT.internal_network, internal=True, subnet=SUBNET, inhibit=False)}, error="without going through nginx"),
]  # fmt: skip


@pytest.mark.parametrize("case", NETWORKS, ids=[c.id for c in NETWORKS])
def test_networks_plan(make_cfg: ConfigFactory, case: NetworkCase) -> None:
    _networks(make_cfg, case)


def _networks(make_cfg: ConfigFactory, case: NetworkCase) -> set[str]:
    def answer(argv: list[str]) -> Result | None:
        if argv[:3] != ["docker", "network", "inspect"]:
            return None
        doc = case.found.get(argv[-1])
        return ok(json.dumps(doc)) if doc is not None else MISSING

    ctx = context(make_cfg(network={"subnet": SUBNET}), answer)
    if case.error is not None:
        with pytest.raises(DeployFailed, match=case.error):
            plan(NetworksStep(), ctx)
        return set()
    changes, read = plan(NetworksStep(), ctx)
    assert [c.summary.split()[2] for c in changes] == list(case.creates)
    for change in changes:
        assert kinds(change) == ("docker network create",)
    return read


@dataclass(frozen=True)
class SecretsCase:
    id: str
    key_on_host: str | None  # the key whose digest the host prints (None: no key file)
    stats: str = ""  # "mode uid gid kind" of key and pepper, one a line, like the stat script
    gid_known: bool = True  # the layout step learned the group's gid
    key: str | None = "sk-ant-api03-new"
    dry_run: bool = False
    changes: tuple[tuple[str, str], ...] = ()  # (summary start, op kind)
    error: str | None = None


KEY = "sk-ant-api03-new"
RIGHT = f"640 0 998 regular file|{LAYOUT.api_key_file}\n640 0 998 regular file|{LAYOUT.pepper_file}\n"
SECRETS = [
    SecretsCase("a new host: key uploaded, pepper made", None,
                changes=(("upload the Anthropic API key", f"put {LAYOUT.api_key_file}"),
                         ("create the client-key pepper", f"put {LAYOUT.pepper_file}"))),
    SecretsCase("settled", KEY, RIGHT),
    SecretsCase("settled, the gid asked of the host", KEY, RIGHT, gid_known=False),
    SecretsCase("a new key replaces the old one; the pepper is never replaced", "sk-ant-api03-old", RIGHT,
                changes=(("replace the Anthropic API key", f"put {LAYOUT.api_key_file}"),)),
    SecretsCase("a pepper that is a directory stops the run", KEY,
                f"640 0 998 regular file|{LAYOUT.api_key_file}\n755 0 0 directory|{LAYOUT.pepper_file}\n",
                error="is a directory, not a file"),
    SecretsCase("no key in a dry run: noted, nothing planned", None, key=None, dry_run=True),
    SecretsCase("no key in a real run", None, key=None, error="no Anthropic API key"),
]  # fmt: skip


@pytest.mark.parametrize("case", SECRETS, ids=[c.id for c in SECRETS])
def test_secrets_plan(make_cfg: ConfigFactory, case: SecretsCase) -> None:
    _secrets(make_cfg, case)


def _secrets(make_cfg: ConfigFactory, case: SecretsCase) -> set[str]:
    def answer(argv: list[str]) -> Result | None:
        if argv == ["getent", "group", LAYOUT.secrets_group] and not case.gid_known:
            return ok(f"{LAYOUT.secrets_group}:x:998:\n")
        if argv[3:4] == ["claudegate-sha256"] and case.key_on_host is not None:
            return ok(f"{hashlib.sha256(case.key_on_host.encode()).hexdigest()}  {LAYOUT.api_key_file}\n")
        if argv[3:4] == ["claudegate-sha256"]:
            return ok()
        if argv[3:4] == ["claudegate-stat"]:
            return ok(case.stats)
        return None

    ctx = context(make_cfg(), answer, dry_run=case.dry_run, facts=HostFacts(secrets_gid=998 if case.gid_known else None))
    ctx.state.upstream_key = Secret(case.key) if case.key is not None else None
    if case.error is not None:
        with pytest.raises(ConfigError, match=case.error):
            plan(SecretsStep(), ctx)
        return set()
    changes, read = plan(SecretsStep(), ctx)
    assert [(c.summary, kinds(c)) for c in changes] == [
        (c.summary, (want,)) for c, (_, want) in zip(changes, case.changes, strict=True)
    ]
    assert all(c.summary.startswith(s) for c, (s, _) in zip(changes, case.changes, strict=True))
    for change in changes:  # secrets are root's, readable by the group only
        for op in change.ops:
            assert isinstance(op, Put) and (op.mode, op.owner) == (0o640, f"0:{LAYOUT.secrets_group}")
    if case.key is not None and any("API key" in c.summary for c in changes):
        put = changes[0].ops[0]
        assert isinstance(put, Put) and put.data == case.key.encode()
    return read


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(NetworksStep, [_networks(make_cfg, c) for c in NETWORKS])
    assert_declared(SecretsStep, [_secrets(make_cfg, c) for c in SECRETS])


# -- tls -----------------------------------------------------------------------


@dataclass(frozen=True)
class TLSCase:
    id: str
    mode: str = "internal-ca"
    on_host: tuple[str, ...] = ()  # files present with the wanted content: fullchain, privkey, chain
    other_cert: bool = False  # the served certificate is another one
    key_mode: str = "600 0 0"
    changes: tuple[str, ...] = ()  # summary starts
    asks: bool = False  # the certificate's change asks before it is made


BOTH = ("fullchain.pem", "privkey.pem", "chain.pem")
TLS = [
    TLSCase("a new host: certificate, key and chain", changes=(
        "install the certificate: ", "install the private key", "install the chain")),
    TLSCase("all there", on_host=BOTH),
    TLSCase("the key's mode drifted", on_host=BOTH, key_mode="644 0 0", changes=("install the private key",)),
    TLSCase("another certificate is served: asks before replacing it", on_host=("chain.pem",), other_cert=True,
            changes=("install the certificate: ", "install the private key"), asks=True),
    TLSCase("acme with a certificate: the acme step owns it", mode="acme", other_cert=True),
    TLSCase("acme before its first certificate: a temporary one", mode="acme", changes=(
        "install the certificate: ", "install the private key", "install the chain")),
]  # fmt: skip


@pytest.mark.parametrize("case", TLS, ids=[c.id for c in TLS])
def test_tls_plan(make_cfg: ConfigFactory, case: TLSCase) -> None:
    _tls(make_cfg, case)


def _tls(make_cfg: ConfigFactory, case: TLSCase) -> set[str]:
    tls: dict[str, object] = {"mode": case.mode}
    if case.mode == "acme":
        tls |= {"email": "ops@example.com"}
    cfg = make_cfg(tls=tls)
    material = tls_material(context(cfg))  # internal-ca: made once, the same again in the plan
    data = {"fullchain.pem": material.fullchain, "privkey.pem": material.privkey, "chain.pem": material.chain}
    digests = {f"{LAYOUT.tls}/{name}": hashlib.sha256(data[name]).hexdigest() for name in case.on_host}
    old = self_signed_pem() if case.other_cert else None
    if old is not None:
        digests[f"{LAYOUT.tls}/fullchain.pem"] = hashlib.sha256(old).hexdigest()

    def answer(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-sha256"]:
            return ok("".join(f"{digests[p]}  {p}\n" for p in argv[4:] if p in digests))
        if argv[3:4] == ["claudegate-stat"]:
            key = f"{LAYOUT.tls}/privkey.pem"
            return ok(f"{case.key_mode} regular file|{key}\n" if "privkey.pem" in case.on_host else "")
        return None

    files = {f"{LAYOUT.tls}/fullchain.pem": old} if old is not None else {}
    changes, read = plan(TLSStep(), context(cfg, answer, files))
    assert len(changes) == len(case.changes), [c.summary for c in changes]
    for change, want in zip(changes, case.changes, strict=True):
        assert change.summary.startswith(want), change.summary
        (put,) = change.ops
        assert isinstance(put, Put) and put.owner == "0:0"
        assert put.mode == (0o600 if put.path.endswith("privkey.pem") else 0o644)
        assert (change.consent is not None) == (case.asks and want.startswith("install the certificate"))
    if case.asks:
        assert "(replaces: " in changes[0].summary
    return read


def self_signed_pem() -> bytes:
    return self_signed("old.example.com").fullchain


def test_tls_reads_no_host_fact(make_cfg: ConfigFactory) -> None:
    assert_declared(TLSStep, [_tls(make_cfg, c) for c in TLS])
