"""A minimal OCSP responder on loopback, signed by the test intermediate.

``openssl ocsp -port`` can only bind every interface; this one binds 127.0.0.1.
It answers "good" for the leaf the test PKI issued and "unknown" otherwise.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.edge.certs import EdgePKI


@contextmanager
def ocsp_responder(pki: EdgePKI, port: int) -> Iterator[list[int]]:
    """Serve OCSP for ``pki`` on 127.0.0.1:``port``; yields the serials asked about."""
    issuer = x509.load_pem_x509_certificate(pki.intermediate.read_bytes())
    key = serialization.load_pem_private_key(pki.intermediate_key.read_bytes(), None)
    leaf = x509.load_pem_x509_certificate(pki.leaf_only.read_bytes())
    asked: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # RFC 6960 A.1: base64 of the DER request in the path (what nginx sends)
            self.answer(base64.b64decode(urllib.parse.unquote(self.path.rsplit("/", 1)[-1])))

        def do_POST(self) -> None:
            self.answer(self.rfile.read(int(self.headers["Content-Length"])))

        def answer(self, der: bytes) -> None:
            request = ocsp.load_der_ocsp_request(der)
            asked.append(request.serial_number)
            now = dt.datetime.now(dt.UTC)
            status = (
                ocsp.OCSPCertStatus.GOOD
                if request.serial_number == leaf.serial_number
                else (ocsp.OCSPCertStatus.UNKNOWN)
            )
            response = (
                ocsp.OCSPResponseBuilder()
                .add_response(
                    cert=leaf,
                    issuer=issuer,
                    algorithm=request.hash_algorithm,  # the CertID hash the client used
                    cert_status=status,
                    this_update=now - dt.timedelta(minutes=5),
                    next_update=now + dt.timedelta(hours=1),
                    revocation_time=None,
                    revocation_reason=None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
                .sign(key, hashes.SHA256())  # type: ignore[arg-type]
            )
            body = response.public_bytes(serialization.Encoding.DER)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
