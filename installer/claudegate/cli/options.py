"""What every command shares: the ``--config``/``--json``/``--accept-host-key``
options, the core session a command drives, and the mapping of the error
tree to exit codes. Heavy modules load inside the helpers, so ``--help``
stays fast."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate.cli import output
from claudegate.errors import ClaudegateError, ExitCode

__all__ = ["DEFAULT_CONFIG", "ConfigOpt", "ExitCode", "HostKeyOpt", "JsonOpt", "host_keys", "load", "run", "session", "warn_missing_secrets"]

#: The wizard saves to ./deploy.yaml, so every command looks there first.
DEFAULT_CONFIG = Path("deploy.yaml")

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="deploy.yaml to use [default: ./deploy.yaml]", envvar="CLAUDEGATE_CONFIG",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
HostKeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--accept-host-key",
        metavar="[HOST=]SHA256:...",
        help="on first contact, trust the host key with exactly this fingerprint (ssh-keygen -lf form); "
        "with several hosts (hosts:), HOST=SHA256:... once per host",
    ),
]


def host_keys(values: list[str] | str | None) -> tuple[str | None, dict[str, str]]:
    """``--accept-host-key`` values as (one key for the one host, {host: key} per host).

    ``SHA256:x`` alone is the one host's key; ``HOST=SHA256:x`` (repeatable)
    names the host (as ``hosts:`` writes it, ``host`` or ``host:port``).
    """
    from claudegate.errors import ConfigError

    if values is None or isinstance(values, str):
        return values, {}
    one: list[str] = []
    named: dict[str, str] = {}
    for value in values:
        host, sep, key = value.partition("=")
        if not sep or host.upper().startswith(("SHA256:", "MD5:")):
            one.append(value)
            continue
        if not host or not key:
            raise ConfigError(f"--accept-host-key {value!r}: expected HOST=SHA256:... or SHA256:...")
        if host in named:
            raise ConfigError(f"--accept-host-key names {host} twice", hint="give each host's key once")
        named[host] = key
    if one and (named or len(one) > 1):
        raise ConfigError(
            "--accept-host-key: with several keys, name each one's host",
            hint="--accept-host-key HOST=SHA256:... once per host",
        )
    return (one[0] if one else None), named


def load(config: Path) -> Any:
    """The config, after saying on stderr which file it is (the default is easy to miss)."""
    from claudegate.config import load_config

    output.err(f"config: {config}")
    return load_config(config)


def warn_missing_secrets(cfg: Any) -> None:
    """Say before connecting that a secret file is missing or too open (a deploy would stop on it).

    plan and check do not need the key, so this is a warning; said first, it is
    seen even when the host turns out to be unreachable.
    """
    from claudegate.config import check_secret_files
    from claudegate.config.problems import DeployConfigError

    try:
        check_secret_files(cfg)
    except DeployConfigError as exc:
        for line in str(exc).splitlines():
            output.err(f"warning: {line}")


def _open(cfg: Any, accept_host_key: list[str] | str | None, yes: bool, progress: Any) -> Any:
    from claudegate.cli.interaction import CliInteraction
    from claudegate.session.core import Session

    one, per_host = host_keys(accept_host_key)
    interaction = CliInteraction(yes=yes, accept_host_key=one)
    return Session(cfg, interaction, progress=progress, accept_host_key=one, host_keys=per_host)


@contextlib.contextmanager
def session(
    config: Path,
    *,
    accept_host_key: list[str] | str | None = None,
    yes: bool = False,
    progress: Any = None,
) -> Iterator[Any]:
    """The core session for a command: prompts on a terminal, flags otherwise; Ctrl-C cancels."""
    opened = _open(load(config), accept_host_key, yes, progress)
    with opened, _cancel_on_sigint(opened):
        yield opened


@contextlib.contextmanager
def connect(cfg: Any, accept_host_key: list[str] | str | None, *, yes: bool = False) -> Iterator[Any]:
    """A connection verified through a core session (an unknown host key is asked, as everywhere).

    For the state tier's commands, whose host (state.host) is not the config's target.
    """
    opened = _open(cfg, accept_host_key, yes, None)
    with opened, _cancel_on_sigint(opened):
        yield opened.connect()


@contextlib.contextmanager
def _cancel_on_sigint(running: Any) -> Iterator[None]:
    """First Ctrl-C: cancel at the next safe point (journal written, lock released); second: stop now."""

    def handler(signum: int, frame: Any) -> None:
        if running.cancelled:
            raise KeyboardInterrupt
        # Cancel first, and say so without sys.stderr: the handler runs between two
        # bytecodes of the main thread, which may be inside a write to that same
        # stream (a progress line); a second write there raises "reentrant call",
        # and the cancel would be lost in whatever caught it.
        running.cancel("interrupted (Ctrl-C)")
        with contextlib.suppress(OSError):
            os.write(2, b"cancelling at the next safe point (Ctrl-C again to stop at once)\n")

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
