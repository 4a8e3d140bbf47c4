"""The commented examples validate, and between them document every key of the model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from claudegate.config import DeployConfig, edge_settings, gateway_config, load_config
from claudegate.config.load import _unwrap
from claudegate.deploy.gateway_cli import keys_create

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# An alternative written as a comment is the line itself with "# " in front
# of the key ("  # cert_file: /etc/..."); removing the "# " makes it YAML again.
_COMMENTED_KEY = re.compile(r"^(\s*)# (?=[a-z_]+:(?: |$))", re.MULTILINE)


def model_keys(model: type[BaseModel] = DeployConfig, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.add(path)
        tp = _unwrap(info.annotation)
        if get_origin(tp) is list:
            tp = _unwrap(get_args(tp)[0])
            path += "[]"
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            keys |= model_keys(tp, path + ".")
    return keys


def yaml_keys(data: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            keys.add(f"{prefix}{key}")
            keys |= yaml_keys(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            keys |= yaml_keys(item, prefix.removesuffix(".") + "[].")
    return keys


@pytest.mark.parametrize("name", ["local.yaml", "remote.yaml"])
def test_example_validates_without_the_secret(name: str) -> None:
    cfg = load_config(EXAMPLES / name)  # check_secret_files is the deploy's, not run here
    edge_settings(cfg)
    gateway_config(cfg)
    for client in cfg.clients:
        keys_create(client)


def test_local_example_is_this_machine_with_the_internal_ca() -> None:
    cfg = load_config(EXAMPLES / "local.yaml")
    assert cfg.target.is_local
    assert cfg.tls.mode == "internal-ca"
    assert cfg.upstream.api_key_env == "ANTHROPIC_API_KEY"


def test_remote_example_is_a_server_with_acme() -> None:
    cfg = load_config(EXAMPLES / "remote.yaml")
    assert not cfg.target.is_local
    assert cfg.tls.mode == "acme"
    assert cfg.tls.email
    assert cfg.upstream.api_key_file is not None


def test_every_model_key_is_documented_in_an_example() -> None:
    documented: set[str] = set()
    for name in ("local.yaml", "remote.yaml"):
        text = (EXAMPLES / name).read_text()
        documented |= yaml_keys(yaml.safe_load(text))
        documented |= yaml_keys(yaml.safe_load(_COMMENTED_KEY.sub(r"\1", text)))
    # A mapping field (clients[].filters) has free keys: its own key documents it.
    documented = {k for k in documented if not k.startswith("clients[].filters.")}
    missing = sorted(model_keys() - documented)
    assert missing == [], f"keys missing from examples/: {missing}"
    unknown = sorted(documented - model_keys())
    assert unknown == [], f"examples/ document keys the model does not have: {unknown}"


def test_the_examples_hold_no_key() -> None:
    for name in ("local.yaml", "remote.yaml"):
        assert "sk-ant" not in (EXAMPLES / name).read_text()
