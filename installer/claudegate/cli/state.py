"""``claudegate state deploy`` and ``claudegate migrate-state``: thin front ends over the state tier."""

from __future__ import annotations

from typing import Annotated

import typer

from claudegate.cli import output
from claudegate.cli.help import WrappedHelpGroup
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, connect, load, run

__all__ = ["migrate_state_command", "state_app"]

state_app = typer.Typer(
    cls=WrappedHelpGroup,
    help="Redis and PostgreSQL on state.host, deployed by claudegate (see docs/deploy.md, 'Shared state').",
    no_args_is_help=True,
)


@state_app.command("deploy")
def state_deploy(
    config: ConfigOpt = DEFAULT_CONFIG,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; change nothing")] = False,
    accept_host_key: HostKeyOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="agree to installing Docker on the state host")] = False,
) -> None:
    """Deploy Redis and PostgreSQL on state.host: Debian's packages, private address only, generated passwords.

    Idempotent (a second run changes nothing). The passwords are kept in
    STATE_DIR/state/ (0600) and on the host; the address used is printed
    with the URLs the gateways' state: section takes.
    """

    def body() -> None:
        from claudegate.deploy.state_host import deploy_state_host, state_config

        cfg = load(config)
        with connect(state_config(cfg), accept_host_key, yes=yes) as conn:
            result = deploy_state_host(cfg, conn, dry_run=dry_run)
        print(result.text())

    run(body)


def migrate_state_command(
    config: ConfigOpt = DEFAULT_CONFIG,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Copy the one-host SQLite keystore (keys, owned objects, usage) into state:'s PostgreSQL.

    Every issued key keeps working (the pepper stays the same). Run again,
    it copies nothing twice; a target that holds different data is refused
    and nothing is written. With state.host, run `claudegate state deploy` first.
    """

    def body() -> None:
        from claudegate.state_move import migrate_state, postgres_target

        cfg = load(config)
        postgres_target(cfg)  # what is missing is said before connecting anywhere
        with connect(cfg, accept_host_key) as conn:
            result = migrate_state(cfg, conn)
        print(result.text())
        output.err("the gateways use it once their state: section names it (the multi-host deploy)")

    run(body)
