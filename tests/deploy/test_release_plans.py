"""Plans of the release, rollback, uninstall and smoke steps from canned host facts, one case a row.

See :mod:`tests.deploy.canned`: no host, no Docker; any command a plan is
not expected to run fails the case, and so does a host fact read that the
step does not declare.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

import pytest

from claudegate.connectors.base import Result
from claudegate.deploy.facts import HostFacts
from claudegate.deploy.layout import LABEL_SPEC, HostLayout
from claudegate.deploy.release import build_release
from claudegate.deploy.services import gateway_spec_for
from claudegate.deploy.steps.files import ReleaseStep
from claudegate.deploy.steps.rollback import RollbackStep
from claudegate.deploy.steps.smoke import SmokeStep
from claudegate.deploy.steps.uninstall import UninstallStep
from claudegate.errors import ConfigError, DeployFailed
from tests.deploy.canned import MISSING, assert_declared, context, kinds, ok, plan, recorded
from tests.deploy.conftest import ConfigFactory

LAYOUT = HostLayout()
R1, R2 = "r00000000001", "r00000000002"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(n: int, gateway: str | None = None) -> bytes:
    return json.dumps({
        "gateway_id": gateway or f"g{n:011d}", "images": {"gateway": f"claudegate-gateway:{n}", "nginx": f"claudegate-nginx:{n}"},
        "base_image": "debian:bookworm-slim", "smoke": {},
    }).encode()  # fmt: skip


# -- release -------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseCase:
    id: str
    on_host: str  # "nothing", "all", "gateway only"
    current: str | None = None
    changes: tuple[str, ...] = ()  # summary starts
    diff_header: str | None = None  # the release diff's first file header names this


RELEASE = [
    ReleaseCase("a new host: both uploaded, diffs against nothing", "nothing",
                changes=("upload gateway config", "upload release"), diff_header="--- /dev/null\n+++ new/releases/"),
    ReleaseCase("all there", "all", current=R1),
    ReleaseCase("a new release beside the serving one: diffed against it", "gateway only", current=R1,
                changes=("upload release",), diff_header=f"releases/{{{R1} -> "),
]


@pytest.mark.parametrize("case", RELEASE, ids=[c.id for c in RELEASE])
def test_release_plan(make_cfg: ConfigFactory, case: ReleaseCase) -> None:
    _release(make_cfg, case)


def _release(make_cfg: ConfigFactory, case: ReleaseCase) -> set[str]:
    cfg = make_cfg()
    release = build_release(cfg, LAYOUT, key_fingerprint="f")
    rdir, gdir = LAYOUT.release_dir(release.rid), LAYOUT.gateway_dir(release.gateway_id)
    present = {}
    if case.on_host in ("all", "gateway only"):
        present |= {posixpath.join(gdir, rel): _sha(data) for rel, data in release.gateway_files.items()}
    if case.on_host == "all":
        present |= {posixpath.join(rdir, rel): _sha(data) for rel, data in release.files.items()}

    def answer(argv: list[str]) -> Result | None:
        if argv[3:4] == ["claudegate-sha256"]:
            return ok("".join(f"{present[p]}  {p}\n" for p in argv[4:] if p in present))
        return None

    ctx = context(cfg, answer, facts=HostFacts(current=case.current))
    ctx.state.release = release
    changes, read = plan(ReleaseStep(), ctx)
    assert len(changes) == len(case.changes), [c.summary for c in changes]
    for change, want in zip(changes, case.changes, strict=True):
        assert change.summary.startswith(want), change.summary
        (untar,) = change.ops  # one tar each, unpacked next to its final name and renamed into place
        assert kinds(change) == ("claudegate-untar",)
        assert untar.argv[-1] == (rdir if want == "upload release" else gdir)  # type: ignore[union-attr]
        assert change.diff
    if case.diff_header is not None:
        assert case.diff_header in changes[-1].diff
    return read


def test_release_without_a_release_is_a_config_error(make_cfg: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match="no release to deploy"):
        plan(ReleaseStep(), context(make_cfg()))


# -- rollback ------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackCase:
    id: str
    current: str | None
    previous: str | None
    manifests: tuple[str, ...] = ()
    error: str | None = None


ROLLBACK = [
    RollbackCase("back to the previous release", R2, R1, manifests=(R1, R2)),
    RollbackCase("nothing deployed", None, None, error="no previous release to roll back to"),
    RollbackCase("one release only", R1, None, manifests=(R1,), error="no previous release to roll back to"),
    RollbackCase("previous is current (after a failed run)", R1, R1, manifests=(R1,),
                 error="no previous release to roll back to"),
    RollbackCase("the previous release's files are gone", R2, R1, manifests=(R2,),
                 error=f"the previous release {R1} is no longer on the host"),
]


@pytest.mark.parametrize("case", ROLLBACK, ids=[c.id for c in ROLLBACK])
def test_rollback_plan(make_cfg: ConfigFactory, case: RollbackCase) -> None:
    _rollback(make_cfg, case)


def _rollback(make_cfg: ConfigFactory, case: RollbackCase) -> set[str]:
    files = {posixpath.join(LAYOUT.release_dir(r), "release.json"): _manifest(int(r[1:])) for r in case.manifests}
    ctx = context(make_cfg(), files=files, playbook="rollback",
                  facts=HostFacts(current=case.current, previous=case.previous))  # fmt: skip
    if case.error is not None:
        with pytest.raises(DeployFailed, match=case.error):
            plan(RollbackStep(), ctx)
        assert ctx.state.release is None
        return set()
    changes, read = plan(RollbackStep(), ctx)
    # Nothing to change here: it aims the steps after it at the previous release, and back is forward.
    assert changes == []
    assert ctx.state.release is not None and ctx.state.release.rid == case.previous
    assert ctx.state.release.gateway_id == f"g{int(R1[1:]):011d}"
    assert ctx.state.fallback == case.current
    return read


# -- uninstall -----------------------------------------------------------------


@dataclass(frozen=True)
class UninstallCase:
    id: str
    installed: bool
    keep_data: bool = False
    keep_images: bool = False
    changes: tuple[tuple[str, tuple[str, ...]], ...] = ()


CONTAINERS = ("remove containers claudegate-gateway-g00000000001, claudegate-nginx", ("docker container rm",))
NETWORKS = tuple(
    (f"remove network {n}", ("docker network rm",))
    for n in (LAYOUT.internal_network, LAYOUT.egress_network, LAYOUT.edge_network)
)
IMAGES = ("remove images claudegate-gateway:1, claudegate-nginx:1", ("docker image rm",))
FORGET = "call: forget the journal and the lock (they lived there)"
GROUP = (f"remove the system group {LAYOUT.secrets_group}", ("claudegate-group",))
UNINSTALL = [
    UninstallCase("nothing installed", installed=False),
    UninstallCase("everything goes", installed=True, changes=(
        CONTAINERS, *NETWORKS, IMAGES, (f"remove {LAYOUT.root} (keystore", ("rm -rf", FORGET)), GROUP,
    )),
    UninstallCase("--keep-data keeps the keystore, the secrets and the group", installed=True, keep_data=True,
                  changes=(CONTAINERS, *NETWORKS, IMAGES,
                           (f"remove {LAYOUT.root} except the keystore and secrets", ("rm -rf", FORGET)))),
    UninstallCase("--keep-images", installed=True, keep_images=True, changes=(
        CONTAINERS, *NETWORKS, (f"remove {LAYOUT.root} (keystore", ("rm -rf", FORGET)), GROUP,
    )),
]  # fmt: skip


@pytest.mark.parametrize("case", UNINSTALL, ids=[c.id for c in UNINSTALL])
def test_uninstall_plan(make_cfg: ConfigFactory, case: UninstallCase) -> None:
    _uninstall(make_cfg, case)


def _uninstall(make_cfg: ConfigFactory, case: UninstallCase) -> set[str]:
    installed = case.installed

    def answer(argv: list[str]) -> Result | None:
        if argv[:3] == ["docker", "container", "ls"]:
            return ok("claudegate-nginx\nclaudegate-gateway-g00000000001\n" if installed else "")
        if argv[:3] in (["docker", "network", "inspect"], ["docker", "image", "inspect"]):
            return ok("{}") if installed else MISSING
        if argv[:2] == ["ls", "-1A"]:
            return ok(f"{R1}\ncurrent\n" if installed else "") if installed else MISSING
        if argv[3:4] == ["claudegate-stat"]:
            return ok(f"755 0 0 directory|{LAYOUT.root}\n" if installed else "")
        if argv[:2] == ["getent", "group"]:
            return ok(f"{LAYOUT.secrets_group}:x:998:\n") if installed else MISSING
        return None

    files = {posixpath.join(LAYOUT.release_dir(R1), "release.json"): _manifest(1)} if installed else {}
    ctx = context(make_cfg(), answer, files, playbook="uninstall",
                  keep_data=case.keep_data, keep_images=case.keep_images)  # fmt: skip
    changes, read = plan(UninstallStep(), ctx)
    got = [(c.summary, kinds(c)) for c in changes]
    assert len(got) == len(case.changes), got
    for (summary, ops), (want, want_ops) in zip(got, case.changes, strict=True):
        assert summary.startswith(want), summary
        assert ops == want_ops, (summary, ops)
    for change in changes:
        for op in change.ops:
            argv: Any = getattr(op, "argv", ())
            if argv[:3] == ("docker", "image", "rm"):  # refused when another installation uses it: fine
                assert op.check is False  # type: ignore[union-attr]
            if argv[:2] == ("rm", "-rf"):  # kept data is never in what is removed
                kept = {LAYOUT.data, LAYOUT.secrets} if case.keep_data else set()
                assert not kept & set(argv[3:]) and (case.keep_data or list(argv[3:]) == [LAYOUT.root])
    return read


# -- smoke ---------------------------------------------------------------------


def test_smoke_plans_nothing(make_cfg: ConfigFactory) -> None:
    # Its work is perform's (the test is not a change to the host): a plan asks the host nothing.
    changes, read = plan(SmokeStep(), context(make_cfg()))
    assert changes == [] and read == set()  # its reads are in perform's switch-back, below


def test_smoke_switch_back_reads_what_it_declares(make_cfg: ConfigFactory) -> None:
    """A failed smoke test switches nginx back to the fallback; ``previous`` stays previous, the new gateway goes."""
    cfg = make_cfg()
    new = build_release(cfg, LAYOUT, key_fingerprint="f")
    good_spec = gateway_spec_for(context(cfg, facts=HostFacts(secrets_gid=998)), build_release(
        cfg, LAYOUT, key_fingerprint="f"))  # fmt: skip
    good_gateway = "g00000000001"
    ran: list[list[str]] = []
    workers = iter(["1 nginx: master process\n7 nginx: worker process\n", "1 nginx: master process\n8 nginx: worker process\n"])

    def answer(argv: list[str]) -> Result | None:
        ran.append(argv)
        if argv[:3] == ["docker", "container", "inspect"]:
            return ok(json.dumps({"Id": "c", "Name": f"/{argv[-1]}", "Config": {"Labels": {LABEL_SPEC: good_spec.digest()}},
                                  "State": {"Status": "running"}, "NetworkSettings": {"Networks": {}}}))  # fmt: skip
        if argv[:2] == ["docker", "exec"] and "nginx" in argv and "-t" in argv:
            return ok()
        if argv[:2] == ["docker", "exec"] and "claudegate-signal" in argv:
            return ok()
        if argv[:2] == ["docker", "exec"]:  # nginx's workers: old ones, then new ones after the reload
            return ok(next(workers))
        if argv[3:4] == ["claudegate-link"] or argv[:3] == ["docker", "container", "rm"]:
            return ok()
        return None

    files = {posixpath.join(LAYOUT.release_dir(R1), "release.json"): _manifest(1, good_gateway)}
    ctx = context(cfg, answer, files, facts=HostFacts(current=R1, previous="r00000000000", secrets_gid=998))
    ctx.state.release = new
    step = SmokeStep()
    read = recorded(step, ctx, lambda c: SmokeStep._switch_back(c, R1, "smoke test failed"))
    assert_declared(SmokeStep, [read])
    links = [a[4:] for a in ran if a[3:4] == ["claudegate-link"]]
    assert links == [[LAYOUT.previous_link, "r00000000000"], [LAYOUT.current_link, R1]]
    assert ["docker", "container", "rm", "--force", "--volumes", LAYOUT.gateway_container(new.gateway_id)] in ran


# -- the declarations ----------------------------------------------------------


def test_the_cases_read_exactly_the_declared_facts(make_cfg: ConfigFactory) -> None:
    assert_declared(ReleaseStep, [_release(make_cfg, c) for c in RELEASE])
    assert_declared(RollbackStep, [_rollback(make_cfg, c) for c in ROLLBACK])
    assert_declared(UninstallStep, [_uninstall(make_cfg, c) for c in UNINSTALL])
