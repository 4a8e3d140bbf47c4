"""Raw HTTP/1.1 exchanges: the audit (and the smoke test) send exactly the bytes they mean to.

An HTTP client library would tidy an attack away before it left (``/./``
removed, ``%6D`` re-encoded, duplicate headers merged), so requests are
written byte for byte here and only the answer is parsed, with h11.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

from claudegate import __version__
from claudegate.errors import ConfigError

ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = f"claudegate-smoke/{__version__}"

BODY_KEEP = 64 * 1024  # what is kept of an answer's body


@dataclass(frozen=True)
class Endpoint:
    """Where a deployment is: the name clients use, its ports and path prefix, and where TCP goes."""

    domain: str  # for SNI, certificate checks and Host
    connect_host: str  # where TCP goes (the domain may not resolve here yet)
    https_port: int
    http_port: int  # 0: no HTTP listener to check
    prefix: str = ""  # path prefix from the base URL, "" or "/something"

    def https_url(self, path: str) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{_url_host(self.domain)}{port}{self.prefix}{path}"

    def http_url(self, path: str) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{_url_host(self.domain)}{port}{self.prefix}{path}"

    @property
    def host_header(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"{_url_host(self.domain)}{port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def endpoint(
    base_url: str, *, connect_host: str | None = None, https_port: int = 443, http_port: int = 80,
    what: str = "base_url",
) -> Endpoint:  # fmt: skip
    """The :class:`Endpoint` of ``https://HOST[:PORT][/PREFIX]``; ConfigError naming ``what`` otherwise.

    ``https_port`` is used when the URL names no port (naming it in both
    places, differently, is an error).
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https":
        raise ConfigError(
            f"{what} {base_url!r} is not an https:// URL",
            hint="give the public HTTPS address, e.g. https://gw.example.com",
        )
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(
            f"{what} {base_url!r} must be https://HOST[:PORT][/PREFIX] only",
            hint="drop any user, query string or fragment",
        )
    try:
        url_port = parts.port
    except ValueError:
        raise ConfigError(f"{what} {base_url!r} has an invalid port") from None
    if url_port is not None and https_port not in (443, url_port):
        raise ConfigError(
            f"{what} names port {url_port} but https_port is {https_port}",
            hint="give the port in one place only",
        )
    https = url_port if url_port is not None else https_port
    for name, port in (("https_port", https), ("http_port", http_port)):
        if not 0 <= port <= 65535 or (name == "https_port" and port == 0):
            raise ConfigError(f"{what}: {name} {port} is not a TCP port")
    domain = parts.hostname.lower().rstrip(".")
    return Endpoint(
        domain=domain,
        connect_host=connect_host or domain,
        https_port=https,
        http_port=http_port,
        prefix=parts.path.rstrip("/"),
    )


@dataclass
class Answer:
    """What came back; ``status`` 0 means no HTTP answer at all (``error`` says why)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    elapsed: float = 0.0
    sent: int = 0  # body bytes sent before the answer or the end

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def error_type(self) -> str | None:
        doc = self.json()
        if isinstance(doc, dict) and doc.get("type") == "error" and isinstance(doc.get("error"), dict):
            kind = doc["error"].get("type")
            return kind if isinstance(kind, str) else None
        return None

    @property
    def request_id(self) -> str | None:
        """The gateway's id of the request when it saw it; else whatever id the answer names.

        The gateway's own header comes first: an error upstream produced carries
        upstream's id in its body, and the audit log knows the request by the gateway's.
        """
        if self.headers.get("x-claudegate-request-id"):
            return self.headers["x-claudegate-request-id"]
        doc = self.json()
        if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
            return str(doc["request_id"])
        return self.headers.get("request-id")

    def shaped(self) -> bool:
        """Anthropic's error shape: type error, error.type and .message, a request_id, JSON content type."""
        doc = self.json()
        return (
            "json" in self.headers.get("content-type", "")
            and isinstance(doc, dict)
            and doc.get("type") == "error"
            and isinstance(doc.get("error"), dict)
            and isinstance(doc["error"].get("type"), str)
            and isinstance(doc["error"].get("message"), str)
            and isinstance(doc.get("request_id"), str)
        )

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        text = f"{self.status}"
        if self.error_type:
            message = (self.json() or {}).get("error", {}).get("message", "")
            text += f" {self.error_type}: {str(message)[:140]}"
        else:
            snippet = " ".join(self.body[:140].decode("utf-8", "replace").split())
            text += f" {self.headers.get('content-type', '')} {snippet}".rstrip()
        return text


