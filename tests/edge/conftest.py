"""Fixtures for the NGINX edge tests: test PKI, the backend nginx fronts, and
throwaway nginx processes on loopback.

The backend is the real gateway in front of the fake Anthropic API
(nginx -> gateway -> fake), the topology the deploy builds. Every credential
a test hands to a client is registered in ``credentials`` so the last test can
prove that no access log of the run holds one.
"""

from __future__ import annotations

import os
import secrets
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.edge.certs import EdgePKI, make_pki
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.nginx_runner import NginxProcess, local_settings

# nginx -> gateway -> fake is the default; CLAUDEGATE_EDGE_BACKEND=fake points
# nginx straight at the fake (useful when working on the edge alone).
BACKEND_MODE = os.environ.get("CLAUDEGATE_EDGE_BACKEND", "gateway")


@dataclass
class Backend:
    """What nginx proxies to, plus the fake Anthropic API at the end of the chain."""

    fake: FakeAnthropic
    gateway: Any | None  # tests.support.gateway_proc.GatewayProc
    credentials: set[str]
    _keys: list[str] = field(default_factory=list)
    _names: dict[str, str] = field(default_factory=dict)  # key -> the name the gateway issued it under

    @property
    def addr(self) -> str:
        if self.gateway is not None:
            return f"127.0.0.1:{self.gateway.port}"
        return f"127.0.0.1:{self.fake.port}"

    def new_key(self, name: str = "edge") -> str:
        """A client key the backend accepts (a gateway-issued key with the gateway)."""
        if self.gateway is not None:
            name = f"{name}-{secrets.token_hex(3)}"
            key = str(self.gateway.create_key(name))
            self._names[key] = name
        else:
            key = "sk-edge-" + secrets.token_urlsafe(24)
            self._keys.append(key)
            self.fake.state.configure(api_keys=sorted({*self.fake.state.api_keys, key}))
        self.credentials.add(key)
        return key

    def junk_key(self) -> str:
        """A well-formed key nobody issued; nginx still rate-limits it."""
        key = "sk-junk-" + secrets.token_urlsafe(24)
        self.credentials.add(key)
        return key

    def upstream_requests(self, path: str | None = None) -> list[Any]:
        """Requests that reached the fake Anthropic API."""
        reqs = list(self.fake.state.requests)
        return [r for r in reqs if path is None or r.path == path]

    def client_ips(self, key: str, at_least: int = 1, timeout: float = 10) -> list[str]:
        """Client addresses the backend attributed `key`'s requests to, oldest first, once
        there are `at_least` (the gateway writes a request's record as its answer ends).

        By the key, not as the log's newest lines: the gateway is the session's, and an
        earlier test's record can land after this test began.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.gateway is not None:
                name = self._names[key]
                found = [str(r["client_ip"]) for r in self.gateway.audit(0, timeout=0) if r.get("key_name") == name]
            else:
                found = [r.headers.get("x-real-ip", "") for r in list(self.fake.state.requests)
                         if r.headers.get("x-api-key") == key]  # fmt: skip
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="session")
def credentials() -> set[str]:
    return set()


@pytest.fixture(scope="session")
def edge_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every nginx of the session keeps its work directory (and logs) here."""
    return tmp_path_factory.mktemp("edge-run")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> EdgePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def backend(
    tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic, credentials: set[str]
) -> Iterator[Backend]:
    """nginx -> gateway -> fake: one gateway for the edge tests, trusting only nginx's address."""
    fake = fake_anthropic
    credentials.add(fake.api_key)
    gateway = None
    if BACKEND_MODE == "gateway":
        from tests.support.gateway_proc import make_gateway

        gateway = make_gateway(
            tmp_path_factory.mktemp("edge-gateway"),
            fake.url,
            fake.api_key,
            # nginx connects from 127.0.0.1: the only proxy whose X-Real-IP the gateway believes.
            extra={"trusted_proxies": ["127.0.0.1/32"]},
        )
        gateway.start()
    try:
        yield Backend(fake, gateway, credentials)
    finally:
        if gateway is not None:
            gateway.stop()


EdgeFactory = Callable[..., NginxProcess]


@pytest.fixture(scope="module")
def make_edge(edge_run_dir: Path, pki: EdgePKI, backend: Backend) -> Iterator[EdgeFactory]:
    """Start an nginx rendered from local settings plus overrides; stopped after the module."""
    started: list[NginxProcess] = []

    def factory(name: str, **overrides: Any) -> NginxProcess:
        workdir = edge_run_dir / f"{name}-{secrets.token_hex(2)}"
        workdir.mkdir(parents=True)
        values: dict[str, Any] = {
            "cert_path": str(pki.fullchain),
            "key_path": str(pki.key),
            "chain_path": str(pki.chain),
            "upstream": backend.addr,
        }
        values.update(overrides)
        proc = NginxProcess(local_settings(workdir, **values), workdir)
        proc.start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


def tls_context(pki: EdgePKI) -> ssl.SSLContext:
    """A client TLS context that trusts only the test root."""
    return ssl.create_default_context(cafile=str(pki.root_ca))


def client(pki: EdgePKI, *, local_address: str | None = None, timeout: float = 10.0) -> httpx2.Client:
    """An HTTPS client that trusts the test root, optionally bound to a source address."""
    transport = httpx2.HTTPTransport(verify=tls_context(pki), local_address=local_address)
    return httpx2.Client(transport=transport, timeout=timeout)


def assert_anthropic_error(response: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    """The response is ``status`` with Anthropic's error JSON of ``error_type``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["request_id"], str) and body["request_id"].startswith("req_")
    return dict(body)
