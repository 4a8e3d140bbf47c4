"""The clients step: the keystore converges to the clients deploy.yaml lists.

- A client the keystore lacks (or holds revoked) is created; its new key
  leaves the host once, on that command's stdout, and is saved on the
  operator side at once (``<state_dir>/keys/<name>.key``, 0600) -- so a run
  interrupted right after cannot lose it -- and returned to show once.
- A client whose scopes, limits or expiry differ is updated in place
  (``keys update``): its key keeps working, and the plan shows the
  difference field by field.
- A client in the keystore that deploy.yaml does not list is reported; it is
  revoked only when the run asks for it (``options.prune``, from
  ``claudegate deploy --prune``).

The smoke test authenticates as ``claudegate-smoke``, scoped to exactly what
the smoke test calls (:data:`SMOKE_SCOPES`) with a low rpm. Its key is
replaced on every real deploy (the smoke step runs on every one), so a copy
that leaked from an operator's machine stops working at the next deploy.
"""

from __future__ import annotations

import functools
from pathlib import Path

from claudegate.config.model import Client
from claudegate.deploy import docker_cli, gateway_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.gateway_cli import (
    AUDIT_CLIENT_PREFIX,
    TOOL_CLIENT_PREFIX,
    ClientRecord,
    describe_differences,
)
from claudegate.errors import ConfigError, DeployFailed
from claudegate.private_files import write_private
from claudegate.probes.pace import PACE_PATH
from claudegate.redact import Secret
from claudegate.smoke import SmokeTarget

__all__ = ["SMOKE_CLIENT", "SMOKE_SCOPES", "ClientsStep", "keys_dir", "read_saved_key", "save_key", "smoke_scopes"]

SMOKE_CLIENT = "claudegate-smoke"

# Exactly what claudegate.smoke calls with the key: GET /v1/models, one
# count_tokens, one small streamed message (max_tokens 64) of its model, and
# the gateway's own paced stream (listed by name: no glob grants it).
# The rpm leaves room for back-to-back deploys (4 keyed requests each) and a
# `claudegate smoke-test`, and little else -- per host: with state: the key's
# rpm is one window for the whole fleet, and every host's smoke test counts in
# it (smoke_scopes).
SMOKE_SCOPES = Client(
    name=SMOKE_CLIENT,
    models=[SmokeTarget.model],
    endpoints=["/v1/models", "/v1/messages", "/v1/messages/count_tokens", PACE_PATH],
    max_tokens=64,
    stream=True,
    rpm=30,
    tpm=20000,
)


def smoke_scopes(hosts: int) -> Client:
    """The smoke client for a deploy to ``hosts`` hosts: its rpm grows with them.

    With several hosts the rpm is counted once across the fleet (Redis), and a
    roll smoke-tests every host, so a fixed rpm would refuse the smoke test of
    the later hosts of a larger fleet (seen on two hosts: a roll, a rollback
    and a deploy within a minute used the 30 up).
    """
    rpm = SMOKE_SCOPES.rpm or 30
    return SMOKE_SCOPES.model_copy(update={"rpm": rpm * max(1, hosts)})


def keys_dir(ctx: Context) -> Path:
    return Path(ctx.cfg.state_dir) / "keys"


def save_key(directory: Path, name: str, key: Secret) -> Path:
    """Write ``key`` to ``directory/name.key`` (0600, directory 0700), atomically."""
    return write_private(directory / f"{name}.key", key.reveal_bytes() + b"\n")


