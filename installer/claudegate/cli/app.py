"""Command definitions. Heavy modules (paramiko, pydantic models, jinja2) are
imported inside the commands so `claudegate --help` stays fast."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate import __version__
from claudegate.cli import output
from claudegate.errors import EXIT_CODE_HELP, ClaudegateError, ExitCode

__all__ = ["ExitCode", "app", "main"]


def _exit_code_help() -> str:
    return "Exit codes: " + ", ".join(f"{int(code)} {what}" for code, what in EXIT_CODE_HELP.items()) + "."


HELP = """\
Deploy a hardened gateway in front of the Anthropic API on your own server,
and prove it secure with its own smoke test.

\b
  claudegate plan   --config deploy.yaml      what a deploy would change (changes nothing)
  claudegate deploy --config deploy.yaml      deploy, smoke-test, keep the old release on failure
  claudegate smoke-test --config deploy.yaml  run the smoke test against what is deployed
  claudegate check --config deploy.yaml       test the connection: SSH, host key, sudo, Docker, ports

Start from an example: `claudegate init --example local --out deploy.yaml`
(this machine; the same text as examples/local.yaml) or `--example remote`
(a server over SSH, examples/remote.yaml).

Questions (an unknown host key, installing Docker, replacing a certificate)
are asked on a terminal; without one, pass the flag the error names
(--accept-host-key SHA256:..., --yes). Ctrl-C stops at the next safe point;
the next run resumes.

