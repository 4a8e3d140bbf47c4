"""Command definitions. Heavy modules (paramiko, pydantic models, jinja2) are
imported inside the commands so `claudegate --help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from claudegate import __version__
from claudegate.cli import output
from claudegate.cli.audit import audit_command
from claudegate.cli.backup import backup_command, restore_command
from claudegate.cli.demo import try_command
from claudegate.cli.help import WrappedHelpGroup
from claudegate.cli.keys import keys_app
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, JsonOpt, run, warn_missing_secrets
from claudegate.cli.options import load as _load
from claudegate.cli.options import session as _session
from claudegate.cli.state import migrate_state_command, state_app
from claudegate.cli.usage import usage_command
from claudegate.errors import EXIT_CODE_HELP, ExitCode

__all__ = ["ExitCode", "app", "main"]


def _exit_code_help() -> str:
    return "Exit codes: " + ", ".join(f"{int(code)} {what}" for code, what in EXIT_CODE_HELP.items()) + "."


HELP = """\
Deploy a hardened gateway in front of the Anthropic API on your own server,
and prove it secure with its own smoke test.

\b
  claudegate init         the setup wizard: a few screens, then it saves
                          ./deploy.yaml and deploys
  claudegate try          a demo on this machine's Docker, no Anthropic key
                          needed (try --stop removes it)

Every command reads ./deploy.yaml unless --config names another file.

\b
  claudegate plan         what a deploy would change (changes nothing)
  claudegate deploy       deploy, smoke-test, keep the old release on failure
  claudegate smoke-test   run the smoke test against what is deployed
  claudegate check        test the connection: SSH, host key, sudo, Docker,
                          ports
  claudegate keys list    client keys: create, rotate, revoke (keys --help)
  claudegate usage        requests, tokens and cost per client per day
  claudegate audit        attack the deployed gateway from outside; report
                          what held

Start from an example: `claudegate init --example local --out deploy.yaml`
(this machine; the same text as examples/local.yaml) or `--example remote`
(a server over SSH, examples/remote.yaml).

Questions (an unknown host key, installing Docker, replacing a certificate)
are asked on a terminal; without one, pass the flag the error names
(--accept-host-key SHA256:..., --yes). Ctrl-C stops at the next safe point;
the next run resumes.

""" + _exit_code_help() + "\n"


app = typer.Typer(
    cls=WrappedHelpGroup,
    name="claudegate",
    help=HELP,
    add_completion=False,
    pretty_exceptions_enable=False,  # locals would hold secrets
    rich_markup_mode=None,
)
def _version(value: bool) -> None:
    if value:
        print(f"claudegate {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    # Bare `claudegate` is a question, not a mistake: the help, exit 0.
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


@app.command()
def deploy(
    config: ConfigOpt = DEFAULT_CONFIG,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and file diffs; change nothing")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="agree to installing Docker and replacing a certificate without asking")
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

    Several hosts (hosts:): host by host, holding the fleet's lock (a lease in
    the shared Redis, reached through a host's SSH): a second deploy, rollback
    or uninstall of the same fleet is refused at once, naming who holds it.
    """

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, yes=yes, progress=progress) as session:
            result = session.deploy(dry_run=dry_run, prune=prune, refresh=refresh)
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def plan(
    config: ConfigOpt = DEFAULT_CONFIG,
    prune: Annotated[
        bool, typer.Option("--prune", help="show the revocations deploy --prune would make")
    ] = False,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="every change of every step, and the diff of each rendered file"),
    ] = False,
) -> None:
    """Show what a deploy would change. Changes nothing, here or on the target.

    By default one line per step that would change: how many changes and the first of them. --verbose
    lists every change and the diff of every file the deploy would write; --json has every change too.
    """

    def body() -> None:
        progress = None if json_out else output.StepPrinter(brief=not verbose)
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            warn_missing_secrets(session.config)
            result = session.plan(prune=prune)
        output.deploy_result(result, json_out=json_out, brief=not verbose)

    run(body)


