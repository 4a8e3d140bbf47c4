"""claudegate-gateway: run the gateway service and manage its client keys.

argparse rather than typer: the gateway image carries aiohttp and pyyaml only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from claudegate_gateway import __version__
from claudegate_gateway.config import Config, ConfigError, load_config, read_secret
from claudegate_gateway.keystore import KeyStore, KeyStoreError, Scopes
from claudegate_gateway.routes import TEMPLATES, endpoint_glob_problem
from claudegate_gateway.store import Store

if TYPE_CHECKING:  # imported when used: asyncpg is loaded only for state.postgres
    from claudegate_gateway.pgstore import PgKeyStore

EXIT_OK, EXIT_CONFIG, EXIT_USAGE = 0, 2, 3
#: migrate-state: the target PostgreSQL holds different data (nothing was copied).
EXIT_CONFLICT = 4
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

EPILOG = """\
examples:
  claudegate-gateway serve --config /etc/claudegate/gateway.yaml
  claudegate-gateway keys create team-a --config gw.yaml --models 'claude-sonnet-*' --rpm 60 --tpm 100000
  claudegate-gateway keys update team-a --config gw.yaml --models 'claude-sonnet-*' --rpm 120
  claudegate-gateway keys rotate team-a --config gw.yaml --overlap 24h
  claudegate-gateway keys list --config gw.yaml --json
  claudegate-gateway migrate --config gw.yaml          (state.postgres: schema, once)
  claudegate-gateway migrate-state --config gw.yaml --from /var/lib/claudegate/keys.db
  claudegate-gateway state export --config gw.yaml > state.json   (state.postgres: all rows, one moment)
  claudegate-gateway state import --config gw.yaml < state.json   (replaces them, one transaction)
  claudegate-gateway state usage --config gw.yaml --since 2026-12-01

