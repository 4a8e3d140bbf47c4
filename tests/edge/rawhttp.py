"""Raw HTTP/1.1 exchanges over TCP or TLS, for requests no client library will send."""

from __future__ import annotations

import json
import socket
import ssl
import time

from tests.edge.certs import EdgePKI
from tests.edge.conftest import tls_context


class RawResponse:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.headers: dict[str, str] = {}
        if not raw:
            self.status, self.status_line, self.body = 0, "", b""
            return
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("transfer-encoding") == "chunked":
            self.body = _dechunk(self.body)

    def json(self) -> dict[str, object]:
        return dict(json.loads(self.body))


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def raw_exchange(
    port: int, pki: EdgePKI | None, payload: bytes, *, source: str | None = None, timeout: float = 10.0
) -> RawResponse:
    """Send bytes as-is (TLS when ``pki`` is given) and read until the server closes or answers fully."""
    sock: socket.socket = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )
    if pki is not None:
        sock = tls_context(pki).wrap_socket(sock, server_hostname="gw.test")
    with sock:
        sock.sendall(payload)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (ssl.SSLError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
            raw = b"".join(chunks)
            if b"\r\n\r\n" in raw:
                resp = RawResponse(raw)
                length = resp.headers.get("content-length")
                if length is not None and len(resp.body) >= int(length):
                    return resp
        return RawResponse(b"".join(chunks))


def req(method: str, path: str, *headers: str, body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: gw.test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
