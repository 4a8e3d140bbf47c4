"""End to end: no registry has the base image, the offer is accepted, debootstrap really builds it.

The canned-fact tests (test_base_image.py) check the question and the
commands; this one runs them: the Images step's plan on this machine's own
Docker (the local target) offers to pull ``images.base_image``; the pull
really fails (a name no registry has), the ``build-base-image`` question is
answered yes, and the shipped recipe runs debootstrap from the Debian mirror
into an empty cache (no cached rootfs to fall back on) and ``docker import``s
it. The image must then be a working Debian bookworm with CA certificates
and the Debian mirror configured, which is what the Dockerfiles need.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

import claudegate.deploy.base_image as base_image
from claudegate.connectors.local import LocalConnector
from claudegate.control.controls import RunControls
from claudegate.control.progress import StepEvent
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.images import ImagesStep
from claudegate.session.scripted import ScriptedInteraction
from tests.deploy.support import write_config, write_secret
from tests.support.parallel import name_suffix

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]


def test_no_registry_and_a_yes_builds_the_base_image_with_debootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = f"claudegate-e2e/no-registry-base:{secrets.token_hex(4)}"
    cache = tmp_path / "debootstrap-cache"
    monkeypatch.setattr(base_image, "BUILD_CACHE", cache)
    cfg = write_config(
        tmp_path / "cfg",
        {
            "target": {"host": "local", "sudo": False},
            "domain": "gw.example.test",
            "tls": {"mode": "internal-ca"},
            "upstream": {"api_key_file": str(write_secret(tmp_path / "key", "sk-ant-api03-" + "x" * 40))},
            "clients": [{"name": "base"}],
            "images": {"base_image": tag, "transfer": "build"},
            "state_dir": str(tmp_path / "state"),
        },
    )
    asked = ScriptedInteraction(consent_answers={"build-base-image": True})
    events: list[StepEvent] = []
    ctx = Context(
        cfg=cfg,
        connector=LocalConnector(),
        layout=HostLayout(root=str(tmp_path / "root"), prefix=f"cgbase{name_suffix()}"),
        options=RunOptions("deploy"),
        reporter=events.append,
        controls=RunControls(interaction=asked),
    )
    try:
        offer = [c for c in ImagesStep().plan(ctx) if c.summary.startswith(f"pull the base image {tag}")]
        assert len(offer) == 1, [c.summary for c in ImagesStep().plan(ctx)]
        (op,) = offer[0].ops
        assert isinstance(op, Call)
        ctx.execute(op)

        assert [q.topic for q in asked.asked] == ["build-base-image"]
        notes = [e.message for e in events if e.kind == "note"]
        assert any(n.startswith(f"cannot pull {tag}: ") for n in notes), notes
        # debootstrap ran (an empty cache): its rootfs tarball and log are there now.
        assert list(cache.glob("debian-bookworm-*-minbase-r*.tar")), list(cache.iterdir())
        assert list(cache.glob("rootfs.*")) == []  # its work directory is gone
        probe = subprocess.run(
            [
                "docker", "run", "--rm", "--network", "none", tag, "sh", "-c",
                "cat /etc/debian_version; test -s /etc/ssl/certs/ca-certificates.crt && echo certs; "
                "cat /etc/apt/sources.list.d/debian.sources",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        lines = probe.stdout.splitlines()
        assert lines[0].startswith("12."), lines
        assert "certs" in lines
        assert "Suites: bookworm bookworm-updates" in probe.stdout
        # The step is satisfied now: planning again offers nothing for the base.
        assert not [c for c in ImagesStep().plan(ctx) if "base image" in c.summary]
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)
