"""``claudegate try``: the demo (the local stack in front of an echo upstream), and ``--stop``."""

from __future__ import annotations

from typing import Annotated

import typer

from claudegate.cli import output
from claudegate.cli.options import run

__all__ = ["try_command"]


def try_command(
    stop: Annotated[bool, typer.Option("--stop", help="remove the demo: containers, networks, images, its files")] = False,
    base_image: Annotated[
        str | None,
        typer.Option("--base-image", metavar="REF", help="a Debian bookworm image already on this machine to build from"),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="agree without asking (building a base image, removing the demo)")
    ] = False,
) -> None:
    """Try claudegate with no Anthropic key: deploy the local stack in front of a demo echo upstream.

    Everything runs in this machine's Docker (https://localhost:8443, ports
    8080/8443, a private CA). The upstream is a separate container,
    claudegate-demo-upstream, that answers "echo: <your text>" in the
    Messages API's shape: it is never Claude and never used outside the
    demo. Prints a client key and curl, Python SDK and Claude Code snippets
    that work against it. `claudegate try --stop` removes all of it.
    """

    def body() -> None:
        from claudegate.cli.interaction import CliInteraction
        from claudegate.demo import Demo

        demo = Demo(
            CliInteraction(yes=yes or stop, accept_host_key=None),
            progress=output.StepPrinter(),
            say=lambda line: output.err(f"demo: {line}"),
            base_image=base_image,
        )
        if stop:
            for line in demo.stop() or ["nothing to remove: no demo is running"]:
                output.err(f"demo: {line}")
            return
        output.err(f"demo: config {demo.config_path} (the upstream is the demo echo container, not the Anthropic API)")
        result = demo.start()
        for note in result.notes:
            output.err(f"demo: {note}")
        if result.key is not None:
            print(f"demo client key (shown once, saved in {result.key_file}): {result.key.reveal()}")
        print(f"gateway: {result.url}   CA: {result.ca_file}\n")
        print(result.snippets())

    run(body)
