"""limits.body against servers that answer an oversize upload at different moments:
from the headers alone, part-way through, after the whole body, or never."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from claudegate.probes import body
from claudegate.probes.body import check_body_limit
from claudegate.probes.verdict import Failed
from claudegate.probes.wire import tls_context
from claudegate.smoke import SmokeTarget
from tests.smoke.conftest import DOMAIN
from tests.smoke.pki import CA, Leaf

LIMIT = 256 * 1024
TOO_LARGE = json.dumps(
    {"type": "error", "error": {"type": "request_too_large", "message": "too big"}, "request_id": "req_test"}
).encode()


@dataclass
class UploadServer:
    """One-connection-at-a-time TLS server; ``mode`` says when it answers and how it ends."""

    leaf: Leaf
    mode: str
    port: int = 0
    received: list[int] = field(default_factory=list)  # body bytes read, per connection
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def start(self) -> UploadServer:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.leaf.fullchain, self.leaf.key)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(ctx,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, ctx: ssl.SSLContext) -> None:
        assert self._sock is not None
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(10)
                    self._handle(conn)
            except (OSError, ssl.SSLError):
                pass

    def _handle(self, conn: ssl.SSLSocket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        read = len(body)
        want = {"early": 0, "part": 100_000, "full": length, "silent": 0, "accepts": length}[self.mode]
        while read < want:
            chunk = conn.recv(65536)
            if not chunk:
                break
            read += len(chunk)
        self.received.append(read)
        if self.mode == "silent":
            return  # close without a word
        if self.mode == "accepts":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        else:
            conn.sendall(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(TOO_LARGE)}\r\nconnection: close\r\n\r\n".encode()
                + TOO_LARGE
            )
        time.sleep(0.3)  # then close with the rest of the upload unread (a reset, for "early"/"part")

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)


@pytest.fixture
def upload_server(request: pytest.FixtureRequest, good_leaf: Leaf) -> Iterator[UploadServer]:
    server = UploadServer(good_leaf, request.param).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def short_early_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body, "EARLY_ANSWER_WAIT", 0.2)


def check(server: UploadServer, ca: CA, limit: int = LIMIT) -> str:
    ep = SmokeTarget(f"https://{DOMAIN}:{server.port}", "127.0.0.1").endpoint()
    return check_body_limit(ep, tls_context(ca.root), "claude-haiku-4-5", limit, timeout=10)


@pytest.mark.parametrize("upload_server", ["early"], indirect=True)
def test_answer_from_the_headers_alone(upload_server: UploadServer, ca: CA) -> None:
    assert check(upload_server, ca).endswith(f"after 0 of {LIMIT + 1} bytes were sent")


@pytest.mark.parametrize("upload_server", ["part"], indirect=True)
def test_answer_part_way_then_close(upload_server: UploadServer, ca: CA) -> None:
    limit = 32 * 1024 * 1024
    detail = check(upload_server, ca, limit)
    assert detail.startswith(f"413 request_too_large for {limit + 1} bytes"), detail
    sent = int(detail.split("after ")[1].split(" of")[0])
    assert 100_000 <= sent < limit // 2, detail  # the upload stopped soon after the answer came


@pytest.mark.parametrize("upload_server", ["full"], indirect=True)
def test_answer_after_the_whole_body(upload_server: UploadServer, ca: CA) -> None:
    assert check(upload_server, ca).endswith(f"after the whole {LIMIT + 1}-byte body")
    assert upload_server.received == [LIMIT + 1]


@pytest.mark.parametrize("upload_server", ["silent"], indirect=True)
def test_closed_without_an_answer_fails(upload_server: UploadServer, ca: CA) -> None:
    with pytest.raises(Failed, match="closed without an answer"):
        check(upload_server, ca)


@pytest.mark.parametrize("upload_server", ["accepts"], indirect=True)
def test_accepting_the_body_fails(upload_server: UploadServer, ca: CA) -> None:
    with pytest.raises(Failed, match="status 200, expected 413"):
        check(upload_server, ca)
