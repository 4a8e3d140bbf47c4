"""Command definitions. Heavy modules (paramiko, pydantic models, jinja2) are
imported inside the commands so `claudegate --help` stays fast."""

from __future__ import annotations

import sys
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate import __version__
from claudegate.cli import output
from claudegate.errors import ClaudegateError


class ExitCode(IntEnum):
    """Documented in `claudegate --help`; mirrors the error tree's exit_code."""

    OK = 0
    ERROR = 1
    CONFIG = 2
    CONNECTION = 3
    HOST_KEY = 4
    COMMAND = 5
    DEPLOY = 6
    SMOKE = 7
    INTERRUPTED = 130


HELP = """\
Deploy a hardened gateway in front of the Anthropic API on your own server,
and prove it secure with its own smoke test.

\b
  claudegate plan   --config deploy.yaml      what a deploy would change (changes nothing)
  claudegate deploy --config deploy.yaml      deploy, smoke-test, keep the old release on failure
  claudegate smoke-test --config deploy.yaml  run the smoke test against what is deployed

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


def _load(config: Path) -> Any:
    from claudegate.config import load_config

    return load_config(config)


def _connect(cfg: Any, accept_host_key: str | None) -> Any:
    from claudegate.deploy import connector_for

    return connector_for(cfg, accept_host_key=accept_host_key)


def run(fn: Any) -> None:
    """Run a command body, mapping the error tree to exit codes."""
    try:
        fn()
    except ClaudegateError as exc:
        output.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.err("interrupted; a rerun resumes where this one stopped")
        raise typer.Exit(ExitCode.INTERRUPTED) from None


@app.command()
def deploy(
    config: ConfigOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and file diffs; change nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before installing Docker on the host")] = False,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Deploy (or update) the gateway described by the config, then smoke-test it."""

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
            result = core.deploy(cfg, conn, dry_run=dry_run, reporter=reporter)
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def plan(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """Show what a deploy would change, with a diff of every file. Changes nothing."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            result = core.plan(cfg, conn, reporter=None if json_out else output.StepPrinter())
        output.deploy_result(result, json_out=json_out)

    run(body)


@app.command()
def status(config: ConfigOpt, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """The deployed release, its containers and their health."""

    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            report = core.status(cfg, conn)
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
    keep_data: Annotated[bool, typer.Option("--keep-data/--purge", help="keep the keystore, audit log and certificates")] = True,
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


def _keys(config: Path, accept_host_key: str | None, args: list[str], *, secret_out: bool) -> None:
    def body() -> None:
        from claudegate import deploy as core

        cfg = _load(config)
        with _connect(cfg, accept_host_key) as conn:
            text = core.gateway_keys(cfg, conn, args)
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
