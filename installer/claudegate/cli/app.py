"""Command definitions. Heavy modules (paramiko, pydantic models, jinja2) are
imported inside the commands so `claudegate --help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from claudegate import __version__
from claudegate.cli import output
from claudegate.cli.backup import backup_command, restore_command
from claudegate.cli.keys import keys_app
from claudegate.cli.options import ConfigOpt, ExitCode, HostKeyOpt, JsonOpt, connect, load, run
from claudegate.cli.usage import usage_command

HELP = """\
Deploy a hardened gateway in front of the Anthropic API on your own server,
and prove it secure with its own smoke test.

\b
  claudegate plan   --config deploy.yaml      what a deploy would change (changes nothing)
  claudegate deploy --config deploy.yaml      deploy, smoke-test, keep the old release on failure
  claudegate smoke-test --config deploy.yaml  run the smoke test against what is deployed
  claudegate keys list --config deploy.yaml   client keys: create, rotate, revoke (see keys --help)
  claudegate usage --config deploy.yaml       requests, tokens and cost per client per day

Start from examples/local.yaml (this machine) or examples/remote.yaml (a server
over SSH).

\b
Exit codes: 0 ok, 1 error, 2 bad config, 3 cannot connect, 4 host key unknown
or changed, 5 a command failed on the host, 6 deploy failed (the old release
keeps serving), 7 smoke test failed, 130 interrupted.
"""


app = typer.Typer(
    name="claudegate",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # locals would hold secrets
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"claudegate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    pass


_load = load
_connect = connect


@app.command()
def deploy(
    config: ConfigOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan and file diffs; change nothing")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask before installing Docker on the host")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="revoke clients the keystore holds but the config no longer lists")
    ] = False,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="rebuild the images without cache from a fresh base (security updates), then switch",
        ),
    ] = False,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deploy (or update) the gateway described by the config, then smoke-test it.

    Clients converge to the config: new ones get a key (shown once), changed
    scopes and limits apply in place (keys keep working); clients missing
    from the config are only reported unless --prune is given. --refresh
    builds new images (Debian updates, same sources) as a new release that
    replaces the serving one only after its smoke test passes; later deploys
    keep them. status shows when the images were built.
    """

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            if not (yes or dry_run) and sys.stdin.isatty():
                # Installing a package on someone's server deserves a yes.
                preview = core.plan(cfg, conn)
                if preview.installs_docker and not typer.confirm(
                    f"Docker is not installed on {conn.target}; install docker.io from the distribution?"
                ):
                    raise typer.Exit(ExitCode.ERROR)
            reporter = None if json_out else output.StepPrinter()
            result = core.deploy(cfg, conn, dry_run=dry_run, reporter=reporter, prune=prune, refresh=refresh)
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def plan(
    config: ConfigOpt,
    prune: Annotated[
        bool, typer.Option("--prune", help="show the revocations deploy --prune would make")
    ] = False,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what a deploy would change, with a diff of every file. Changes nothing."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            result = core.plan(cfg, conn, reporter=None if json_out else output.StepPrinter(), prune=prune)
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def status(
    config: ConfigOpt,
    expiry_days: Annotated[
        int | None,
        typer.Option(
            "--expiry-days",
            min=0,
            help="warn of client keys that stop working within this many days [default: 14]",
        ),
    ] = None,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The deployed release, its containers and their health; client keys about to expire."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            report = core.status(cfg, conn, expiry_days=expiry_days)
        output.status_report(report, json_out=json_out)

    run(body)


@app.command()
def logs(
    config: ConfigOpt,
    service: Annotated[str, typer.Argument(help="nginx or gateway")] = "gateway",
    tail: Annotated[int, typer.Option(help="lines from the end")] = 100,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Recent log lines of the nginx or gateway container."""

    def body() -> None:
        from claudegate import deploy as core

        if service not in ("nginx", "gateway"):
            raise typer.BadParameter("SERVICE must be nginx or gateway")
        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            sys.stdout.write(core.logs(cfg, conn, service, tail))

    run(body)


@app.command("smoke-test")
def smoke_test(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """TLS, redirects, auth, models, count_tokens, a stream, 413, 429, headers: all must pass."""

    def body() -> None:
        from claudegate import deploy as core
        from claudegate.errors import SmokeTestFailed

        cfg = _load(config)
        report = core.smoke_test(cfg, progress=None if json_out else output.check_line)
        output.smoke_report(report, json_out=json_out)
        if not report.ok:
            failed = [c.name for c in report.checks if c.status == "fail"]
            raise SmokeTestFailed(f"smoke test failed: {', '.join(failed)}", failed=failed)

    run(body)


@app.command()
def rollback(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Switch back to the previous release (kept by every deploy)."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            result = core.rollback(cfg, conn, reporter=None if json_out else output.StepPrinter())
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def renew(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Renew the ACME certificate now if it is due (a third of its lifetime left), then reload nginx.

    Not needed on a schedule: the deploy starts a renewer on the host that
    does this by itself (see `status`). This also restarts that renewer if
    it is missing.
    """

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            result = core.renew(cfg, conn, reporter=None if json_out else output.StepPrinter())
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def uninstall(
    config: ConfigOpt,
    keep_data: Annotated[
        bool, typer.Option("--keep-data/--purge", help="keep the keystore, audit log and certificates")
    ] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Stop and remove the gateway's containers, networks and images from the host."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        if not yes and not typer.confirm(f"Remove claudegate from {cfg.target.host}?", default=False):
            raise typer.Exit(ExitCode.ERROR)
        with _connect(cfg, accept_host_key) as conn:
            result = core.uninstall(cfg, conn, keep_data=keep_data, reporter=output.StepPrinter())
        output.deploy_result(result, json_out=False)

    run(body)


@app.command()
def render(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write into (created)")],
) -> None:
    """Write every file the deploy would put on the host into a local directory (secrets excluded)."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        result = core.render(cfg, out)
        for path in result.files:
            print(path)
        for note in result.notes:
            output.err(note)

    run(body)


@app.command()
def init() -> None:
    """The interactive wizard (Textual). Not part of this release yet: start from an example config."""
    output.err(
        "The interactive wizard is not available in this version.\n"
        "Copy examples/local.yaml or examples/remote.yaml, edit it, then run:\n"
        "  claudegate plan --config deploy.yaml\n  claudegate deploy --config deploy.yaml"
    )
    raise typer.Exit(ExitCode.ERROR)


app.add_typer(keys_app, name="keys")
app.command("usage")(usage_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)


def main() -> None:
    app()
