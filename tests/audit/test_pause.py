"""The probes' waits (the audit's and the smoke test's) go through the cancellable sleep: Cancel stops them at once."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from claudegate.audit import probes_limits
from claudegate.audit.context import Run
from claudegate.audit.result import FAILED
from claudegate.audit.target import AuditTarget
from claudegate.control.cancel import CancelToken
from claudegate.control.controls import RunControls, using
from claudegate.errors import Cancelled
from claudegate.probes.http import send
from claudegate.probes.wait import pause
from tests.smoke.conftest import DOMAIN  # the ca and good_leaf fixtures come through tests/audit/conftest.py
from tests.smoke.pki import CA, Leaf


def _cancel_soon(token: CancelToken) -> threading.Timer:
    timer = threading.Timer(0.2, token.cancel, args=("Cancel pressed",))
    timer.start()
    return timer


def test_cancel_interrupts_a_pause() -> None:
    token = CancelToken()
    started = time.monotonic()
    with using(RunControls(cancel=token)), pytest.raises(Cancelled):
        _cancel_soon(token)
        pause(30)
    assert time.monotonic() - started < 5


def test_cancel_interrupts_the_wait_for_the_bucket() -> None:
    token = CancelToken()
    run = Run.open(AuditTarget(base_url="https://gw.example.com"))
    started = time.monotonic()
    with using(RunControls(cancel=token)), pytest.raises(Cancelled):
        _cancel_soon(token)
        run.wait_for_bucket(30)
    assert time.monotonic() - started < 5


def test_without_a_run_token_a_pause_just_sleeps() -> None:
    started = time.monotonic()
    pause(0.3)
    assert time.monotonic() - started >= 0.29


def test_cancel_interrupts_the_pacing_between_requests() -> None:
    """The audit keeps under the edge's rates by waiting between requests: Cancel stops that wait too."""
    token = CancelToken()
    # 0.5 requests a second: the second request must wait two seconds after the first.
    run = Run.open(AuditTarget(base_url="https://gw.example.com", per_ip_rate=0.1, per_key_rate=0.1))
    run._pace()  # the first goes at once
    started = time.monotonic()
    with using(RunControls(cancel=token)), pytest.raises(Cancelled):
        token.cancel("Cancel pressed")
        run._pace()
    assert time.monotonic() - started < 1


def test_the_smoke_tests_429_retry_waits_through_the_same_pause() -> None:
    """A left-over 429 is waited out with the probes' pause, so Cancel stops the smoke test there too."""
    calls = []

    class TooMany(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            self.send_response(429)
            self.send_header("retry-after", "4")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TooMany)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = CancelToken()
    started = time.monotonic()
    try:
        with httpx.Client() as client, using(RunControls(cancel=token)), pytest.raises(Cancelled):
            _cancel_soon(token)
            send(client, "GET", f"http://127.0.0.1:{server.server_address[1]}/v1/models")
    finally:
        server.shutdown()
        server.server_close()
    assert calls == ["/v1/models"] and time.monotonic() - started < 3


@contextlib.contextmanager
def _silent_tls_server(leaf: Leaf) -> Iterator[int]:
    """A TLS server on loopback that takes every connection (TLS 1.3 session tickets and all) and never answers."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.fullchain, leaf.key)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
                held.append(ctx.wrap_socket(raw, server_side=True))
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for sock in held:
            sock.close()


def test_slow_clients_never_cut_fail_the_probe(ca: CA, good_leaf: Leaf) -> None:
    """A server that holds slow clients forever: the probe says so (session tickets are not a close)."""
    with _silent_tls_server(good_leaf) as port:
        target = AuditTarget(base_url=f"https://{DOMAIN}:{port}", connect_host="127.0.0.1", ca_file=ca.root,
                             client_header_timeout=1, client_body_timeout=1)
        result = probes_limits.slow_clients(Run.open(target, timeout=1.0))
    assert result.verdict == FAILED
    assert "a slow headers was not cut" in result.detail and "a slow body was not cut" in result.detail


def test_cancel_ends_the_wait_for_slow_clients_to_be_cut(ca: CA, good_leaf: Leaf) -> None:
    """limits.slow_clients waits for nginx's client timeouts (a minute by default): Cancel ends that wait."""
    token = CancelToken()
    timer = threading.Timer(3.0, token.cancel, args=("Cancel pressed",))
    started = time.monotonic()
    with _silent_tls_server(good_leaf) as port:
        target = AuditTarget(base_url=f"https://{DOMAIN}:{port}", connect_host="127.0.0.1", ca_file=ca.root,
                             client_header_timeout=60, client_body_timeout=60)
        try:
            with using(RunControls(cancel=token)), pytest.raises(Cancelled):
                timer.start()
                probes_limits.slow_clients(Run.open(target, timeout=1.0))
        finally:
            timer.cancel()
    assert time.monotonic() - started < 8  # not the 65 s the slow clients would otherwise be held