def tls_context(
    ca_file: str | os.PathLike[str] | None, *, verify: bool = True, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """The client context of every probe: the system store plus ``ca_file``, TLS 1.2 at least.

    Verifying (certificate and host name) unless ``verify`` is False, which
    only the TLS probes use, to look at what a server offers.
    """
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


#: Makes the TCP connection for a probe: (host, port, timeout) -> a connected socket.
Dial = Callable[[str, int, float], socket.socket]


def open_socket(
    ep: Endpoint,
    ctx: ssl.SSLContext | None,
    timeout: float,
    *,
    source: str | None = None,
    dial: Dial | None = None,
) -> socket.socket:
    """A TCP (``ctx`` None: to the HTTP port) or TLS connection to the endpoint; the caller closes it."""
    port = ep.https_port if ctx is not None else ep.http_port
    if dial is not None:
        raw = dial(ep.connect_host, port, timeout)
    else:
        raw = socket.create_connection(
            (ep.connect_host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
    try:
        return ctx.wrap_socket(raw, server_hostname=ep.domain) if ctx is not None else raw
    except BaseException:
        raw.close()
        raise


@contextlib.contextmanager
def connect(
    ep: Endpoint, ctx: ssl.SSLContext | None, timeout: float, *, source: str | None = None, dial: Dial | None = None
) -> Iterator[socket.socket]:
    sock = open_socket(ep, ctx, timeout, source=source, dial=dial)
    try:
        yield sock
    finally:
        sock.close()


def request_bytes(
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str | bytes]],
    *,
    host: str,
    body_length: int | None = 0,
    defaults: bool = True,
) -> bytes:
    """The request head, exactly as given: no normalisation, duplicates kept, order kept."""
    raw_target = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1"]
    given = []
    for name, value in headers:
        given.append(name.lower())
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("utf-8")))
    if "host" not in given:
        lines.insert(1, b"Host: " + host.encode())
    if defaults:
        if "user-agent" not in given:
            lines.append(b"User-Agent: " + USER_AGENT.encode())
        if "anthropic-version" not in given:
            lines.append(b"anthropic-version: " + ANTHROPIC_VERSION.encode())
    if body_length is not None and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(b"Content-Length: " + str(body_length).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def exchange(
    ep: Endpoint,
    ctx: ssl.SSLContext | None,
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str | bytes]] = (),
    body: bytes | Iterable[bytes] = b"",
    *,
    timeout: float = 10.0,
    source: str | None = None,
    dial: Dial | None = None,
    defaults: bool = True,
    first_wait: float = 0.0,
) -> Answer:
    """Send one request; stop uploading as soon as the server answers. Never raises for network trouble.

    ``first_wait``: seconds to wait after the head for an answer from the
    headers alone before the body starts (0: start at once).
    """
    started = time.monotonic()
    chunks: Iterable[bytes]
    if isinstance(body, bytes):
        length: int | None = len(body)
        chunks = [body] if body else []
    else:
        length, chunks = None, body  # the caller's headers say how the body is framed
    head = request_bytes(method, target, headers, host=ep.host_header if ctx else ep.domain,
                         body_length=length, defaults=defaults)
    answer = Answer()
    try:
        with connect(ep, ctx, timeout, source=source, dial=dial) as sock:
            sock.sendall(head)
            early = poll(sock, first_wait) if first_wait > 0 else None
            for chunk in chunks if early is None else ():
                early = poll(sock)
                if early is not None:
                    break  # it answered (or closed) before the body ended: read that
                try:
                    sock.sendall(chunk)
                except OSError:
                    break
                answer.sent += len(chunk)
            _read_answer(sock, method, answer, early)
    except (OSError, ssl.SSLError) as exc:
        if answer.status == 0:
            answer.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    answer.elapsed = time.monotonic() - started
    return answer


def poll(sock: socket.socket, wait: float = 0.0) -> bytes | None:
    """Application data the server sent within ``wait`` seconds (b"" if it closed), else None.

    A readable TLS socket is not yet an answer: TLS 1.3 servers send session
    tickets after the handshake; reading consumes them and finds no data.
    """
    deadline = time.monotonic() + wait
    timeout = sock.gettimeout()
    try:
        while True:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            if not pending:
                ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    return None
            sock.setblocking(False)
            try:
                return sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                if time.monotonic() >= deadline:
                    return None
            except OSError:
                return b""
            finally:
                sock.settimeout(timeout)
    finally:
        sock.settimeout(timeout)


def _read_answer(sock: socket.socket, method: str, answer: Answer, first: bytes | None = None) -> None:
    """Parse the answer into ``answer``; ``first`` is what :func:`poll` already read (b"": it closed)."""
    conn = h11.Connection(h11.CLIENT)
    # h11 parses answers to requests it sent: tell it about a stand-in with no body.
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if answer.status == 0 and not answer.error:
                answer.error = f"not HTTP: {exc}"
            return
        if event is h11.NEED_DATA:
            try:
                data, first = (first, None) if first is not None else (sock.recv(65536), None)
            except (ssl.SSLWantReadError, TimeoutError) as exc:
                if answer.status == 0:
                    answer.error = f"timed out waiting ({type(exc).__name__})"
                return
            except OSError as exc:
                if answer.status == 0:
                    answer.error = f"{type(exc).__name__}: connection dropped"
                return
            if not data and answer.status == 0:
                answer.error = "closed without an answer"
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            answer.status = event.status_code
            answer.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            if len(answer.body) < BODY_KEEP:
                answer.body += bytes(event.data)[: BODY_KEEP - len(answer.body)]
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return


def tunnel_dial(open_channel: Callable[[str, int, float], Any]) -> Dial:
    """A :data:`Dial` whose connections start on another host (an SSH direct-tcpip channel).

    TLS needs a real socket: each channel is joined to one end of a local
    socket pair by two pumping threads, and the other end is returned.
    """

    def dial(host: str, port: int, timeout: float) -> socket.socket:
        try:
            channel = open_channel(host, port, timeout)
        except Exception as exc:  # said as a network failure, like any other connection
            raise OSError(f"could not open a connection from the vantage point: {exc}") from None
        mine, theirs = socket.socketpair()

        def pump(read: Callable[[int], bytes], write: Callable[[bytes], Any], done: Callable[[], None]) -> None:
            try:
                while data := read(65536):
                    write(data)
            except OSError:
                pass
            finally:
                done()

        threading.Thread(target=pump, args=(channel.recv, theirs.sendall, theirs.close), daemon=True).start()
        threading.Thread(target=pump, args=(theirs.recv, channel.sendall, channel.close), daemon=True).start()
        mine.settimeout(timeout)
        return mine

    return dial