""" + _exit_code_help() + "\n"


app = typer.Typer(
    name="claudegate",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # locals would hold secrets
    rich_markup_mode=None,
)
keys_app = typer.Typer(help="Create, list, rotate and revoke client keys on the deployed gateway.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="deploy.yaml to use", envvar="CLAUDEGATE_CONFIG", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
HostKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--accept-host-key",
        metavar="SHA256:...",
        help="on first contact, trust the host key with exactly this fingerprint (ssh-keygen -lf form)",
    ),
]


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


@contextlib.contextmanager
def _session(
    config: Path,
    *,
    accept_host_key: str | None = None,
    yes: bool = False,
    progress: Any = None,
) -> Iterator[Any]:
    """The core session for a command: prompts on a terminal, flags otherwise; Ctrl-C cancels."""
    from claudegate.cli.interaction import CliInteraction
    from claudegate.session.core import Session

    interaction = CliInteraction(yes=yes, accept_host_key=accept_host_key)
    session = Session.open(config, interaction, progress=progress, accept_host_key=accept_host_key)
    with session, _cancel_on_sigint(session):
        yield session


@contextlib.contextmanager
def _cancel_on_sigint(session: Any) -> Iterator[None]:
    """First Ctrl-C: cancel at the next safe point (journal written, lock released); second: stop now."""

    def handler(signum: int, frame: Any) -> None:
        if session.cancelled:
            raise KeyboardInterrupt
        output.err("cancelling at the next safe point (Ctrl-C again to stop at once)")
        session.cancel("interrupted (Ctrl-C)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (an embedding program): leave its handler alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(fn: Any) -> None:
    """Run a command body, mapping the error tree to exit codes (one enum: :class:`ExitCode`)."""
    try:
        fn()
    except ClaudegateError as exc:
        output.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.err("interrupted; a rerun resumes where this one stopped")
        raise typer.Exit(ExitCode.CANCELLED) from None


@app.command()
def deploy(
    config: ConfigOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and file diffs; change nothing")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="agree to installing Docker and replacing a certificate without asking")
    ] = False,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deploy (or update) the gateway described by the config, then smoke-test it."""

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, yes=yes, progress=progress) as session:
            result = session.deploy(dry_run=dry_run)
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def plan(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Show what a deploy would change, with a diff of every file. Changes nothing."""

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            result = session.plan()
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def status(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """The deployed release, its containers and their health."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key) as session:
            report = session.status()
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
        if service not in ("nginx", "gateway"):
            raise typer.BadParameter("SERVICE must be nginx or gateway")
        with _session(config, accept_host_key=accept_host_key) as session:
            sys.stdout.write(session.logs(service, tail))

    run(body)


@app.command("smoke-test")
def smoke_test(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """TLS, redirects, auth, models, count_tokens, a stream, 413, 429, headers: all must pass."""

    def body() -> None:
        from claudegate.errors import SmokeTestFailed

        with _session(config, accept_host_key=accept_host_key, progress=None if json_out else output.StepPrinter()) as s:
            report = s.smoke_test()
        output.smoke_report(report, json_out=json_out)
        if not report.ok:
            failed = [c.name for c in report.checks if c.status == "fail"]
            raise SmokeTestFailed(f"smoke test failed: {', '.join(failed)}", failed=failed)

    run(body)


@app.command()
def rollback(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Switch back to the previous release (kept by every deploy)."""

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            result = session.rollback()
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def renew(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Renew the ACME certificate when it is due, then reload nginx (safe to run from cron)."""

    def body() -> None:
        progress = None if json_out else output.StepPrinter()
        with _session(config, accept_host_key=accept_host_key, progress=progress) as session:
            result = session.renew()
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def uninstall(
    config: ConfigOpt,
    keep_data: Annotated[bool, typer.Option("--keep-data/--purge", help="keep the keystore, audit log and certificates")] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Stop and remove the gateway's containers, networks and images from the host."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key, yes=yes, progress=output.StepPrinter()) as session:
            result = session.uninstall(keep_data=keep_data)
        output.deploy_result(result, json_out=False)

    run(body)


@app.command()
def render(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write into (created)")],
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


@app.command()
def init(
    example: Annotated[
        str | None,
        typer.Option(
            "--example",
            metavar="local|remote",
            help="write a commented example config: local (this machine) or remote (a server over SSH)",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the example")] = Path("deploy.yaml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="an existing deploy.yaml: open the day-2 console on it", show_default=False),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="ignore the saved draft of an unfinished wizard")] = False,
) -> None:
    """The setup wizard (a terminal UI); `--example local|remote` writes a commented example instead.

    \b
      claudegate init                          the wizard; it saves to --out (default ./deploy.yaml)
      claudegate init --config deploy.yaml     the console: status, clients, logs, rollback, smoke test
      claudegate init --example remote         a commented example config to edit by hand
    """

    def body() -> None:
        from claudegate.session.examples import EXAMPLES, write_example

        if example is None:
            _wizard(config, fresh=fresh, save_to=out)
            return
        path = write_example(example, out, force=force)
        output.err(f"wrote {path} ({example}: {EXAMPLES[example]}); edit it, then:")
        output.err(f"  claudegate check --config {path}\n  claudegate deploy --config {path}")

    run(body)


@app.command()
def console(config: ConfigOpt) -> None:
    """The day-2 console on a deployed config: status, clients (create/rotate/revoke), logs, rollback, smoke test."""
    run(lambda: _wizard(config, fresh=False, save_to=config))


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

    run_wizard(config, fresh=fresh, save_to=save_to)


@app.command()
def check(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Test the connection: SSH and host key, sudo, distribution, Docker, free ports, what a deploy installs."""

    def body() -> None:
        with _session(config, accept_host_key=accept_host_key) as session:
            report = session.test_connection()
        output.status_report(report, json_out=json_out)
        if not report.ok:
            raise typer.Exit(ExitCode.ERROR)

    run(body)


def _keys(config: Path, accept_host_key: str | None, args: list[str], *, secret_out: bool) -> None:
    def body() -> None:
        with _session(config, accept_host_key=accept_host_key) as session:
            text = session.keys(args)
        if secret_out:
            output.err("the new key is shown once; store it now:")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")

    run(body)


@keys_app.command("create")
def keys_create(
    name: str,
    config: ConfigOpt,
    models: Annotated[list[str] | None, typer.Option("--model", help="allowed model glob (repeat)")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute")] = None,
    daily_tokens: Annotated[int | None, typer.Option(help="tokens per UTC day")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="cap on max_tokens per request")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 time the key stops working")] = None,
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Create a client key; it is printed once, alone on the last line."""
    args = ["create", name]
    if models:
        args += ["--models", *models]
    for flag, value in (("--rpm", rpm), ("--tpm", tpm), ("--daily-tokens", daily_tokens),
                        ("--max-tokens", max_tokens), ("--expires", expires)):
        if value is not None:
            args += [flag, str(value)]
    _keys(config, accept_host_key, args, secret_out=True)


@keys_app.command("list")
def keys_list(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """List clients and their scopes (never secrets)."""
    _keys(config, accept_host_key, ["list", *(["--json"] if json_out else [])], secret_out=False)


@keys_app.command("rotate")
def keys_rotate(
    name: str,
    config: ConfigOpt,
    overlap: Annotated[str, typer.Option(help="how long the old key keeps working, e.g. 24h")] = "0s",
    accept_host_key: HostKeyOpt = None,
) -> None:
    """Issue a new key for a client; the old one works until the overlap ends."""
    _keys(config, accept_host_key, ["rotate", name, "--overlap", overlap], secret_out=True)


@keys_app.command("revoke")
def keys_revoke(name: str, config: ConfigOpt, accept_host_key: HostKeyOpt = None) -> None:
    """Revoke a client; its next request is refused."""
    _keys(config, accept_host_key, ["revoke", name], secret_out=False)


def main() -> None:
    app()
