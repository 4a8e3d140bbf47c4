"""check_secret_files: metadata only (exists, regular, owner, mode, size), never the content."""

from __future__ import annotations

import builtins
import io
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from claudegate.config import (
    TLS,
    DeployConfig,
    DeployConfigError,
    Target,
    Upstream,
    check_secret_files,
    load_config,
)

CANARY = "sk-ant-api03-CANARY-CANARY-CANARY"


def write_config(
    tmp_path: Path, upstream: str, tls: str = "tls: {mode: internal-ca}\n", target: str = ""
) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        f"target:\n  host: gw.example.com\n{target}domain: gw.example.com\n{tls}upstream:\n{upstream}"
    )
    return path


def secret(tmp_path: Path, mode: int, name: str = "anthropic_api_key", content: str = CANARY) -> Path:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(mode)
    return path


def errors(cfg: DeployConfig, **kwargs: Any) -> list[str]:
    with pytest.raises(DeployConfigError) as info:
        check_secret_files(cfg, **kwargs)
    assert CANARY not in str(info.value)
    return str(info.value).splitlines()


def test_loading_does_not_need_the_secret(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "  api_key_file: missing_key\n"))
    assert cfg.upstream.api_key_file == tmp_path / "missing_key"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_passes(tmp_path: Path, mode: int) -> None:
    secret(tmp_path, mode)
    check_secret_files(load_config(write_config(tmp_path, "  api_key_file: anthropic_api_key\n")))


@pytest.mark.parametrize(
    ("mode", "readers"), [(0o644, "everyone"), (0o640, "its group"), (0o604, "everyone")]
)
def test_readable_by_others_fails_with_chmod_fix(tmp_path: Path, mode: int, readers: str) -> None:
    key = secret(tmp_path, mode)
    cfg = load_config(write_config(tmp_path, "  api_key_file: anthropic_api_key\n"))
    assert errors(cfg) == [
        f"{tmp_path / 'deploy.yaml'}:6:3: upstream.api_key_file: {key} holds the Anthropic API key but is mode"
        f" {mode:04o}, readable by {readers}; run: chmod 600 {shlex.quote(str(key))}"
    ]


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "  api_key_file: anthropic_api_key\n"))
    key = tmp_path / "anthropic_api_key"
    assert errors(cfg) == [
        f"{tmp_path / 'deploy.yaml'}:6:3: upstream.api_key_file: {key} does not exist; create it:"
        f" (umask 077; cat > {shlex.quote(str(key))}), paste the Anthropic API key, then press Ctrl-D"
    ]


def test_empty_file_and_directory(tmp_path: Path) -> None:
    secret(tmp_path, 0o600, content="")
    cfg = load_config(write_config(tmp_path, "  api_key_file: anthropic_api_key\n"))
    assert errors(cfg) == [
        f"{tmp_path / 'deploy.yaml'}:6:3: upstream.api_key_file: {tmp_path / 'anthropic_api_key'} is empty;"
        " write the Anthropic API key into it"
    ]
    (tmp_path / "dir").mkdir()
    cfg = load_config(write_config(tmp_path, "  api_key_file: dir\n"))
    assert errors(cfg) == [
        f"{tmp_path / 'deploy.yaml'}:6:3: upstream.api_key_file: {tmp_path / 'dir'} is not a regular file;"
        " point it at the file holding the Anthropic API key"
    ]


def test_environment_variable(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "  api_key_env: CG_TEST_KEY\n"))
    check_secret_files(cfg, environ={"CG_TEST_KEY": CANARY})
    assert errors(cfg, environ={"CG_TEST_KEY": ""}) == [
        f"{tmp_path / 'deploy.yaml'}:6:3: upstream.api_key_env: the environment variable CG_TEST_KEY is not set"
        " or is empty; export CG_TEST_KEY in the shell that runs claudegate, or use upstream.api_key_file"
    ]


def test_tls_files_and_ssh_key_are_checked_together(tmp_path: Path) -> None:
    secret(tmp_path, 0o600)
    key = secret(tmp_path, 0o644, "privkey.pem", "-----BEGIN PRIVATE KEY-----")
    secret(tmp_path, 0o644, "fullchain.pem", "-----BEGIN CERTIFICATE-----")
    ssh = secret(tmp_path, 0o640, "id_deploy", "-----BEGIN OPENSSH PRIVATE KEY-----")
    path = write_config(
        tmp_path,
        "  api_key_file: anthropic_api_key\n",
        tls="tls:\n  mode: files\n  cert_file: fullchain.pem\n  key_file: privkey.pem\n  chain_file: chain.pem\n",
        target="  ssh_key: id_deploy\n",
    )
    cfg = load_config(path)
    assert errors(cfg) == [
        f"{path}:3:3: target.ssh_key: {ssh} holds the SSH private key but is mode 0640, readable by its group;"
        f" run: chmod 600 {ssh}",
        f"{path}:8:3: tls.key_file: {key} holds the TLS private key but is mode 0644, readable by everyone;"
        f" run: chmod 600 {key}",
        f"{path}:9:3: tls.chain_file: {tmp_path / 'chain.pem'} does not exist; create it: (umask 077; cat >"
        f" {tmp_path / 'chain.pem'}), paste the PEM data, then press Ctrl-D",
    ]


def test_the_check_never_reads_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret(tmp_path, 0o644)
    cfg = load_config(write_config(tmp_path, "  api_key_file: anthropic_api_key\n"))

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a file was opened: {args[:1]}")

    monkeypatch.setattr(builtins, "open", no_reading)
    monkeypatch.setattr(io, "open", no_reading)
    monkeypatch.setattr(os, "open", no_reading)
    monkeypatch.setattr(Path, "open", no_reading)
    with pytest.raises(DeployConfigError, match="chmod 600"):
        check_secret_files(cfg)


def test_a_model_built_in_code_gets_unpositioned_messages(tmp_path: Path) -> None:
    key = secret(tmp_path, 0o666)
    cfg = DeployConfig(
        target=Target(host="local"),
        domain="localhost",
        tls=TLS(mode="internal-ca"),
        upstream=Upstream(api_key_file=key),
    )
    assert errors(cfg) == [
        f"upstream.api_key_file: {key} holds the Anthropic API key but is mode 0666, readable by everyone;"
        f" run: chmod 600 {key}"
    ]
