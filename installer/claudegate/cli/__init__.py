"""The typer command line: a thin front end over the core.

Each command loads the config, builds a connector, calls one core function
and renders its result; errors from the core's tree become an exit code and
a message (with its fix) on stderr.
"""

from claudegate.cli.app import app, main

__all__ = ["app", "main"]