@app.command()
def status(
    config: ConfigOpt = DEFAULT_CONFIG,
    expiry_days: Annotated[
        int | None,
        typer.Option(
            "--expiry-days",
            min=0,
            metavar="DAYS",
            help="warn of client keys that stop working within this many days [default: 14]",
        ),
    ] = None,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The deployed release, its containers and their health; certificates and client keys about to expire."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key) as session:
            report = session.status(expiry_days=expiry_days)
        if session.config.several_hosts:  # every host of hosts:, each under its own header
            output.each_host(report, json_out=json_out)
            return
        output.status_report(report, json_out=json_out)

    run(body)


@app.command()
def logs(
    config: ConfigOpt = DEFAULT_CONFIG,
    service: Annotated[str, typer.Argument(help="nginx or gateway")] = "gateway",
    tail: Annotated[int, typer.Option(metavar="N", help="lines from the end")] = 100,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Recent log lines of the nginx or gateway container (every host of hosts:, each under its header)."""

    def body() -> None:
        if service not in ("nginx", "gateway"):
            raise typer.BadParameter("SERVICE must be nginx or gateway")
        with _session(config, accept_host_key=accept_host_key) as session:
            text = session.logs(service, tail)
        if isinstance(text, str):
            sys.stdout.write(text)
        else:  # every host of hosts:, each under its own header
            output.each_host(text, json_out=False, text=lambda lines: lines)

    run(body)


@app.command("smoke-test")
def smoke_test(config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """TLS, redirects, auth, models, count_tokens, a stream, 413, 429, headers: all must pass."""

    def body() -> None:
        from claudegate.errors import SmokeTestFailed

        with _session(config, accept_host_key=accept_host_key, progress=None if json_out else output.StepPrinter()) as s:
            report = s.smoke_test()
        if s.config.several_hosts:  # every host's table under its header; a failing check names its host
            output.each_host(report, json_out=json_out, text=lambda r: r.table())
            failed = [f"{c.name} on {run.label}" for run in report.runs if run.result is not None
                      for c in run.result.checks if c.status == "fail"]  # fmt: skip
        else:
            output.smoke_report(report, json_out=json_out)
            failed = [c.name for c in report.checks if c.status == "fail"]
        if failed:
            raise SmokeTestFailed(f"smoke test failed: {', '.join(failed)}", failed=failed)

    run(body)


@app.command()
def rollback(config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Switch back to the previous release (kept by every deploy).

    Several hosts: only if every host goes back to one release; host by host,
    holding the fleet's lock. If a host fails, the hosts already rolled back
    go forward again, and the error says which host serves which release.
    """

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            result = session.rollback()
        _day2_result(session, result, json_out)

    run(body)


@app.command()
def renew(config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Renew the ACME certificate when it is due, then reload nginx (safe to run from cron); with several hosts the first one renews and the others install what it shares."""

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            result = session.renew()
        _day2_result(session, result, json_out)

    run(body)


@app.command()
def uninstall(
    config: ConfigOpt = DEFAULT_CONFIG,
    keep_data: Annotated[bool, typer.Option("--keep-data/--purge", help="keep the keystore, audit log and certificates")] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Stop and remove the gateway's containers, networks and images from the host (every host of hosts:)."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key, yes=yes, progress=output.StepPrinter()) as session:
            result = session.uninstall(keep_data=keep_data)
        _day2_result(session, result, False)

    run(body)


@app.command()
def render(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write into (created)")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Write every file the deploy would put on the host into a local directory (secrets excluded)."""

    def body() -> None:
        with _session(config) as session:
            result = session.render(out)
        for path in result.files:
            print(path)
        for note in result.notes:
            output.err(note)

    run(body)


def _day2_result(session: Any, result: Any, json_out: bool) -> None:
    """One host's playbook result, or every host's (hosts:) under its header, failures named."""
    if session.config.several_hosts:
        output.each_host(result, json_out=json_out, text=output.deploy_text)
    else:
        output.deploy_result(result, json_out=json_out)


class _InitCommand(TyperCommand):
    """``init``: a bare ``--example`` (last, or before another option) lists the examples, instead of
    Click's "requires an argument" or taking the next option (``--out``) as the example's name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        for at, arg in enumerate(args):
            if arg == "--example" and (at + 1 == len(args) or args[at + 1].startswith("-")):
                from claudegate.session.examples import EXAMPLES

                output.err("error: --example needs the name of an example:\n" + "\n".join(
                    f"  --example {name:<8} {what}" for name, what in EXAMPLES.items()))
                raise typer.Exit(ExitCode.CONFIG)
        result: list[str] = super().parse_args(ctx, args)
        return result


@app.command(cls=_InitCommand)
def init(
    example: Annotated[
        str | None,
        typer.Option(
            "--example",
            metavar="local|remote",
            help="write a commented example config instead of running the wizard: local (this machine) or"
            " remote (a server over SSH)",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="<path>",
            help="the deploy.yaml to write: the wizard saves there (and loads it first if it exists), --example"
            " writes the example there",
        ),
    ] = Path("deploy.yaml"),
    force: Annotated[bool, typer.Option("--force", help="--example: overwrite --out if it exists")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="an existing deploy.yaml: open the day-2 console on it", show_default=False),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="ignore the saved draft of an unfinished wizard")] = False,
) -> None:
    """The setup wizard (a terminal UI); `--example local|remote` writes a commented example instead.

    \b
      claudegate init                    the wizard; it saves --out (deploy.yaml),
                                         editing it if it exists
      claudegate init --config FILE      the console: status, clients, logs,
                                         rollback, smoke test
      claudegate init --example remote   a commented example config to edit
    """

    def body() -> None:
        from claudegate.session.examples import EXAMPLES, write_example

        if example is None:
            if config is not None:
                _load(config)  # the console on a missing or broken config fails as `console` and plan do
            _wizard(config, fresh=fresh, save_to=out)
            return
        path = write_example(example, out, force=force)
        output.err(f"wrote {path} ({example}: {EXAMPLES[example]}); edit it, then:")
        output.err(f"  claudegate check --config {path}\n  claudegate deploy --config {path}")

    run(body)


@app.command()
def console(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """The day-2 console on a deployed config: status, clients (create/rotate/revoke), logs, rollback, smoke test."""

    def body() -> None:
        # A missing or broken config fails here, as for plan, instead of opening the setup wizard.
        _load(config)
        _wizard(config, fresh=False, save_to=config)

    run(body)


def _wizard(config: Path | None, *, fresh: bool, save_to: Path) -> None:
    """Run the Textual wizard (or console) on this terminal; without one, say what to do instead."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        output.err(
            "the wizard needs a terminal (stdin and stdout are not one). Without one, start from an example:\n"
            "  claudegate init --example local --out deploy.yaml    this machine\n"
            "  claudegate init --example remote --out deploy.yaml   a server over SSH\n"
            "then edit it and run:  claudegate deploy --config deploy.yaml"
        )
        raise typer.Exit(ExitCode.ERROR)
    from claudegate.wizard import run as run_wizard

    code = run_wizard(config, fresh=fresh, save_to=save_to)
    if code:
        raise typer.Exit(code)


@app.command()
def check(config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Test the connection: SSH and host key, sudo, distribution, Docker, free ports, what a deploy installs."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key) as session:
            warn_missing_secrets(session.config)
            report = session.test_connection()
        if session.config.several_hosts:  # every host under its header; a host not reached is named
            output.each_host(report, json_out=json_out)
            if not all(r.ok for r in report.results):
                raise typer.Exit(ExitCode.ERROR)
            return
        output.status_report(report, json_out=json_out)
        if not report.ok:
            raise typer.Exit(ExitCode.ERROR)

    run(body)


app.add_typer(keys_app, name="keys")
app.command("try")(try_command)
app.command("usage")(usage_command)
app.command("audit")(audit_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.add_typer(state_app, name="state")
app.command("migrate-state")(migrate_state_command)


def main() -> None:
    app()