def read_saved_key(directory: Path, name: str) -> Secret | None:
    try:
        value = (directory / f"{name}.key").read_text().strip()
    except OSError:
        return None
    return Secret(value) if value else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class ClientsStep(Step):
    name = "clients"
    title = "Client keys"
    reads = frozenset({"docker_missing"})

    def _container(self, ctx: Context) -> str:
        if ctx.state.release is None:
            raise ConfigError("no release to manage keys on")
        return ctx.layout.gateway_container(ctx.state.release.gateway_id)

    def _in_gateway(self, ctx: Context, argv: list[str]) -> Run:
        """A keystore command run in this release's gateway."""
        return Run(tuple(docker_cli.exec_in(self._container(ctx), argv)), timeout=60)

    def _existing(self, ctx: Context) -> dict[str, ClientRecord] | None:
        """Clients in the keystore by name; None when no gateway can be asked (a dry run on a new host).

        Every gateway of the installation shares the keystore, so a dry run,
        whose new gateway does not run yet, asks one that does.
        """
        argv = gateway_cli.keys_list()
        found = ctx.fact(docker_cli.exec_in(self._container(ctx), argv))
        if not found.ok and ctx.options.dry_run:
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
            return {c.name: c for c in gateway_cli.parse_client_list(found.text)}
        except (ValueError, KeyError, TypeError):
            raise DeployFailed("the gateway's client list is not JSON") from None

    def _converge(
        self, ctx: Context, client: Client, existing: dict[str, ClientRecord] | None
    ) -> list[Change]:
        record = existing.get(client.name) if existing is not None else None
        smoke = client.name == SMOKE_CLIENT
        what = f"the smoke test's client {client.name}" if smoke else f"client {client.name}"
        if record is None or record.state == "revoked":
            again = " (revoked in the keystore: a new key)" if record is not None else ""
            return [
                Change(
                    f"create {what}{again}" + ("" if smoke else " (its key is shown once)"),
                    # A Call: the new key is on the command's stdout, and is saved here at once.
                    (Call(f"create {client.name}", functools.partial(self._create, client=client)),),
                )
            ]
        found = record.differences(client)
        if not found:
            return []
        diff = "\n".join(
            [f"--- keystore: {client.name}", f"+++ deploy.yaml: {client.name}"]
            + [line for key, old, new in found for line in (f"-{key}: {old}", f"+{key}: {new}")]
        )
        return [
            Change(
                f"update {what} in place ({describe_differences(found)}); its key keeps working",
                (self._in_gateway(ctx, gateway_cli.keys_update(client)),),
                diff=diff + "\n",
            )
        ]

    def plan(self, ctx: Context) -> list[Change]:
        existing = None if ctx.facts.docker_missing else self._existing(ctx)
        changes: list[Change] = []
        for client in [*ctx.cfg.clients, smoke_scopes(len(ctx.cfg.hosts or [ctx.cfg.target]))]:
            changes += self._converge(ctx, client, existing)
        listed = {c.name for c in ctx.cfg.clients}
        for name, record in sorted((existing or {}).items()):
            if record.active and name.startswith(AUDIT_CLIENT_PREFIX):
                # A `claudegate audit` run revokes its clients at the end; one that
                # was killed first left them: they go now, --prune or not.
                changes.append(
                    Change(
                        f"revoke client {name} (left by an interrupted claudegate audit)",
                        (self._in_gateway(ctx, gateway_cli.keys_revoke(name)),),
                    )
                )
                continue
            if name in listed or not record.active or name.startswith(TOOL_CLIENT_PREFIX):
                continue
            if ctx.options.prune:
                changes.append(
                    Change(
                        f"revoke client {name} (not in deploy.yaml; --prune)",
                        (self._in_gateway(ctx, gateway_cli.keys_revoke(name)),),
                    )
                )
            elif not self._verifying:
                ctx.note(
                    f"client {name} is in the keystore but not in deploy.yaml; it keeps working. "
                    "Add it to clients:, or run claudegate deploy --prune to revoke it"
                )
        return changes

    _verifying = False  # verify re-plans: say each note once

    def verify(self, ctx: Context) -> None:
        self._verifying = True
        try:
            super().verify(ctx)
        finally:
            self._verifying = False

    def perform(self, ctx: Context) -> None:
        # A fresh smoke key on every real deploy, unless this run just made one.
        if ctx.state.smoke_key is None:
            self._rotate_smoke(ctx)

    def _keys(self, ctx: Context, argv: list[str], name: str) -> Secret:
        result = ctx.run(docker_cli.exec_in(self._container(ctx), argv), timeout=60)
        key = _last_line(result.text)
        if not key or " " in key:
            raise DeployFailed(f"the gateway printed no key for client {name}")
        secret = Secret(key)
        ctx.connector.add_secret(secret)
        save_key(keys_dir(ctx), name, secret)
        return secret

    def _create(self, ctx: Context, *, client: Client) -> None:
        key = self._keys(ctx, gateway_cli.keys_create(client), client.name)
        if client.name == SMOKE_CLIENT:
            ctx.state.smoke_key = key
        else:
            ctx.state.new_keys[client.name] = key

    def _rotate_smoke(self, ctx: Context) -> None:
        ctx.state.smoke_key = self._keys(ctx, gateway_cli.keys_rotate(SMOKE_CLIENT, 0), SMOKE_CLIENT)