The config file may also be given as $CLAUDEGATE_GATEWAY_CONFIG.
exit codes: 0 ok, 2 bad config, 3 bad request (unknown key name, bad flag value)
"""


def duration(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 90s, 30m, 24h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def timestamp(text: str) -> float:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time; write e.g. 2027-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", "-c", default=os.environ.get("CLAUDEGATE_GATEWAY_CONFIG"),
        help="gateway YAML config (default: $CLAUDEGATE_GATEWAY_CONFIG)",
    )
    top = argparse.ArgumentParser(
        prog="claudegate-gateway",
        description="The claudegate gateway: admits clients with gateway-issued keys and relays to the Anthropic API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="run the service")
    sub.add_parser("check-config", parents=[common], help="validate the config and the secret files, then exit")
    keys = sub.add_parser("keys", help="create, list, rotate and revoke client keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser(
        "create", parents=[common], help="create a client; the new key is printed once, alone on the last line"
    )
    _scope_arguments(create)
    update = keys.add_parser(
        "update", parents=[common],
        help="replace a client's scopes, limits and expiry in place (its keys keep working); "
        "omitted options take their defaults, as in create",
    )
    _scope_arguments(update)
    lst = keys.add_parser("list", parents=[common], help="list clients (never secrets)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a client; takes effect on its next request")
    revoke.add_argument("name")
    rotate = keys.add_parser("rotate", parents=[common], help="issue a new key; the old one works until the overlap ends")
    rotate.add_argument("name")
    rotate.add_argument("--overlap", type=duration, default=0, metavar="DURATION", help="e.g. 24h (default: 0, old key stops now)")
    migrate = sub.add_parser(
        "migrate", parents=[common],
        help="state.postgres: apply the schema migrations not applied yet (expand; once, whoever runs it first)",
    )
    migrate.add_argument("--contract", action="store_true",
                         help="also the contract steps; only once every replica runs this version")
    move = sub.add_parser(
        "migrate-state", parents=[common],
        help="copy a one-host SQLite keystore (keys, owned objects, daily usage) into state.postgres",
    )
    move.add_argument("--from", dest="source_db", required=True, metavar="KEYS_DB",
                      help="the SQLite keystore, e.g. /var/lib/claudegate/keys.db")
    state = sub.add_parser(
        "state", help="state.postgres: its rows as JSON (backup of several hosts) and the daily usage ledger"
    ).add_subparsers(dest="action", required=True)
    state.add_parser("export", parents=[common],
                     help="every row of claudegate's tables at one moment, as JSON on stdout")  # fmt: skip
    state.add_parser(
        "import", parents=[common],
        help="replace every row with an export's (JSON on stdin), in one transaction; nothing written if refused",
    )  # fmt: skip
    usage = state.add_parser("usage", parents=[common], help="tokens charged per client per UTC day, JSON")
    usage.add_argument("--client", metavar="NAME", help="only this client")
    usage.add_argument("--since", metavar="YYYY-MM-DD", help="from this UTC day on")
    return top


def _scope_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name")
    sub.add_argument("--models", nargs="+", default=["*"], metavar="GLOB", help="allowed models (default: any)")
    sub.add_argument(
        "--endpoints", nargs="+", default=["/v1/*"], metavar="GLOB",
        help="allowed operations, as globs over the path templates (default: /v1/*): " + " ".join(TEMPLATES),
    )
    sub.add_argument("--betas", nargs="+", metavar="NAME", help="allowed anthropic-beta values (default: any)")
    sub.add_argument("--max-tokens", type=positive, help="cap on max_tokens per request")
    sub.add_argument("--no-stream", action="store_true", help="refuse streaming requests")
    sub.add_argument("--rpm", type=positive, help="requests per minute")
    sub.add_argument("--tpm", type=positive, help="tokens per minute (input + output)")
    sub.add_argument("--daily-tokens", type=positive, help="tokens per UTC day")
    sub.add_argument("--expires", type=timestamp, metavar="ISO8601", help="when the key stops working (default: never)")


def _scopes(args: argparse.Namespace) -> Scopes:
    # A glob that matches no operation is a mistake (a typo, a path with an id in it).
    for glob in args.endpoints:
        problem = endpoint_glob_problem(glob)
        if problem is not None:
            raise KeyStoreError(f"--endpoints: {problem}")
    return Scopes(
        models=tuple(args.models), endpoints=tuple(args.endpoints),
        betas=tuple(args.betas) if args.betas else None, max_tokens=args.max_tokens,
        stream=not args.no_stream, rpm=args.rpm, tpm=args.tpm, daily_tokens=args.daily_tokens,
    )


def _keystore(config: Config) -> Store:
    from claudegate_gateway.app import make_store

    return make_store(config)


def _load(args: argparse.Namespace) -> Config:
    if not args.config:
        raise ConfigError("no config given; pass --config FILE or set CLAUDEGATE_GATEWAY_CONFIG")
    return load_config(Path(args.config))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def run_keys(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_run_keys(args, config))


async def _run_keys(args: argparse.Namespace, config: Config) -> int:
    store = _keystore(config)
    await store.open()
    try:
        if args.action == "create":
            key = await store.create(args.name, _scopes(args), args.expires)
            print(f"created client {args.name!r}; this key is shown once, store it now:", file=sys.stderr)
            print(key)
        elif args.action == "update":
            await store.update(args.name, _scopes(args), args.expires)
            print(f"updated client {args.name!r}; its keys keep working")
        elif args.action == "rotate":
            key = await store.rotate(args.name, args.overlap)
            print(f"rotated {args.name!r}; old key ends {'now' if not args.overlap else f'in {args.overlap}s'}."
                  " New key, shown once:", file=sys.stderr)
            print(key)
        elif args.action == "revoke":
            await store.revoke(args.name)
            print(f"revoked {args.name!r}")
        elif args.action == "list":
            clients = await store.list_clients()
            if args.json:
                print(json.dumps(clients, indent=2))
            else:
                print(f"{'NAME':<24} {'STATE':<8} {'PREFIXES':<32} {'EXPIRES':<21} MODELS")
                for c in clients:
                    prefixes = ",".join(k["public_id"] for k in c["credentials"] if k["active"])
                    print(f"{c['name']:<24} {c['state']:<8} {prefixes or '-':<32} {_when(c['expires_at']):<21} "
                          f"{' '.join(c['scopes']['models'])}")
    except KeyStoreError as exc:
        print(f"claudegate-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        await store.close()
    return EXIT_OK


@contextlib.asynccontextmanager
async def _postgres(config: Config, what: str) -> AsyncIterator[PgKeyStore]:
    """The keystore on state.postgres, opened for a one-off command (not serving), closed after."""
    from claudegate_gateway.pgstore import PgKeyStore

    if config.state.postgres is None:
        raise ConfigError(f"{config.source}: state.postgres: not set; {what} works on PostgreSQL only")
    store = _keystore(config)
    assert isinstance(store, PgKeyStore)
    await store.open(serving=False)
    try:
        yield store
    finally:
        await store.close()


async def _run_migrate(args: argparse.Namespace, config: Config) -> int:
    from claudegate_gateway.pgstore import migrate
    from claudegate_gateway.statemove import StateConflict, copy_sqlite

    async with _postgres(config, args.command) as store:
        async with store.pool.acquire() as conn:
            applied = await migrate(conn, contract=getattr(args, "contract", False))
        if args.command == "migrate":
            print(f"applied {', '.join(map(str, applied))}" if applied else "schema up to date")
            return EXIT_OK
        pepper = read_secret(config.pepper_file, "the key pepper", "pepper_file", config.source)
        try:
            counts = await copy_sqlite(KeyStore(Path(args.source_db), pepper), store)
        except StateConflict as exc:
            print(f"claudegate-gateway: {exc}", file=sys.stderr)
            return EXIT_CONFLICT
        print("copied " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return EXIT_OK


async def _run_state(args: argparse.Namespace, config: Config) -> int:
    import asyncpg

    from claudegate_gateway.statedump import DumpError, daily_usage, export_state, import_state

    async with _postgres(config, f"state {args.action}") as store, store.pool.acquire() as conn:
        if args.action == "export":
            json.dump(await export_state(conn), sys.stdout, separators=(",", ":"))
        elif args.action == "usage":
            print(json.dumps(await daily_usage(conn, client=args.client, since=args.since)))
        else:
            try:
                doc = json.loads(sys.stdin.buffer.read())
                counts = await import_state(conn, doc)
            except (ValueError, DumpError, asyncpg.PostgresError) as exc:
                print(f"claudegate-gateway: state import refused, nothing was written: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print(json.dumps(counts))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = _load(args)
        if args.command == "serve":
            asyncio.run(serve_config(config))
            return EXIT_OK
        if args.command == "check-config":
            from claudegate_gateway.app import build_gateway

            asyncio.run(build_gateway(config).keystore.close())
            print(f"{config.source}: ok")
            return EXIT_OK
        if args.command in ("migrate", "migrate-state"):
            return asyncio.run(_run_migrate(args, config))
        if args.command == "state":
            return asyncio.run(_run_state(args, config))
        return run_keys(args, config)
    except ConfigError as exc:
        print(f"claudegate-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def serve_config(config: Config) -> None:
    from claudegate_gateway.app import serve

    await serve(config)
