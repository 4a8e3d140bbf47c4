"""Wiring: the public listener (proxied by nginx) and the internal one
(/healthz, /readyz, /metrics), which nginx never exposes."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from claudegate_gateway.bindaddr import listen_host
from claudegate_gateway.config import Config, read_secret
from claudegate_gateway.keystore import KeyStore
from claudegate_gateway.offload import build_policy
from claudegate_gateway.proxy import Gateway

log = logging.getLogger("claudegate.gateway")


def build_gateway(config: Config) -> Gateway:
    # Config mistakes first, then the secrets: a typo should not be reported as a missing file.
    policy = build_policy(config.filters, config.source)
    policy.check_overrides(config.client_filters, config.source)
    upstream_key = read_secret(config.upstream.api_key_file, "the upstream API key", "upstream.api_key_file", config.source)
    pepper = read_secret(config.pepper_file, "the key pepper", "pepper_file", config.source)
    return Gateway(config, KeyStore(config.keystore, pepper), upstream_key, policy)


async def _hide_server(_: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would announce its own and Python's versions.
    response.headers["Server"] = "claudegate"


def public_app(gateway: Gateway) -> web.Application:
    # client_max_size makes aiohttp count bytes while reading, whatever
    # Content-Length claims. auto_decompress off: aiohttp would otherwise
    # inflate a compressed request body (a zip bomb, or a codec it lacks ends
    # in a plain-text 400); the gateway refuses any Content-Encoding with a 415.
    app = web.Application(
        client_max_size=gateway.config.max_body_bytes,
        handler_args={"max_field_size": 16384, "auto_decompress": False},
    )
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    app.on_response_prepare.append(_hide_server)
    return app


def internal_app(gateway: Gateway) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            gateway.keystore.list()
        except Exception as exc:  # the keystore is what can fail at run time
            return web.json_response({"status": "not ready", "reason": type(exc).__name__}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=gateway.metrics.render(), content_type="text/plain")

    app = web.Application()
    app.on_response_prepare.append(_hide_server)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(config: Config) -> None:
    gateway = build_gateway(config)
    await gateway.start()
    public = web.AppRunner(public_app(gateway), access_log=None, handle_signals=False, shutdown_timeout=30)
    internal = web.AppRunner(internal_app(gateway), access_log=None, handle_signals=False)
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
            "claudegate gateway listening on %s:%d (internal %s:%d), upstream %s",
            *public_at, *internal_at, config.upstream.base_url,
        )
        await stop.wait()
    finally:
        await public.cleanup()
        await internal.cleanup()
        await gateway.stop()
        gateway.keystore.close()
