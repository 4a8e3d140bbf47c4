"""The secrets a deploy sends, read on the operator side and kept wrapped.

The Anthropic key is read from ``upstream.api_key_file`` or
``upstream.api_key_env`` (after :func:`claudegate.config.check_secret_files`
made sure a file is 0600 and ours) into a :class:`~claudegate.redact.Secret`,
registered with the connector so any output that contains it is masked.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping

from claudegate.config.model import DeployConfig
from claudegate.errors import ConfigError
from claudegate.redact import Secret

__all__ = ["key_fingerprint", "new_pepper", "read_upstream_key"]


def read_upstream_key(cfg: DeployConfig, *, environ: Mapping[str, str] | None = None) -> Secret:
    environ = os.environ if environ is None else environ
    up = cfg.upstream
    if up.api_key_file is not None:
        try:
            value = up.api_key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the Anthropic API key from {up.api_key_file}: {exc.strerror}",
                hint="check upstream.api_key_file",
            ) from None
        where = str(up.api_key_file)
    elif up.api_key_env is not None:
        value = environ.get(up.api_key_env, "").strip()
        where = f"${up.api_key_env}"
    else:
        raise ConfigError(
            "no Anthropic API key configured",
            hint="set upstream.api_key_file (a 0600 file) or upstream.api_key_env",
        )
    if not value:
        raise ConfigError(f"the Anthropic API key in {where} is empty", hint="write the key there")
    if any(ch.isspace() for ch in value):
        raise ConfigError(
            f"the Anthropic API key in {where} contains whitespace", hint="keep only the key itself"
        )
    return Secret(value)


def key_fingerprint(key: Secret) -> str:
    """16 hex digits of a labelled SHA-256 of the key.

    It goes into ``release.json`` so a new key makes a new gateway (the
    gateway reads its key once, at start). The key is a long random value,
    so 64 bits of its hash tell nothing about it; the label keeps the value
    from matching any other hash of the key.
    """
    return hashlib.sha256(b"claudegate-upstream-key-v1\0" + key.reveal_bytes()).hexdigest()[:16]


def new_pepper() -> Secret:
    """The server-side secret client keys are hashed with (made once per host, never rotated)."""
    return Secret(secrets.token_urlsafe(32))
