"""Release and gateway ids: stable for the same inputs, new for any change that matters."""

from __future__ import annotations

import json
from pathlib import Path

from claudegate.deploy.build_contexts import BuildContext, gateway_context, nginx_context
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.release import build_release, parse_manifest
from claudegate.deploy.secret_inputs import key_fingerprint
from claudegate.redact import Secret
from tests.deploy.conftest import UPSTREAM_KEY, ConfigFactory

LAYOUT = HostLayout()
FP = key_fingerprint(Secret(UPSTREAM_KEY))


def test_same_config_same_release_byte_for_byte(make_cfg: ConfigFactory) -> None:
    a = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    b = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    assert a.rid == b.rid and a.gateway_id == b.gateway_id
    assert a.files == b.files and a.gateway_files == b.gateway_files
    assert len(a.rid) == 12 and int(a.rid, 16) >= 0


def test_an_nginx_only_change_keeps_the_gateway(make_cfg: ConfigFactory) -> None:
    a = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    b = build_release(make_cfg(limits={"per_ip": {"rate": "5r/s", "burst": 10}}), LAYOUT, key_fingerprint=FP)
    assert a.rid != b.rid
    assert a.gateway_id == b.gateway_id
    assert a.files["nginx/nginx.conf"] == b.files["nginx/nginx.conf"]
    assert a.files["nginx/claudegate.conf"] != b.files["nginx/claudegate.conf"]


def test_a_gateway_change_or_a_new_key_makes_a_new_gateway(make_cfg: ConfigFactory) -> None:
    a = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    body = build_release(make_cfg(limits={"max_body_size": "8m"}), LAYOUT, key_fingerprint=FP)
    rotated = build_release(make_cfg(), LAYOUT, key_fingerprint=key_fingerprint(Secret("sk-ant-api03-other")))
    assert len({a.gateway_id, body.gateway_id, rotated.gateway_id}) == 3
    assert len({a.rid, body.rid, rotated.rid}) == 3
    # nginx names the gateway of its release
    assert f"server gateway-{rotated.gateway_id}:8080;".encode() in rotated.files["nginx/claudegate.conf"]


def test_new_sources_make_new_image_tags_and_a_new_release(make_cfg: ConfigFactory) -> None:
    contexts = {"gateway": gateway_context(), "nginx": nginx_context()}
    a = build_release(make_cfg(), LAYOUT, key_fingerprint=FP, contexts=contexts)
    patched = dict(contexts["nginx"].files, Dockerfile=contexts["nginx"].files["Dockerfile"] + b"# changed\n")
    contexts["nginx"] = BuildContext("nginx", patched)
    b = build_release(make_cfg(), LAYOUT, key_fingerprint=FP, contexts=contexts)
    assert a.images["gateway"] == b.images["gateway"]
    assert a.images["nginx"] != b.images["nginx"] and a.rid != b.rid
    assert a.images["nginx"].startswith("claudegate/nginx:")
    other_base = build_release(
        make_cfg(images={"base_image": "debian:bookworm-slim"}), LAYOUT, key_fingerprint=FP
    )
    assert other_base.images["gateway"] != a.images["gateway"]


def test_the_manifest_describes_the_release(make_cfg: ConfigFactory) -> None:
    release = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    manifest = json.loads(release.files["release.json"])
    assert manifest["gateway_id"] == release.gateway_id and manifest["images"] == release.images
    assert manifest["smoke"] == {"max_body_bytes": 32 * 1024 * 1024, "per_ip_burst": 40}
    again = parse_manifest(release.rid, release.files["release.json"])
    assert (again.gateway_id, again.images, again.smoke) == (
        release.gateway_id,
        release.images,
        release.smoke,
    )
    assert again.files == {}


def test_rendered_files_hold_no_secret(make_cfg: ConfigFactory) -> None:
    release = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    for data in [*release.files.values(), *release.gateway_files.values()]:
        assert UPSTREAM_KEY.encode() not in data
    gateway_yaml = release.gateway_files["gateway.yaml"].decode()
    assert "api_key_file: /run/secrets/anthropic_api_key" in gateway_yaml
    assert "trusted_proxies:\n- 10.213.71.2/32" in gateway_yaml


def test_context_tags_ignore_pycache(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    (assets / "gateway" / "claudegate_gateway" / "__pycache__").mkdir(parents=True)
    (assets / "gateway" / "Dockerfile").write_text("FROM x\n")
    (assets / "gateway" / "requirements.lock").write_text("")
    (assets / "gateway" / "claudegate_gateway" / "__init__.py").write_text("")
    first = gateway_context(assets).tag("base:1")
    (assets / "gateway" / "claudegate_gateway" / "__pycache__" / "x.cpython-311.py").write_text("junk")
    assert gateway_context(assets).tag("base:1") == first
