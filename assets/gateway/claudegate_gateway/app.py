"""Wiring: the public listener (proxied by nginx) and the internal one
(/healthz, /readyz, /metrics), which nginx never exposes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal

from aiohttp import web

from claudegate_gateway.bindaddr import listen_host
from claudegate_gateway.config import Config, read_secret
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.httpserver import SERVER_NAME, ShapedAppRunner, expect_continue, shaped_router_errors
from claudegate_gateway.keystore import KeyStore
from claudegate_gateway.offload import build_policy
from claudegate_gateway.proxy import Gateway
from claudegate_gateway.store import SqliteStore, Store

log = logging.getLogger("claudegate.gateway")
# With state.redis: how often usage metered here is written to the durable ledger.
# One host needs no flush (its daily budget is taken in the keystore itself).
_FLUSH_EVERY = 5.0


def build_gateway(config: Config) -> Gateway:
    # Config mistakes first, then the secrets: a typo should not be reported as a missing file.
    policy = build_policy(config.filters, config.source)
    policy.check_overrides(config.client_filters, config.source)
    upstream_key = read_secret(config.upstream.api_key_file, "the upstream API key", "upstream.api_key_file", config.source)
    return Gateway(config, make_store(config), upstream_key, policy)


def make_store(config: Config) -> Store:
    """PostgreSQL with ``state.postgres``, else the SQLite keystore (opened by the caller)."""
    pepper = read_secret(config.pepper_file, "the key pepper", "pepper_file", config.source)
    if config.state.postgres is not None:
        from claudegate_gateway.pgstore import PgKeyStore  # only deployments with PostgreSQL load it

        return PgKeyStore(config.state.postgres, pepper, config.source, replica=config.state.replica_id or "-")
    return SqliteStore(KeyStore(config.keystore, pepper))


async def _hide_server(_: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would announce its own and Python's versions.
    response.headers["Server"] = SERVER_NAME


def public_app(gateway: Gateway) -> web.Application:
    # client_max_size makes aiohttp count bytes while reading, whatever
    # Content-Length claims. auto_decompress off: aiohttp would otherwise
    # inflate a compressed request body (a zip bomb, or a codec it lacks ends
    # in a plain-text 400); the gateway refuses any Content-Encoding with a 415.
    app = web.Application(
        client_max_size=gateway.config.max_body_bytes,
        handler_args={"max_field_size": 16384, "auto_decompress": False},
        middlewares=[shaped_router_errors],
    )
    app.router.add_route("*", "/{tail:.*}", gateway.handle, expect_handler=expect_continue)
    app.on_response_prepare.append(_hide_server)
    return app


def internal_app(gateway: Gateway) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        health = {**gateway.admission.health(), **gateway.keystore.health()}
        # Redis or PostgreSQL away is an outage of the whole fleet, not of this
        # replica: it still serves (see "Shared state" in the README), so it
        # stays ready and says what it is missing.
        degraded = sorted(k.removesuffix("_up") for k, v in health.items() if k.endswith("_up") and not v)
        try:
            if "postgres" not in degraded:
                await gateway.keystore.check()
        except GatewayError:  # the store's own "unreachable" (pgstore.StateUnavailable)
            degraded.append("postgres")
        except Exception as exc:  # the keystore is what can fail at run time
            return web.json_response({"status": "not ready", "reason": type(exc).__name__}, status=503)
        if degraded:
            return web.json_response({"status": "ready", "degraded": degraded})
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        text = gateway.metrics.render()
        text += (
            "# HELP claudegate_held_download_bytes Bytes of file downloads held while filtered (all keys).\n"
            "# TYPE claudegate_held_download_bytes gauge\n"
            f"claudegate_held_download_bytes {gateway.held_downloads.held}\n"
            "# HELP claudegate_model_catalogue_reads_total Upstream reads of the model catalogue.\n"
            "# TYPE claudegate_model_catalogue_reads_total counter\n"
            f"claudegate_model_catalogue_reads_total {gateway.catalogues.reads}\n"
        )
        health = {**gateway.admission.health(), **gateway.keystore.health()}
        text += "".join(
            f"# TYPE claudegate_state_{name} gauge\nclaudegate_state_{name} {value:g}\n"
            for name, value in sorted(health.items())
        )
        return web.Response(text=text, content_type="text/plain")

    app = web.Application(middlewares=[shaped_router_errors])
    app.on_response_prepare.append(_hide_server)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def raise_open_files() -> int:
    """The soft limit on open descriptors raised to the hard one: a stream holds two (client and
    upstream), and a soft limit of 1024 would refuse the 510th stream. Returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(config: Config) -> None:
    open_files = raise_open_files()
    gateway = build_gateway(config)
    await gateway.start()
    # Shaped: what aiohttp's parser refuses is answered in Anthropic's error shape too.
    public = ShapedAppRunner(public_app(gateway), access_log=None, handle_signals=False,
                             shutdown_timeout=config.drain_seconds)
    internal = ShapedAppRunner(internal_app(gateway), access_log=None, handle_signals=False)
    await public.setup()
    await internal.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # A listen host given as a network binds this container's own address in it.
        public_at = (listen_host(config.listen[0], key="listen", source=config.source), config.listen[1])
        internal_at = (
            listen_host(config.internal_listen[0], key="internal_listen", source=config.source),
            config.internal_listen[1],
        )
        await web.TCPSite(public, *public_at, reuse_address=True, backlog=1024).start()
        await web.TCPSite(internal, *internal_at, reuse_address=True).start()
        log.info(
            "claudegate gateway listening on %s:%d (internal %s:%d), upstream %s, up to %d open files "
            "(two a stream)",
            *public_at, *internal_at, config.upstream.base_url, open_files,
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _FLUSH_EVERY)
            try:
                await gateway.flush_usage()
            except Exception as exc:  # the ledger is away (PostgreSQL down): kept, written next time
                log.warning("usage not written to the ledger yet: %s", type(exc).__name__)
    finally:
        await public.cleanup()
        await internal.cleanup()
        await gateway.stop()
        await gateway.keystore.close()
