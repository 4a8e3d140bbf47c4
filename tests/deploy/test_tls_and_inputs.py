"""TLS material, the upstream key, the wheelhouse cache and render() -- all on the operator side."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from claudegate.connectors import LocalConnector, SSHConnector
from claudegate.deploy.api import connector_for, render
from claudegate.deploy.secret_inputs import key_fingerprint, read_upstream_key
from claudegate.deploy.tls_material import from_files, internal_ca, self_signed
from claudegate.deploy.wheelhouse import ensure_wheelhouse, platform_tags
from claudegate.errors import ConfigError
from claudegate.redact import Secret
from tests.deploy.conftest import UPSTREAM_KEY, ConfigFactory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_internal_ca_is_made_once_and_reused(tmp_path: Path) -> None:
    first = internal_ca(tmp_path, "gw.example.com")
    second = internal_ca(tmp_path, "gw.example.com")
    assert first == second  # same bytes: a redeploy uploads nothing
    assert first.trust == tmp_path / "ca.pem"
    assert (
        _mode(tmp_path / "tls" / "ca.key.pem") == 0o600
        and _mode(tmp_path / "tls" / "server.key.pem") == 0o600
    )
    leaf = x509.load_pem_x509_certificate(first.fullchain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example.com"]
    assert "gw.example.com" in first.summary


def test_internal_ca_renews_the_server_certificate_near_its_end(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = internal_ca(tmp_path, "gw.example.com", now=now)
    later = internal_ca(tmp_path, "gw.example.com", now=now + dt.timedelta(days=340))
    assert later.fullchain != first.fullchain and later.chain == first.chain  # new leaf, same CA
    other = internal_ca(tmp_path, "other.example.com", now=now)
    assert other.chain != first.chain  # the CA is constrained to its domain


def test_operator_files_are_checked(tmp_path: Path) -> None:
    good = internal_ca(tmp_path / "a", "gw.example.com")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(good.fullchain)
    key.write_bytes(good.privkey)
    material = from_files("gw.example.com", cert, key, None)
    assert material.chain == good.chain and material.privkey == good.privkey
    with pytest.raises(ConfigError, match=r"not other\.example\.com"):
        from_files("other.example.com", cert, key, None)
    key.write_bytes(self_signed("gw.example.com").privkey)
    with pytest.raises(ConfigError, match="does not belong"):
        from_files("gw.example.com", cert, key, None)


def test_the_upstream_key_is_read_wrapped(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    key = read_upstream_key(make_cfg())
    assert isinstance(key, Secret) and key.reveal() == UPSTREAM_KEY
    env_cfg = make_cfg(upstream={"api_key_env": "CG_TEST_KEY"})
    assert read_upstream_key(env_cfg, environ={"CG_TEST_KEY": "sk-x"}).reveal() == "sk-x"
    with pytest.raises(ConfigError, match="empty"):
        read_upstream_key(env_cfg, environ={})
    fingerprint = key_fingerprint(key)
    assert len(fingerprint) == 16 and UPSTREAM_KEY not in fingerprint


def test_render_writes_every_file_but_no_secret(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    result = render(make_cfg(), tmp_path / "out")
    names = {p.relative_to(tmp_path / "out").as_posix() for p in result.files}
    assert f"releases/{result.release_id}/release.json" in names
    assert f"releases/{result.release_id}/nginx/nginx.conf" in names
    assert f"gateways/{result.gateway_id}/gateway.yaml" in names
    assert {"images/gateway/Dockerfile", "images/nginx/Dockerfile"} <= names
    for path in result.files:
        assert UPSTREAM_KEY.encode() not in path.read_bytes()
    assert render(make_cfg(), tmp_path / "again").release_id == result.release_id


def test_connector_for(make_cfg: ConfigFactory, tmp_path: Path) -> None:
    assert isinstance(connector_for(make_cfg(target={"host": "local"})), LocalConnector)
    ssh = connector_for(make_cfg(), accept_host_key="SHA256:" + "A" * 43)
    assert isinstance(ssh, SSHConnector)
    assert (ssh.host, ssh.user, ssh.port) == ("203.0.113.10", "deploy", 22)
    assert ssh.expected_fingerprint == "SHA256:" + "A" * 43
    assert ssh.known_hosts.path == tmp_path / "known_hosts"


def test_platform_tags() -> None:
    assert platform_tags("x86_64") == ["manylinux2014_x86_64", "manylinux_2_28_x86_64"]
    assert platform_tags("arm64") == ["manylinux2014_aarch64", "manylinux_2_28_aarch64"]
    with pytest.raises(ConfigError, match="riscv64"):
        platform_tags("riscv64")


def test_a_complete_wheelhouse_is_reused_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# nothing pinned\n")
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: object) -> object:
        calls.append(argv)
        dest = Path(argv[argv.index("-d") + 1])
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")

        class Done:
            returncode = 0
            stderr = b""

        return Done()

    monkeypatch.setattr("claudegate.deploy.wheelhouse.subprocess.run", fake_run)
    first = ensure_wheelhouse(lock, "x86_64", root=tmp_path / "cache")
    second = ensure_wheelhouse(lock, "x86_64", root=tmp_path / "cache")
    assert first == second and len(calls) == 1
    assert [p.name for p in first.glob("*.whl")] == ["pkg-1.0-py3-none-any.whl"]
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".") and p.is_dir()]
    assert os.path.basename(first).endswith("-x86_64")
