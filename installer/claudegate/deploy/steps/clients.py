"""The clients step: the client keys the config lists, plus the smoke test's own.

Keys are made by the gateway's CLI inside the new gateway container (the
keystore is shared by every gateway of the installation). A new key leaves
the host once, on that command's stdout, and is saved on the operator side
at once (``<state_dir>/keys/<name>.key``, 0600) -- so a run interrupted
right after cannot lose it -- and returned to the caller to show once.

The smoke test authenticates as the client ``claudegate-smoke``; its key is
kept in the same place and re-issued (rotated) if that file is lost.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from claudegate.config.derive import client_create_argv, client_scopes
from claudegate.config.model import Client
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import GATEWAY_CONFIG_IN_CONTAINER, GATEWAY_PYTHON
from claudegate.deploy.engine import Call, Change, Step
from claudegate.errors import ConfigError, DeployFailed
from claudegate.redact import Secret

__all__ = ["SMOKE_CLIENT", "ClientsStep", "keys_dir", "read_saved_key", "save_key"]

SMOKE_CLIENT = "claudegate-smoke"


def keys_dir(ctx: Context) -> Path:
    return Path(ctx.cfg.state_dir) / "keys"


def save_key(directory: Path, name: str, key: Secret) -> Path:
    """Write ``key`` to ``directory/name.key`` (0600, directory 0700), atomically."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.key"
    tmp = directory / f".{name}.key.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.reveal_bytes() + b"\n")
    tmp.replace(path)
    return path


def read_saved_key(directory: Path, name: str) -> Secret | None:
    try:
        value = (directory / f"{name}.key").read_text().strip()
    except OSError:
        return None
    return Secret(value) if value else None


def gateway_argv(argv: list[str]) -> list[str]:
    """A ``claudegate-gateway ...`` argv as the gateway image runs it (no console script there)."""
    return [*GATEWAY_PYTHON, *argv[1:]]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class ClientsStep(Step):
    name = "clients"
    title = "Client keys"

    def _container(self, ctx: Context) -> str:
        if ctx.release is None:
            raise ConfigError("no release to manage keys on")
        return ctx.layout.gateway_container(ctx.release.gateway_id)

    def _existing(self, ctx: Context) -> dict[str, dict[str, Any]] | None:
        """Clients in the keystore by name; None when no gateway can be asked (a dry run on a new host).

        Every gateway of the installation shares the keystore, so a dry run,
        whose new gateway does not run yet, asks one that does.
        """
        argv = gateway_argv(
            ["claudegate-gateway", "keys", "list", "--json", "--config", GATEWAY_CONFIG_IN_CONTAINER]
        )
        found = ctx.fact(docker_cli.exec_in(self._container(ctx), argv))
        if not found.ok and ctx.dry_run:
            for name in ctx.fact(docker_cli.container_list(ctx.layout.prefix, role="gateway")).text.split():
                found = ctx.fact(docker_cli.exec_in(name, argv))
                if found.ok:
                    break
            else:
                return None
        if not found.ok:
            stderr = ctx.connector.redact(found.stderr.decode(errors="replace"))
            raise DeployFailed(f"cannot list the gateway's clients:\n{stderr}")
        try:
            clients = json.loads(found.text)
        except ValueError:
            raise DeployFailed("the gateway's client list is not JSON") from None
        return {str(c["name"]): c for c in clients}

    def plan(self, ctx: Context) -> list[Change]:
        existing = None if ctx.docker_missing else self._existing(ctx)
        changes: list[Change] = []
        saved_smoke = read_saved_key(keys_dir(ctx), SMOKE_CLIENT)
        for client in ctx.cfg.clients:
            if existing is None or client.name not in existing:
                changes.append(
                    Change(
                        f"create client {client.name} (its key is shown once)",
                        (Call(f"create {client.name}", functools.partial(self._create, client=client)),),
                    )
                )
            elif existing[client.name].get("scopes") and _scopes_differ(
                existing[client.name]["scopes"], client
            ):
                ctx.note(
                    f"client {client.name} exists with other scopes than the config lists; "
                    f"the gateway cannot change scopes in place: revoke it and deploy again to re-create it"
                )
        smoke_known = existing is not None and SMOKE_CLIENT in existing
        if not smoke_known:
            changes.append(
                Change(
                    f"create the smoke test's client {SMOKE_CLIENT}",
                    (Call("create smoke client", self._create_smoke),),
                )
            )
        elif saved_smoke is None:
            changes.append(
                Change(
                    f"re-issue the key of {SMOKE_CLIENT} (its saved copy is missing)",
                    (Call("rotate smoke key", self._rotate_smoke),),
                )
            )
        else:
            ctx.smoke_key = saved_smoke
            ctx.connector.add_secret(saved_smoke)
        return changes

    def _keys(self, ctx: Context, argv: list[str], name: str) -> Secret:
        result = ctx.run(docker_cli.exec_in(self._container(ctx), gateway_argv(argv)), timeout=60)
        key = _last_line(result.text)
        if not key or " " in key:
            raise DeployFailed(f"the gateway printed no key for client {name}")
        secret = Secret(key)
        ctx.connector.add_secret(secret)
        save_key(keys_dir(ctx), name, secret)
        return secret

    def _create(self, ctx: Context, *, client: Client) -> None:
        ctx.new_keys[client.name] = self._keys(
            ctx, client_create_argv(client, config_path=GATEWAY_CONFIG_IN_CONTAINER), client.name
        )

    def _create_smoke(self, ctx: Context) -> None:
        argv = ["claudegate-gateway", "keys", "create", SMOKE_CLIENT, "--config", GATEWAY_CONFIG_IN_CONTAINER,
                "--models", "*", "--endpoints", "/v1/*"]  # fmt: skip
        ctx.smoke_key = self._keys(ctx, argv, SMOKE_CLIENT)

    def _rotate_smoke(self, ctx: Context) -> None:
        argv = ["claudegate-gateway", "keys", "rotate", SMOKE_CLIENT, "--config", GATEWAY_CONFIG_IN_CONTAINER]
        ctx.smoke_key = self._keys(ctx, argv, SMOKE_CLIENT)

    def verify(self, ctx: Context) -> None:
        existing = self._existing(ctx) or {}
        missing = [c.name for c in ctx.cfg.clients if c.name not in existing]
        if SMOKE_CLIENT not in existing:
            missing.append(SMOKE_CLIENT)
        if missing:
            raise DeployFailed(f"clients still missing after creating them: {', '.join(missing)}")


def _scopes_differ(recorded: dict[str, Any], client: Client) -> bool:
    wanted = client_scopes(client)
    return any(recorded.get(key) != value for key, value in wanted.items())
