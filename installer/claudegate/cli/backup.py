"""``claudegate backup`` and ``claudegate restore``: front ends over ``Session.backup`` and ``Session.restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from claudegate.cli import output
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, run, session

__all__ = ["backup_command", "restore_command"]

PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="encrypt/decrypt with the passphrase on this file's first line"),
]
PassEnvOpt = Annotated[
    str | None,
    typer.Option("--passphrase-env", metavar="VAR", help="... or with the one in this environment variable"),
]



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
    of client keys offline: keep it as secret as the server. With several
    hosts (hosts:): one file with every host's pepper and state.postgres's
    rows (exported at one moment through the first host that answers).

    \b
      claudegate backup --out gw-2026-11-30.cgbackup --passphrase-file ~/.cg-pass
      claudegate restore --config new-server.yaml --from gw-2026-11-30.cgbackup \\
          --passphrase-file ~/.cg-pass
    """

    def body() -> None:
        from claudegate.backup import read_passphrase

        passphrase = read_passphrase(passphrase_file, passphrase_env)
        with session(config, accept_host_key=accept_host_key) as s:
            result = s.backup(out, passphrase=passphrase, force=force)
        print(result.text())

    run(body)


def restore_command(
    source: Annotated[Path, typer.Option("--from", help="a file claudegate backup wrote")],
    config: ConfigOpt = DEFAULT_CONFIG,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="replace without asking (needed where there is no terminal)")
    ] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Put a backup onto a deployed host (such as a new server): the old client keys work there after.

    Deploy to the host first (claudegate deploy), then restore. The keystore
    and pepper on the host are replaced (clients made there since are gone);
    the gateway is stopped for a few seconds. Run claudegate deploy afterwards
    to converge the clients to deploy.yaml and re-key the smoke test.

    With several hosts (hosts:) give a backup of this fleet (one backup
    file, its domain this config's): state.postgres's rows (keys, owned
    objects, usage) are replaced in one transaction and every gateway is
    told at once, and every host gets the backup's pepper (its gateways
    restarted only when the pepper differs), all hosts or none: every host
    must answer first, a run holding the fleet's lock refuses it, and a host
    that fails half-way undoes the rest. The fleet as it was just before is
    saved to <state_dir>/before-restore-<time>.cgbackup.
    """

    def body() -> None:
        from claudegate.backup import read_passphrase

        passphrase = read_passphrase(passphrase_file, passphrase_env)
        # The question is the session's (a prompt on a terminal, --yes otherwise; a no exits 8).
        with session(config, accept_host_key=accept_host_key, yes=yes) as s:
            result = s.restore(source, passphrase=passphrase)
        print(result.text())
        output.err("next: claudegate deploy --config ... (converges clients, re-keys the smoke test)")

    run(body)
