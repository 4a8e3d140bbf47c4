"""A full local stack for the smoke test: test CA and leaf for ``gw.test``, a
real nginx on loopback high ports rendered from :class:`EdgeSettings`, the
real gateway behind it and the fake Anthropic API behind that.

Broken variants are the same stack with one property broken: another
certificate, other settings, or a rendered file patched (``Edge(patch=...)``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from claudegate.edge.render import write_edge
from claudegate.smoke import SmokeReport, SmokeTarget
from tests.smoke.pki import CA, Leaf, make_ca, make_leaf
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, free_port, make_gateway
from tests.support.nginx_runner import NginxProcess, local_settings

DOMAIN = "gw.test"
Patch = Callable[[dict[str, str]], dict[str, str]]


@dataclass
class Edge(NginxProcess):
    """An nginx from rendered templates, optionally with the rendered files patched before start."""

    patch: Patch | None = None

    def prepare(self) -> None:
        super().prepare()
        if self.patch is not None:
            self.files = self.patch(dict(self.files))
            write_edge(self.files, self.conf_dir)


def replace_in(path: str, old: str, new: str, *, regex: bool = False) -> Patch:
    """A patch replacing ``old`` in one rendered file; fails loudly when the template no longer has it."""

    def patch(files: dict[str, str]) -> dict[str, str]:
        text = files[path]
        found = re.search(old, text) if regex else old in text
        assert found, f"{old!r} is not in the rendered {path}: update this test's patch"
        files[path] = re.sub(old, new, text) if regex else text.replace(old, new)
        return files

    return patch


def chain(*patches: Patch) -> Patch:
    def patch(files: dict[str, str]) -> dict[str, str]:
        for p in patches:
            files = p(files)
        return files

    return patch


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("smoke-ca"))


@pytest.fixture(scope="session")
def good_leaf(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Leaf:
    return make_leaf(ca, tmp_path_factory.mktemp("leaf-good"), (DOMAIN,))


@pytest.fixture(scope="session")
def smoke_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic
) -> Iterator[GatewayProc]:
    """The real gateway, trusting only nginx's address for X-Real-IP (as deployed)."""
    gw = make_gateway(
        tmp_path_factory.mktemp("smoke-gateway"),
        fake_anthropic.url,
        fake_anthropic.api_key,
        extra={"trusted_proxies": ["127.0.0.1/32"]},
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def client_key(smoke_gateway: GatewayProc) -> str:
    # As the deployed smoke client: the paced diagnostic stream is granted only by name.
    return smoke_gateway.create_key(f"smoke-{secrets.token_hex(3)}", "--endpoints", "/v1/*", "/v1/claudegate/pace")


@pytest.fixture
def stream_delay(fake: FakeAnthropic) -> FakeAnthropic:
    """Events 20 ms apart, like a model producing tokens (the fake is instant otherwise)."""
    fake.state.configure(event_delay=0.02)
    return fake


EdgeFactory = Callable[..., Edge]


@pytest.fixture
def make_edge(tmp_path: Path, good_leaf: Leaf, smoke_gateway: GatewayProc) -> Iterator[EdgeFactory]:
    """Start an nginx for ``gw.test`` (good certificate, proxying to the gateway) with overrides."""
    started: list[Edge] = []

    def factory(
        name: str = "edge", *, leaf: Leaf | None = None, patch: Patch | None = None, **overrides: Any
    ) -> Edge:
        workdir = tmp_path / f"{name}-{secrets.token_hex(2)}"
        workdir.mkdir(parents=True)
        cert = leaf or good_leaf
        values: dict[str, Any] = {
            "domain": DOMAIN,
            "cert_path": str(cert.fullchain),
            "key_path": str(cert.key),
            "chain_path": str(cert.chain),
            "upstream": f"127.0.0.1:{smoke_gateway.port}",
        }
        values.update(overrides)
        edge = Edge(local_settings(workdir, **values), workdir, patch=patch)
        started.append(edge)
        edge.start()
        return edge

    yield factory
    for edge in started:
        edge.stop()


def target_for(edge: Edge, ca: CA | None, key: str | None, **overrides: Any) -> SmokeTarget:
    """The smoke target for ``edge``: https://gw.test:PORT, connecting to 127.0.0.1."""
    values: dict[str, Any] = {
        "base_url": f"https://{DOMAIN}:{edge.settings.https_port}",
        "connect_host": "127.0.0.1",
        "http_port": edge.settings.http_port,
        "ca_file": ca.root if ca else None,
        "client_key": key,
        "max_body_bytes": edge.settings.max_body_bytes,
    }
    values.update(overrides)
    return SmokeTarget(**values)


def by_name(report: SmokeReport) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in report.checks}


def assert_key_absent(report: SmokeReport, key: str, *texts: str) -> None:
    """The client key is in no detail, the table, the JSON or any other given text."""
    outputs = [report.table(), json.dumps(report.to_json()), repr(report), *texts]
    outputs += [c.detail for c in report.checks]
    for text in outputs:
        assert key not in text


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of the run, at DEBUG (httpx and httpcore log each request there)."""
    caplog.set_level(logging.DEBUG)
    return caplog


# --- a tiny upstream that answers 200 to anything (and echoes what it got) ---------------


@dataclass
class EchoUpstream:
    """An aiohttp app that authenticates nobody: 200 with the request headers echoed back."""

    port: int = 0
    extra_headers: dict[str, str] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        # What it was sent, credentials first: exactly what must never reach a report.
        echo: dict[str, Any] = {
            "got_key": request.headers.get("x-api-key"),
            "data": [],
            "echo": dict(request.headers),
        }
        return web.json_response(echo, headers=self.extra_headers)

    def start(self) -> EchoUpstream:
        ready = threading.Event()
        self.port = free_port()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="echo-upstream", daemon=True)
        self._thread.start()
        assert ready.wait(10), "echo upstream did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def echo_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream(extra_headers={"X-Powered-By": "Express"}).start()
    yield upstream
    upstream.stop()
