"""``claudegate backup`` and ``claudegate restore``: thin front ends over :mod:`claudegate.backup`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate.cli import output
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, connect, load, run

__all__ = ["backup_command", "restore_command"]

PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="encrypt/decrypt with the passphrase on this file's first line"),
]
PassEnvOpt = Annotated[
    str | None,
    typer.Option("--passphrase-env", metavar="VAR", help="... or with the one in this environment variable"),
]


@contextlib.contextmanager
def _state_host(cfg: Any, accept_host_key: str | None) -> Iterator[Any]:
    """A verified connection to state.host when the config has one (its PostgreSQL is backed up too)."""
    if cfg.state is None or cfg.state.host is None:
        yield None
        return
    from claudegate.deploy.state_host import state_config

    with connect(state_config(cfg), accept_host_key) as conn:
        yield conn


def backup_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write (0600; refuses to overwrite)")],
    config: ConfigOpt = DEFAULT_CONFIG,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Save what a deploy cannot re-create: keystore (key hashes, scopes, usage), pepper, ACME state.

    The file is 0600; with a passphrase (--passphrase-file or --passphrase-env)
    it is encrypted (scrypt + Fernet). It holds no client key and not the
    Anthropic key, but keystore and pepper together let anyone check guesses
    of client keys offline: keep it as secret as the server.

    \b
      claudegate backup  --config deploy.yaml --out gw-2026-11-30.cgbackup --passphrase-file ~/.cg-pass
      claudegate restore --config new-server.yaml --from gw-2026-11-30.cgbackup --passphrase-file ~/.cg-pass
    """

    def body() -> None:
        from claudegate.backup import create_backup, read_passphrase

        passphrase = read_passphrase(passphrase_file, passphrase_env)
        cfg = load(config)
        with connect(cfg, accept_host_key) as conn, _state_host(cfg, accept_host_key) as state_conn:
            result = create_backup(cfg, conn, out, passphrase=passphrase, force=force, state_connector=state_conn)
        print(result.text())

    run(body)


def restore_command(
    source: Annotated[Path, typer.Option("--from", help="a file claudegate backup wrote")],
    config: ConfigOpt = DEFAULT_CONFIG,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Put a backup onto a deployed host (e.g. a new server): the old client keys work there after.

    Deploy to the host first (claudegate deploy), then restore. The keystore
    and pepper on the host are replaced (clients made there since are gone);
    the gateway is stopped for a few seconds. Run claudegate deploy afterwards
    to converge the clients to deploy.yaml and re-key the smoke test.
    """

    def body() -> None:
        from claudegate.backup import read_passphrase, restore_backup

        passphrase = read_passphrase(passphrase_file, passphrase_env)
        cfg = load(config)
        if not yes and not typer.confirm(
            f"Replace the keystore and pepper on {cfg.target.host} with {source}?", default=False
        ):
            raise typer.Exit(1)
        with connect(cfg, accept_host_key) as conn, _state_host(cfg, accept_host_key) as state_conn:
            result = restore_backup(cfg, conn, source, passphrase=passphrase, state_connector=state_conn)
        print(result.text())
        output.err("next: claudegate deploy --config ... (converges clients, re-keys the smoke test)")

    run(body)
