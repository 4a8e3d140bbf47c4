"""Options every command group shares (``--config``, ``--json``, ``--accept-host-key``)
and the config/connector helpers behind them. Heavy modules load inside the helpers."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from claudegate.cli import output
from claudegate.errors import ClaudegateError

__all__ = ["ConfigOpt", "ExitCode", "HostKeyOpt", "JsonOpt", "connect", "load", "run"]


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


def load(config: Path) -> Any:
    from claudegate.config import load_config

    return load_config(config)


def connect(cfg: Any, accept_host_key: str | None) -> Any:
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
