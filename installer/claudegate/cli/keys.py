"""``claudegate keys``: client keys on the deployed gateway, through the session's key methods."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from claudegate.cli import output
from claudegate.cli.help import WrappedHelpGroup
from claudegate.cli.options import DEFAULT_CONFIG, ConfigOpt, HostKeyOpt, JsonOpt, run, session

__all__ = ["keys_app"]

keys_app = typer.Typer(
    cls=WrappedHelpGroup,
    help="""Create, list, rotate and revoke client keys on the deployed gateway.

\b
  claudegate keys list [--json]
  claudegate keys create ci --model 'claude-haiku-*' --rpm 60 \\
      --expires 2027-06-30
  claudegate keys rotate ci --overlap 24h
  claudegate keys revoke ci

Works on local and SSH targets alike: the commands run in the serving
gateway container, whose keystore every release shares. With several hosts
(hosts:) the keys are in the shared PostgreSQL: the first host, in rollout
order, that answers does (stderr names it, and the hosts before it that did
not); a change is tried on the next host only if the connection failed. A new key is shown
once (alone on stdout's last line) and saved 0600 in <state_dir>/keys/.
Clients listed in deploy.yaml are better managed there: a deploy creates
them and applies scope changes in place.""",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _say_host(s: Any) -> None:
    """Several hosts: which host answered (and which before it did not), on stderr."""
    if s.answered_by is not None:
        output.err(f"note: {s.answered_by.note()}")


def _show_key(issued: Any, json_out: bool, what: str) -> None:
    if json_out:
        print(json.dumps(issued.to_json(), indent=2))
        return
    output.err(f"{what}; the new key is shown once (a copy is in {issued.saved_to}, 0600):")
    if issued.old_keys_end is not None:
        output.err(f"the previous key works until {issued.old_keys_end.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    sys.stdout.write(issued.key.reveal() + "\n")


#: The client name argument, named NAME in --help (typer's default showed the type, "{name}", "<str>").
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="client name: letters, digits, '.', '_', '-'")]

@keys_app.command("list")
def keys_list(config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None, json_out: JsonOpt = False) -> None:
    """List clients: state, key prefixes (never secrets), expiry, models and limits."""

    def body() -> None:
        from claudegate.keys import clients_table

        with session(config, accept_host_key=accept_host_key) as s:
            clients = s.list_clients()
        _say_host(s)
        if json_out:
            print(json.dumps([c.to_json() for c in clients], indent=2))
        else:
            print(clients_table(clients))

    run(body)


@keys_app.command("create")
def keys_create(
    name: NameArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    models: Annotated[
        list[str] | None, typer.Option("--model", metavar="GLOB", help="allowed model glob (repeat; default any)")
    ] = None,
    endpoints: Annotated[
        list[str] | None, typer.Option("--endpoint", metavar="GLOB", help="allowed path glob (repeat; default /v1/*)")
    ] = None,
    betas: Annotated[
        list[str] | None, typer.Option("--beta", metavar="BETA", help="allowed anthropic-beta (repeat; default any)")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(metavar="N", help="cap on max_tokens per request")] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="refuse streaming requests")] = False,
    rpm: Annotated[int | None, typer.Option(metavar="N", help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(metavar="N", help="tokens per minute (input + output)")] = None,
    daily_tokens: Annotated[int | None, typer.Option(metavar="N", help="tokens per UTC day")] = None,
    expires: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="when the key stops working, ISO 8601 (2027-06-30 or 2027-06-30T12:00:00Z)"),
    ] = None,
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a client; its key is printed once, alone on stdout's last line."""

    def body() -> None:
        from claudegate.keys import client_spec

        spec = client_spec(
            name, models=models, endpoints=endpoints, betas=betas, max_tokens=max_tokens,
            stream=False if no_stream else None, rpm=rpm, tpm=tpm, daily_tokens=daily_tokens, expires=expires,
        )  # fmt: skip
        with session(config, accept_host_key=accept_host_key) as s:
            issued = s.create_client(spec)
        _say_host(s)
        _show_key(issued, json_out, f"created client {name}")

    run(body)


@keys_app.command("rotate")
def keys_rotate(
    name: NameArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    overlap: Annotated[
        str, typer.Option(metavar="DURATION", help="how long the old key keeps working: 0s (stop now), 30m, 24h, 7d")
    ] = "0s",
    accept_host_key: HostKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue a new key for a client; the old one works until the overlap ends. Scopes stay."""

    def body() -> None:
        from claudegate.keys import client_spec, parse_duration

        client_spec(name)  # bad input fails before the config is read or anything connects
        seconds = parse_duration(overlap)
        with session(config, accept_host_key=accept_host_key) as s:
            issued = s.rotate_client(name, overlap_seconds=seconds)
        _say_host(s)
        _show_key(issued, json_out, f"rotated client {name}")

    run(body)


@keys_app.command("revoke")
def keys_revoke(name: NameArg, config: ConfigOpt = DEFAULT_CONFIG, accept_host_key: HostKeyOpt = None) -> None:
    """Revoke a client: every key of it is refused from its next request on.

    A client still listed in deploy.yaml is created anew (new key) by the next
    deploy; remove it there too.
    """

    def body() -> None:
        from claudegate.keys import client_spec

        client_spec(name)
        with session(config, accept_host_key=accept_host_key) as s:
            s.revoke_client(name)
        _say_host(s)
        print(f"revoked client {name}")
        if any(c.name == name for c in s.config.clients):
            output.err(
                f"note: {name} is still listed in {config}; the next deploy creates it again with a new key"
            )

    run(body)
