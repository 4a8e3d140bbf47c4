"""The request path: authenticate, check scopes and limits, filter, forward.

A client never chooses where a request goes or with which key: the upstream
base URL and key come from the gateway's config, the client's credentials are
stripped, and only the operations of the route table (routes.py) are served,
at a URL rebuilt from the matched row, never from the client's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import sqlite3
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yarl
from aiohttp import web

from claudegate_gateway.admission import Admission, make_admission
from claudegate_gateway.audit import AuditLog
from claudegate_gateway.batchsettle import BatchSettler
from claudegate_gateway.batchurls import localise_page, localise_results_urls
from claudegate_gateway.catalogue import Catalogue, CatalogueCache, UpstreamAnswer
from claudegate_gateway.concurrency import Admitted, FairSlots, InFlight
from claudegate_gateway.config import Config
from claudegate_gateway.errors import GatewayError, error_body, error_response, new_request_id
from claudegate_gateway.fairqueue import BodyBytes, Claim, HeldBytes, HeldClaim
from claudegate_gateway.filecontents import MAX_EXPANDED_BYTES, Contents, inside_kind, looks_opened
from claudegate_gateway.filetokens import file_tokens
from claudegate_gateway.filters import FilterPolicy, FilterResult, Verdict
from claudegate_gateway.filters.batchresults import ResultsFilter
from claudegate_gateway.filters.clients import ClientPolicies
from claudegate_gateway.filters.download import HOLD_BYTES, DownloadFilter
from claudegate_gateway.filters.filenames import filter_disposition, filter_file_object
from claudegate_gateway.filters.response import ResponseFilter, Tally
from claudegate_gateway.filters.sse import StreamFilter
from claudegate_gateway.filters.upstream_errors import filter_error_body
from claudegate_gateway.hygiene import (
    HOP_BY_HOP,
    check_request_encoding,
    presented_key,
    request_headers_up,
    response_headers,
)
from claudegate_gateway.inspection import estimate_tokens
from claudegate_gateway.keystore import Client
from claudegate_gateway.limits import Limiter, Reservation
from claudegate_gateway.loopshare import LoopShare
from claudegate_gateway.metering import UsageMeter, charge
from claudegate_gateway.metrics import Metrics
from claudegate_gateway.modelscope import (
    MAX_UPSTREAM_PAGES,
    UPSTREAM_PAGE,
    hidden_model,
    listed,
    paging,
    scoped_page,
    visible,
)
from claudegate_gateway.objects import Objects
from claudegate_gateway.offload import Offload
from claudegate_gateway.ownership import OBJECT_ID
from claudegate_gateway.reservation import bound_server_tools, reservation_tokens
from claudegate_gateway.routes import PACE_EVENTS, PACE_INTERVAL, Match, RouteError, match
from claudegate_gateway.store import SqliteStore, Store
from claudegate_gateway.uploads import filter_upload, read_upload, upstream_body

log = logging.getLogger("claudegate.gateway")

_DROP_DOWN = HOP_BY_HOP | {
    "content-length", "content-encoding", "set-cookie", "server", "x-powered-by", "via", "alt-svc",
}
_MAX_LOGGED_PATH = 256
# A download with an inside (compressed, a zip, a PDF) is held whole to be read: at most this much.
MAX_OPENED_DOWNLOAD = MAX_EXPANDED_BYTES
# Responses that need no inspection go to the client in pieces this size.
_CHUNK = 64 * 1024
# Per-stream buffers: an event stream's upstream reader pauses the socket past 2 x
# _STREAM_READ_BUFSIZE unread (aiohttp's default, kept for everything else: 2 x 64 KiB; a
# download reads ~20% faster with it), and a response relayed piece by piece waits for its
# client past _WRITE_HIGH unsent.
_STREAM_READ_BUFSIZE = 16 * 1024
_WRITE_HIGH = 16 * 1024
# A filtered stream's chunk is filtered this many bytes at a time (a millisecond or two of work).
_FILTER_SLICE = 1024
# nginx's $request_id (32 hex digits) behind the prefix the edge gives it.
_EDGE_ID = re.compile(r"req_edge[0-9a-f]{32}")


# A request whose body took longer than this to arrive has its key checked again before
# it is forwarded (a revocation reaches every replica within 1 s).
_RECHECK_AFTER = 0.5


@dataclass(slots=True)
class Exchange:
    """What one request did, for the audit log and the metrics.

    One lives as long as its request, a stream's for the whole stream: slots,
    and nothing in it that grows with the request (the body is handed on
    through ``body`` and dropped once upstream has it).
    """

    request_id: str
    started: float
    client_ip: str
    method: str
    path: str
    client: Client | None = None
    route: Match | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    upstream_request_id: str | None = None
    # nginx's id of the client request, the same on every replica it was tried on.
    edge_request_id: str | None = None
    # Metering: whether the request was handed to upstream, the status upstream answered,
    # what was reserved, the id an upload or a batch got, and an uploaded file's estimate.
    sent: bool = False
    upstream_status: int | None = None
    reserved_tokens: int = 0
    created_id: str | None = None
    file_tokens: int | None = None
    # The rate count every operation takes first, and the token reservation (or the same one).
    rate: Reservation | None = None
    reservation: Reservation | None = None
    meter: UsageMeter = field(default_factory=UsageMeter)
    verdicts: list[Verdict] = field(default_factory=list)
    # The key's in-flight place, held for the whole exchange; its body bytes
    # (fairqueue.BodyBytes), held until upstream has the body.
    admitted: Admitted | None = None
    claim: Claim | None = None
    # The body on its way upstream: taken (and so dropped) by _forward.
    body: bytes | None = None

    def body_sent(self) -> None:
        """Upstream has the body (or never will): the gateway keeps no copy and gives back its bytes."""
        self.body = None
        if self.claim is not None:
            self.claim.release()

    def close_holds(self) -> None:
        self.body_sent()
        if self.admitted is not None:
            admitted, self.admitted = self.admitted, None
            admitted.__exit__(None, None, None)

    def record(self) -> dict[str, Any]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
            "upstream_request_id": self.upstream_request_id,
            "edge_request_id": self.edge_request_id,
            "key_name": self.client.name if self.client else None,
            "key_prefix": self.client.public_id if self.client else None,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "operation": self.route.op.name if self.route is not None else None,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "error_type": self.error_type,
            "input_tokens": self.meter.input_tokens,
            "output_tokens": self.meter.output_tokens,
            "reserved_tokens": self.reserved_tokens,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "filters": [
                {"rule": v.rule, "direction": v.direction, "action": v.action, "matches": v.matches}
                for v in self.verdicts
            ],
        }


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (more is aiohttp's 413, as ``request.read`` raises).

    Not ``request.read()``: aiohttp keeps what that returns on the request
    for the request's whole life, and a stream's request lives as long as
    the stream.
    """
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


def _endpoint_label(ex: Exchange) -> str:
    # Bounded label set for metrics: the template, never a client's path.
    return ex.route.op.template if ex.route is not None else "other"


class Gateway:
    def __init__(self, config: Config, keystore: Store, upstream_key: str, policy: FilterPolicy) -> None:
        self.config = config
        self.keystore = keystore
        self.policy = policy
        self.filters = ClientPolicies(policy, config.client_filters)
        self.offload = Offload(policy, config.filters, config.source, config.client_filters)
        # One host: the daily budget is taken in the keystore's own transaction
        # (exact across processes). With state.redis the limiter is unused.
        self.limiter = Limiter(keystore.keystore) if isinstance(keystore, SqliteStore) else Limiter()
        self.audit = AuditLog(
            config.audit_log,
            field_chars=config.audit_field_max_chars,
            rotate_bytes=config.audit_log_max_bytes,
            keep_files=config.audit_log_files,
        )
        self.metrics = Metrics()
        self._upstream_key = upstream_key
        self._base = config.upstream.base_url
        self._session: aiohttp.ClientSession | None = None
        self._trusted = config.trusted_proxies
        self.objects = Objects(keystore.owners, keystore.digest)
        self.in_flight = InFlight(config.max_in_flight_per_key)
        self.body_bytes = BodyBytes(config.max_body_bytes_per_key)
        self.loop_share = LoopShare()
        self.slots = FairSlots(config.upstream.max_connections)
        self.catalogues = CatalogueCache(config.models_cache_seconds)
        # Downloads held while filtered (their first MiB, a compressed file whole): bounded in all.
        self.held_downloads = HeldBytes(
            config.max_held_download_bytes, "file downloads", config.max_held_download_bytes_per_key
        )
        # The limiter above on one host; Redis for all replicas with state.redis.
        self.admission: Admission = make_admission(config, self.limiter, keystore)
        self.batches = BatchSettler(
            keystore, self.admission.adjust_daily, lambda: self._session, self._base, upstream_key,
            self.audit.write, config.batch_poll_seconds,
        )  # fmt: skip

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        up = self.config.upstream
        connector = aiohttp.TCPConnector(limit=up.max_connections, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=up.connect_timeout, sock_read=up.read_timeout),
            auto_decompress=True,
            # No Accept-Encoding upstream: a compressed event stream would sit
            # in the decompressor, which is batching by another name.
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        self.offload.start()
        await self.keystore.open()
        await self.admission.start()
        self.batches.start()

    async def stop(self) -> None:
        await self.batches.stop()
        if self._session is not None:
            await self._session.close()
        self.offload.stop()
        try:
            await self.admission.stop()
            await self.flush_usage()
        except Exception as exc:  # the ledger is away: nothing to do about it on the way out
            log.warning("usage not written to the ledger at shutdown: %s", type(exc).__name__)
        self.audit.close()

    async def flush_usage(self) -> None:
        """Every few seconds (app.py): usage into the ledger (Redis admission only), idle loop shares dropped."""
        self.loop_share.forget_idle()
        await self.admission.flush()

    # -- request path -------------------------------------------------------

    def _from_trusted_proxy(self, request: web.Request) -> bool:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not self._trusted or not peer:
            return False
        try:
            peer_ip = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        return any(peer_ip in net for net in self._trusted)

    def client_ip(self, request: web.Request) -> str:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ip = peer[0] if peer else "unknown"
        real = request.headers.get("x-real-ip")
        if real and self._from_trusted_proxy(request):
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(real.strip()))
        return str(ip)

    def edge_request_id(self, request: web.Request) -> str | None:
        """nginx's id of this client request (a retried one keeps it), believed only from the edge."""
        value = request.headers.get("x-claudegate-edge-request-id")
        if value is None or not _EDGE_ID.fullmatch(value) or not self._from_trusted_proxy(request):
            return None
        return value

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ex = Exchange(
            new_request_id(), time.perf_counter(), self.client_ip(request), request.method,
            # Raw and cut short: a refused path is logged as sent, never decoded or whole.
            request.rel_url.raw_path[:_MAX_LOGGED_PATH],
        )
        ex.edge_request_id = self.edge_request_id(request)
        reservation: Reservation | None = None
        try:
            try:
                response, reservation = await self._handle(request, ex)
            except GatewayError as err:
                ex.status, ex.error_type = err.status, err.error_type
                if err.error_type == "rate_limit_error":
                    self.metrics.rate_limited += 1
                return error_response(err, ex.request_id)
            except asyncio.CancelledError:
                ex.status, ex.error_type = 499, "client_closed"
                raise
            except _ClientGone:
                # The client left while its body was being read: its disconnect,
                # audited as such, not a gateway failure (no one is there to answer).
                ex.status, ex.error_type = 499, "client_closed"
                return web.Response(status=499)
            except sqlite3.OperationalError as exc:
                # The keystore stayed locked past its busy timeout (another process
                # holding it): budgets fail closed, and the client may retry.
                log.warning("request %s: keystore busy: %s", ex.request_id, exc)
                busy = GatewayError("overloaded_error", "The gateway's key store is busy; retry shortly",
                                    headers={"retry-after": "1"})
                ex.status, ex.error_type = busy.status, busy.error_type
                return error_response(busy, ex.request_id)
            except Exception:
                log.exception("unexpected error on request %s", ex.request_id)
                ex.status, ex.error_type = 500, "api_error"
                return error_response(
                    GatewayError("api_error", "Internal gateway error; see the gateway log for this request id"),
                    ex.request_id,
                )
            return response
        finally:
            try:
                if reservation is not None:
                    self._settle(reservation, ex)
                if ex.rate is not None and ex.rate is not reservation:
                    # The rate count taken first holds the in-flight place (Redis): given back, no tokens.
                    self.admission.settle(ex.rate, 0)
            except sqlite3.OperationalError as exc:
                # The answer is gone already; the reservation stays charged (never less than billed).
                log.warning("request %s: keystore busy, settlement skipped: %s", ex.request_id, exc)
            ex.close_holds()
            if ex.meter.container_id is not None and ex.client is not None:
                await self._own_container(ex.meter.container_id, ex)
            self.metrics.tokens["input"] += ex.meter.input_tokens
            self.metrics.tokens["output"] += ex.meter.output_tokens
            self.metrics.observe(_endpoint_label(ex), ex.status, time.perf_counter() - ex.started)
            self.audit.write(ex.record())
            if ex.status != 499:
                # Last (a cancellation while waiting skips nothing else): an answer not yet sent
                # (a whole one goes out after this returns) waits until its in-flight place is
                # free in Redis, else a client that sends its next request the moment it has this
                # answer is refused "in flight" by its own finished request (red team round 6).
                # A stream's end was sent already: not exact there.
                for res in (reservation, ex.rate):
                    if res is not None:
                        await self.admission.given_back(res)

    async def _handle(
        self, request: web.Request, ex: Exchange
    ) -> tuple[web.StreamResponse, Reservation | None]:
        # Cheap checks first, each before anything costlier: the key's form
        # and digest, the route, the scopes, the size against the key's
        # remaining tokens; only then is the body read and parsed.
        client = await self.keystore.lookup(presented_key(request.headers))
        if client is None:
            raise GatewayError("authentication_error", "invalid x-api-key")
        ex.client = client
        try:
            route = match(request.method, request.rel_url.raw_path, request.rel_url.raw_query_string)
        except RouteError as err:
            raise GatewayError(err.error_type, err.message) from None
        ex.route = route
        ex.path = route.path
        op = route.op
        scopes = client.scopes
        # Every operation counts against the key's rpm, first, whatever becomes
        # of it (refused by scope, body or filter, an id not the caller's, a list).
        rate = ex.rate = await self.admission.reserve(client, 0)
        if not scopes.endpoint_allowed(op.template, exact=op.explicit_scope):
            raise GatewayError("permission_error", f"This key may not call {op.method} {op.template}")
        for beta in request.headers.getall("anthropic-beta", []):
            for name in (b.strip() for b in beta.split(",")):
                if name and not scopes.beta_allowed(name):
                    raise GatewayError("permission_error", f"This key may not use anthropic-beta {name[:100]!r}")
        check_request_encoding(request.headers)
        admitted = self.in_flight.admit(client.name)
        admitted.__enter__()
        ex.admitted = admitted
        declared = request.content_length or 0
        if op.body == "none" and declared:
            raise GatewayError("invalid_request_error", f"{op.method} {op.template} takes no request body")
        if op.local:  # the gateway's own operation: never forwarded, no body read, no tokens
            return await self._pace(request, ex), rate
        kind = op.owner_kind
        if kind is not None and op.owner_action == "create" and self.config.state.postgres is not None:
            # Refused before upstream makes an object that could then not be recorded as the caller's.
            await self.keystore.check()
        if kind is not None and op.owner_action == "access":
            await self.objects.check_access(client, kind, next(iter(route.params.values())))
        if op.inspect in ("message", "batch") and declared:
            self.admission.check_room(client, estimate_tokens(declared))
        if kind is not None and op.owner_action == "list":
            # Counted like any other (above); its extra upstream pages are counted in _list.
            return await self._list(request, route, client, ex), rate
        # The model catalogue within the key's model scope (modelscope.py).
        if op.name == "models.get" and not listed(route.params["model_id"], scopes):
            raise hidden_model(route.params["model_id"])
        if op.name == "models.list":
            return await self._models(request, route, client, ex), rate

        content_type = None
        # The key's body bytes inside the gateway are bounded: claimed from
        # the declared length before reading, from the real size after.
        claim = ex.claim = self.body_bytes.claim(client.name, declared)
        try:
            if op.body == "multipart":
                body, content_type = await self._read_upload(request, ex)
            else:
                body = await _read_body(request, self.config.max_body_bytes)
        except web.HTTPRequestEntityTooLarge:
            raise GatewayError(
                "request_too_large",
                f"Request exceeds the maximum allowed number of bytes ({self.config.max_body_bytes})",
            ) from None
        except ConnectionResetError as exc:  # the client left mid-body (not upstream: nothing was sent yet)
            raise _ClientGone from exc
        claim.grow(len(body))
        # The key was checked on the headers; a body can arrive slowly (the edge streams
        # bodies through and cuts only a client silent for client_body_timeout), so a key
        # revoked or rotated out meanwhile, on any replica, is checked again before anything
        # reaches upstream (red team round 6: forwarded 1.5 s after a revoke).
        slow = time.perf_counter() - ex.started > _RECHECK_AFTER
        if slow and await self.keystore.lookup(presented_key(request.headers)) is None:
            raise GatewayError("authentication_error", "invalid x-api-key")
        if op.body == "none" and body:
            raise GatewayError("invalid_request_error", f"{op.method} {op.template} takes no request body")

        tokens = 0
        if op.inspect != "none":
            if op.inspect in ("message", "batch"):
                self.admission.check_room(client, estimate_tokens(len(body)))
            found = await self.offload.inspect(op.inspect, body, scopes, client.name)
            ex.model, ex.stream = found.model, found.stream
            ex.verdicts.extend(found.verdicts)
            if found.filter_blocked:
                self.metrics.filter_blocks += 1
            if found.error is not None:
                raise GatewayError(*found.error)
            await self.objects.check_file_refs(client, found.file_ids)
            for container_id in found.container_ids:
                await self.objects.check_access(client, "container", container_id)
            body = found.body
            if any(uses is None or per is None for uses, per in found.refs.server_tools):
                body = self._bound_server_tools(body)
            # What upstream will bill, referenced content included (reservation.py).
            owned = await self.keystore.owners.file_tokens(client.name, list(found.refs.files))
            tokens = reservation_tokens(found.tokens, found.refs, owned, self.config.reservations)
            del found  # it holds the body too
        # The rate was counted above (``rate``): this takes only tokens, and settles on its own.
        reservation = await self.admission.reserve(client, tokens, count_request=False) if tokens else rate
        ex.reservation = reservation
        ex.reserved_tokens = tokens
        # Handed on through the Exchange, so that no frame here holds the body
        # while a stream runs: _forward drops it once upstream has it.
        ex.body = body
        del body
        try:
            response = await self._forward(request, route, ex, content_type)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                ex.status, ex.error_type = 499, "client_closed"
            self._settle(reservation, ex)
            raise
        return response, reservation

    def _bound_server_tools(self, body: bytes) -> bytes:
        # Rare (a web search or fetch tool without its bounds): parse the checked body again.
        doc = json.loads(body)
        return json.dumps(doc).encode() if bound_server_tools(doc, self.config.reservations) else body

    async def _pace(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        """The paced diagnostic stream: PACE_EVENTS events PACE_INTERVAL apart, made here, never upstream.

        If they reach the client all at once, something between (a proxy's
        buffering, a compressing middlebox) holds events back.
        """
        ex.status = 200
        response = web.StreamResponse(
            status=200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no",
                     "x-claudegate-request-id": ex.request_id},
        )  # fmt: skip
        await response.prepare(request)
        for seq in range(PACE_EVENTS):
            if seq:
                await asyncio.sleep(PACE_INTERVAL)
            event = {"type": "claudegate_pace", "seq": seq, "of": PACE_EVENTS, "interval_ms": int(PACE_INTERVAL * 1000)}
            await response.write(b"event: claudegate_pace\ndata: " + json.dumps(event).encode() + b"\n\n")
        await response.write_eof()
        return response

    async def _forward(
        self, request: web.Request, route: Match, ex: Exchange, content_type: str | None = None
    ) -> web.StreamResponse:
        """Send ``ex.body`` upstream and relay the answer.

        The gateway's copy of the body is dropped, and its bytes given back to
        the key's bound, as soon as upstream has answered: a stream then holds
        nothing of its request (a Claude Code request is tens of KB).
        """
        assert self._session is not None and ex.client is not None
        headers = request_headers_up(request.headers)
        if content_type is not None:  # a body the gateway rebuilt (an upload): its own boundary
            headers["content-type"] = content_type
        headers["x-api-key"] = self._upstream_key
        # Built from the matched row and its validated parameters; encoded=True
        # so yarl sends exactly these bytes (there is nothing in them to encode).
        url = yarl.URL(self._base + route.target, encoded=True)
        async with self.slots.slot(ex.client.name, self.config.upstream.connect_timeout):
            body, ex.body = ex.body, None
            try:
                ex.sent = True  # from here on upstream may have the request (and bill it)
                # Awaited, not entered: an entered request context keeps aiohttp's
                # finished request coroutine (~1 KB) for the whole stream.
                upstream = await self._session.request(
                    route.op.method, url, data=body if body else None, headers=headers, allow_redirects=False,
                    read_bufsize=_STREAM_READ_BUFSIZE if ex.stream else None,
                )
            except aiohttp.ClientConnectorError as exc:
                ex.sent = False  # no connection was made: upstream never saw it
                self.metrics.upstream_errors += 1
                log.warning("request %s: upstream unreachable: %s", ex.request_id, type(exc).__name__)
                raise GatewayError("api_error", "The gateway could not reach the upstream API") from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                self.metrics.upstream_errors += 1
                raise GatewayError("timeout_error", "The upstream API did not answer in time") from None
            except aiohttp.ClientError as exc:
                self.metrics.upstream_errors += 1
                log.warning("request %s: upstream unreachable: %s", ex.request_id, type(exc).__name__)
                raise GatewayError("api_error", "The gateway could not reach the upstream API") from None
            finally:
                del body
                ex.body_sent()
            async with upstream:
                return await self._relay(request, upstream, route, ex)

    def _down_headers(self, upstream: aiohttp.ClientResponse, ex: Exchange) -> dict[str, str]:
        ex.upstream_request_id = upstream.headers.get("request-id")
        own: dict[str, str] = {}
        if ex.client is not None and (ex.client.scopes.rpm is not None or ex.client.scopes.tpm is not None):
            own.update(self.admission.headers(ex.client))
        own["x-claudegate-request-id"] = ex.request_id
        return response_headers(upstream.headers, _DROP_DOWN, own)

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, route: Match, ex: Exchange
    ) -> web.StreamResponse:
        ex.status = ex.upstream_status = upstream.status
        headers = self._down_headers(upstream, ex)
        rf = None
        if route.op.filter_response and ex.client is not None and upstream.status == 200:
            rf = self.filters.response_filter(ex.client.name)
        # Only a message streams: a file (the model names it, and its type) or a results file that
        # upstream serves as text/event-stream is still a file, for the filters below; read as
        # events, text outside them would pass unseen.
        if upstream.content_type == "text/event-stream" and route.op.meter == "message":
            sf = StreamFilter(rf, ex.request_id) if rf is not None else None
            return await self._relay_stream(request, upstream, headers, ex, sf)
        if route.op.stream_through and route.op.owner_kind == "file" and rf is not None:
            self._filter_disposition(rf, headers, ex)
            return await self._relay_download(request, upstream, headers, ex, DownloadFilter(rf))
        if route.op.stream_through:
            return await self._relay_through(request, upstream, headers, ex, rf)
        data = await self._read_whole(upstream)
        if route.op.owner_kind == "batch" and upstream.status == 200:
            data = localise_results_urls(data)
        if route.op.meter == "message" and upstream.status == 200:
            ex.meter.read_message(data)  # metered before any verdict: a blocked answer is still paid for
            if len(ex.meter.output_files) > ex.meter.taken:
                await self._own_outputs(ex)
            if rf is not None:
                data = self._filter_message(rf, data, ex)
        elif upstream.status >= 400:
            ex.error_type = "upstream"
            data = self._filter_error(data, ex)
        if route.op.owner_kind is not None:
            data = await self._owned_answer(request, route, ex, upstream.status, data)
            if route.op.name == "files.get" and upstream.status == 200:
                data = self._filter_file_name(data, ex)
        return web.Response(status=upstream.status, body=data, headers=headers)

    def _filter_disposition(self, rf: ResponseFilter, headers: dict[str, str], ex: Exchange) -> None:
        """A download's Content-Disposition names the file the model made: dropped when a rule matches it."""
        for name in [h for h in headers if h.lower() == "content-disposition"]:
            tally = Tally()
            if filter_disposition(rf, headers[name], tally) is None:
                del headers[name]
            ex.verdicts.extend(tally.verdicts())

    def _filter_file_name(self, data: bytes, ex: Exchange) -> bytes:
        """A file object's name (the model's words, for its outputs) through the caller's response rules."""
        rf = self.filters.response_filter(ex.client.name) if ex.client is not None else None
        if rf is None:
            return data
        try:
            doc = json.loads(data)
        except ValueError:
            return data
        tally = Tally()
        changed = filter_file_object(rf, doc, tally)
        ex.verdicts.extend(tally.verdicts())
        if tally.blocked is not None:
            self.metrics.filter_blocks += 1
            ex.error_type = "response_blocked"
            raise GatewayError(tally.blocked_type, tally.blocked_message)
        return json.dumps(doc).encode() if changed else data

    async def _read_whole(self, upstream: aiohttp.ClientResponse) -> bytes:
        """Upstream's whole body; a stall or a broken connection is the client's 504/500 in Anthropic's shape."""
        try:
            return await upstream.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            self.metrics.upstream_errors += 1
            raise GatewayError("timeout_error", "The upstream API stopped answering mid-response") from None
        except aiohttp.ClientError:
            self.metrics.upstream_errors += 1
            raise GatewayError("api_error", "The upstream connection broke mid-response") from None

    def _filter_error(self, data: bytes, ex: Exchange) -> bytes:
        """Upstream's error body, checked by the client's rules: it may quote the request."""
        if ex.client is None:
            return data
        name = ex.client.name
        out, verdicts = filter_error_body(
            data, self.filters.request_policy(name), self.filters.response_filter(name), ex.request_id
        )
        ex.verdicts.extend(verdicts)
        return out

    def _filter_message(self, rf: ResponseFilter, data: bytes, ex: Exchange) -> bytes:
        out, tally = rf.message_bytes(data)
        ex.verdicts.extend(tally.verdicts())
        if tally.blocked is not None:
            self.metrics.filter_blocks += 1
            raise GatewayError(tally.blocked_type, tally.blocked_message)
        return out

    async def _relay_through(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str], ex: Exchange,
        rf: ResponseFilter | None = None,
    ) -> web.StreamResponse:
        """A response passed on piece by piece (a download, a listing; batch results line by line through ``rf``)."""
        if upstream.status >= 400:
            ex.error_type = "upstream"
            # An error is a small JSON body that may quote the request: read and checked whole.
            data = await self._read_whole(upstream)
            return web.Response(status=upstream.status, body=self._filter_error(data, ex), headers=headers)
        lines = ResultsFilter(rf) if rf is not None else None
        response = web.StreamResponse(status=upstream.status, headers=headers)
        if not await _prepared(response, request, ex):
            return response
        try:
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                out = chunk if lines is None else lines.feed(chunk)
                if lines is not None and lines.broken:
                    raise aiohttp.ClientPayloadError("a batch result line over the gateway's limit")
                if out:
                    await response.write(out)
            if lines is not None:
                ex.verdicts.extend(lines.verdicts())
                await response.write(lines.close())
        except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
            self.metrics.upstream_errors += 1
            ex.error_type = "upstream_broken"
            # The status line is gone; cutting the connection before the last
            # chunk is how the client learns the body is incomplete.
            if request.transport is not None:
                request.transport.abort()
            return response
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            ex.status, ex.error_type = 499, "client_closed"
            return response
        await response.write_eof()
        return response

    async def _relay_download(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str], ex: Exchange,
        df: DownloadFilter,
    ) -> web.StreamResponse:
        """A file the model made, through the response rules (filters/download.py)."""
        held: list[bytes] = []  # the filtered bytes of the start, sent once it passed
        raw: list[bytes] = []  # upstream's bytes as sent: what kind of file this is
        # What this download holds (upstream's bytes and the filtered ones), within the process's
        # bound and the key's share of it.
        claim = self.held_downloads.claim(ex.client.name if ex.client is not None else "")
        try:
            return await self._relay_held(request, upstream, headers, ex, df, held, raw, claim)
        finally:
            claim.release()

    async def _relay_held(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str], ex: Exchange,
        df: DownloadFilter, held: list[bytes], raw: list[bytes], claim: HeldClaim,
    ) -> web.StreamResponse:
        size = 0
        chunks = upstream.content.iter_chunked(_CHUNK)
        key = ex.client.name if ex.client is not None else ""

        async def filtered(chunk: bytes) -> bytes:
            # Filtering runs on the event loop: charged to the key's share of it
            # (loopshare.py), so a 400 MB download never holds other keys up.
            began = time.perf_counter()
            out = df.feed(chunk)
            pause = self.loop_share.charge(key, time.perf_counter() - began)
            if pause:
                await asyncio.sleep(pause)
            return out

        def hold(chunk: bytes, out: bytes) -> None:
            claim.resize(claim.size + len(chunk) + len(out))  # raises past the process's bound
            raw.append(chunk)
            held.append(out)

        whole: bytes | None = None  # a file with an inside (compressed, a zip, a PDF), held whole
        ended = False
        try:
            # The first HOLD_BYTES are filtered before the status line: a small
            # file that must be blocked gets the gateway's error, not a 200.
            async for chunk in chunks:
                hold(chunk, await filtered(chunk))
                size += len(chunk)
                if df.blocked or size >= HOLD_BYTES:
                    break
            else:
                held.append(df.close())
                ended = True
            if not df.blocked and looks_opened(b"".join(raw)):
                # Its inside is read before a byte is sent: a truncated gzip still gives
                # its start, so cutting the download late would be too late.
                while not ended and not df.blocked:
                    chunk = await anext(chunks, b"")
                    if not chunk:
                        held.append(df.close())
                        ended = True
                        break
                    size += len(chunk)
                    if size > MAX_OPENED_DOWNLOAD:
                        raise GatewayError("invalid_request_error", "The gateway cannot inspect this download: "
                                           f"a compressed file, archive or PDF over {MAX_OPENED_DOWNLOAD} bytes")
                    hold(chunk, await filtered(chunk))
                claim.resize(claim.size + size)  # the joined copy, while the pieces still exist
                whole = b"".join(raw)
            raw.clear()
            claim.resize(claim.size - size)  # upstream's pieces let go (the joined copy, if any, stays)
        except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
            self.metrics.upstream_errors += 1
            raise GatewayError("api_error", "The upstream API broke off the download") from None
        ex.verdicts.extend(df.verdicts())
        if df.blocked:
            self.metrics.filter_blocks += 1
            ex.error_type = "response_blocked"
            raise GatewayError(df.blocked_type, df.blocked_message)
        if whole is not None:
            await self._check_download_inside(whole, ex)
            claim.resize(claim.size - len(whole))
            whole = None
        response = web.StreamResponse(status=upstream.status, headers=headers)
        if not await _prepared(response, request, ex):
            return response
        try:
            for out in held:
                if out:
                    await response.write(out)
            held.clear()  # sent: from here the download streams and holds nothing
            claim.release()
            if not ended:
                async for chunk in chunks:
                    out = await filtered(chunk)
                    if df.blocked:
                        break
                    if out:
                        await response.write(out)
                if not df.blocked:
                    await response.write(df.close())
                ex.verdicts[:] = [v for v in ex.verdicts if v.direction != "response"] + df.verdicts()
                if df.blocked:
                    # Too late for an error status: cutting the connection before the last
                    # chunk is how the client learns the body is incomplete.
                    self.metrics.filter_blocks += 1
                    ex.error_type = "response_blocked"
                    if request.transport is not None:
                        request.transport.abort()
                    return response
        except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
            self.metrics.upstream_errors += 1
            ex.error_type = "upstream_broken"
            if request.transport is not None:
                request.transport.abort()
            return response
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            ex.status, ex.error_type = 499, "client_closed"
            return response
        await response.write_eof()
        return response

    async def _check_download_inside(self, data: bytes, ex: Exchange) -> None:
        """The text inside a downloaded compressed file, zip or PDF, through the response rules:
        a match blocks (it cannot be redacted in place), what cannot be read whole is refused."""
        inside, verdicts = await self.offload.inside_download(data, ex.client.name if ex.client is not None else "")
        if inside.refused is not None:
            ex.error_type = "response_blocked"
            kind = "/".join(inside.kinds) or inside_kind(data)
            raise GatewayError("invalid_request_error",
                               f"The gateway cannot inspect this downloaded {kind} file: {inside.refused}")  # fmt: skip
        ex.verdicts.extend(v for v in verdicts if v.action == "log")  # counted, no more
        blocked = [replace(v, action="block") for v in verdicts if v.action != "log"]
        if blocked:
            ex.verdicts.extend(blocked)
            self.metrics.filter_blocks += 1
            ex.error_type = "response_blocked"
            raise GatewayError(
                "invalid_request_error", f"The response was blocked by the gateway's filter rule {blocked[0].rule!r}"
            )

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str], ex: Exchange,
        sf: StreamFilter | None = None,
    ) -> web.StreamResponse:
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"
        response = web.StreamResponse(status=upstream.status, headers=headers)
        headers.clear()  # copied into the response; the callers' frames hold this dict for the whole stream
        key = ex.client.name if ex.client is not None else ""
        self.metrics.active_streams += 1
        ended = False
        try:
            try:
                # Inside the try: a client gone before the headers is a disconnect like any other.
                await response.prepare(request)
                transport = request.transport
                if transport is not None:
                    # Past this many unsent bytes the writer waits for the client (asyncio's
                    # default is 64 KiB, and aiohttp waits only every 64 KiB written).
                    transport.set_write_buffer_limits(high=_WRITE_HIGH)
                # readany() in a loop: what iter_any() does, without its iterator object per stream.
                # Between two events a stream holds no piece of the last one: the
                # names are cleared before waiting (a burst from upstream can be a
                # chunk of hundreds of KB, and a stream waits for minutes).
                while chunk := await upstream.content.readany():
                    if sf is None:
                        # A code execution output file is the client's before it sees its id;
                        # usage is metered once the bytes left (a client gone before the final
                        # usage reached it pays the reservation).
                        if ex.meter.peek_outputs(chunk):
                            await self._own_outputs(ex)
                        await response.write(chunk)
                        ex.meter.feed(chunk)
                        chunk = b""
                        if transport is not None and transport.get_write_buffer_size() > _WRITE_HIGH:
                            await request.writer.drain()  # a client that does not read holds this stream
                        continue
                    # Filtered: what the window releases; after a block nothing, but
                    # upstream is still read to the end so the usage is metered.
                    # A large chunk (an upstream that sends faster than this reads)
                    # is filtered in slices, each charged to the key's share of the
                    # loop (loopshare.py): one key's streams never hold the loop
                    # from the others for more than a slice.
                    for at in range(0, len(chunk), _FILTER_SLICE):
                        began = time.perf_counter()
                        out = sf.feed(chunk[at : at + _FILTER_SLICE])
                        if at == 0:
                            ex.meter.feed(chunk)
                            if len(ex.meter.output_files) > ex.meter.taken:
                                await self._own_outputs(ex)
                        pause = self.loop_share.charge(key, time.perf_counter() - began)
                        if out:
                            await response.write(out)
                            if transport is not None and transport.get_write_buffer_size() > _WRITE_HIGH:
                                await request.writer.drain()
                        if sf.blocked and not ended:
                            await response.write_eof()  # the client has its error event: done
                            ended = True
                        out = b""
                        if pause or at + _FILTER_SLICE < len(chunk):
                            await asyncio.sleep(pause)
                    chunk = b""
                if sf is not None and not ended:
                    out = sf.close()
                    if out:
                        await response.write(out)
            except (TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
                self.metrics.upstream_errors += 1
                ex.error_type = "upstream_stream_broken"
                if not ended:
                    event = error_body("api_error", "The upstream stream broke off", ex.request_id)
                    try:
                        await response.write(b"event: error\ndata: " + event + b"\n\n")
                    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                        # Both ends went at once (a host shutting down): the client's leaving is the news.
                        ex.status, ex.error_type = 499, "client_closed"
                        return response
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                ex.status, ex.error_type = 499, "client_closed"
                return response
            if ex.meter.stream_error:
                ex.error_type = ex.meter.stream_error
            if not ended:
                await self._release_before_end(ex)
                try:
                    await response.write_eof()
                except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                    ex.status, ex.error_type = 499, "client_closed"
                    return response
        finally:
            self.metrics.active_streams -= 1
            if sf is not None:
                ex.verdicts.extend(sf.verdicts())
                if sf.blocked:
                    self.metrics.filter_blocks += 1
                    ex.error_type = ex.error_type or "response_blocked"
        return response

    async def _release_before_end(self, ex: Exchange) -> None:
        """A stream upstream finished (relayed and metered whole): settle it and give its in-flight
        place back before the client sees the end, as a whole answer does (handle's finally, which
        then finds all of it done): a client may send its next request the moment this one ends."""
        with contextlib.suppress(sqlite3.OperationalError):  # handle's finally tries again, and logs
            if ex.reservation is not None:
                self._settle(ex.reservation, ex)
            if ex.rate is not None and ex.rate is not ex.reservation:
                self.admission.settle(ex.rate, 0)
        ex.close_holds()
        for res in (ex.reservation, ex.rate):
            if res is not None:
                await self.admission.given_back(res)

    # -- metering, objects, uploads ----------------------------------------

    def _settle(self, reservation: Reservation, ex: Exchange) -> None:
        if reservation.settled:
            return
        meter = ex.route.op.meter if ex.route is not None else "none"
        if meter == "batch":
            # Upstream bills the batch's requests later, out of sight: the
            # reservation is charged now and settled when the batch ends (batchsettle.py).
            created = ex.upstream_status is not None and 200 <= ex.upstream_status < 300
            used = reservation.tokens if created or (ex.sent and ex.upstream_status is None) else 0
            # (Its row for the settlement was written when upstream answered: _charge_batch.)
        elif meter == "message":
            started = ex.sent and (ex.upstream_status is None or ex.upstream_status < 400)
            used = charge(reservation.tokens, ex.meter, started=started)
        else:
            used = ex.meter.total  # count_tokens, lists, gets: upstream bills nothing
        self.admission.settle(reservation, used)

    async def _owned_answer(self, request: web.Request, route: Match, ex: Exchange, status: int, data: bytes) -> bytes:
        """Record or forget ownership from upstream's answer; point results_url at the gateway."""
        kind, client = route.op.owner_kind, ex.client
        assert kind is not None and client is not None
        if route.op.owner_action == "create":
            ex.created_id = await self.objects.created(client, kind, status, data, ex.file_tokens)
            if kind == "batch" and ex.created_id is not None:
                await self._charge_batch(ex.created_id, client, ex)
        elif route.op.method == "DELETE":
            await self.objects.deleted(kind, next(iter(route.params.values())), status)
        else:  # a get or a cancel: upstream's newer view of the object, kept for lists
            await self.objects.seen(kind, next(iter(route.params.values())), status, data)
        # results_url was pointed at the gateway already (batchurls, in _relay).
        return data

    async def _own_container(self, container_id: str, ex: Exchange) -> None:
        """The container upstream ran this request's code in is the caller's (the first to use it)."""
        assert ex.client is not None
        if not OBJECT_ID.match(container_id):
            return
        try:
            await self.keystore.owners.record("container", container_id, ex.client.name,
                                              credential=ex.client.public_id)  # fmt: skip
        except Exception as exc:  # the store is away: the container stays nobody's (refused to all)
            log.warning("request %s: container not recorded: %s", ex.request_id, type(exc).__name__)

    async def _own_outputs(self, ex: Exchange) -> None:
        """The files this request's code execution wrote are the caller's (the first to be shown them;
        INSERT OR IGNORE: an id another key owns stays that key's, and refused to this one)."""
        assert ex.client is not None
        for file_id in ex.meter.take_output_files():
            try:
                await self.keystore.owners.record("file", file_id, ex.client.name, credential=ex.client.public_id)
            except Exception as exc:  # the store is away: the file stays nobody's (refused to all)
                log.warning("request %s: output file not recorded: %s", ex.request_id, type(exc).__name__)

    async def _charge_batch(self, batch_id: str, client: Client, ex: Exchange) -> None:
        """Remember the new batch's charge, for its settlement when it ends (batchsettle.py)."""
        res = ex.reservation
        if res is None:
            return
        try:
            await self.keystore.charge_batch(batch_id, client.name, res.day, res.tokens, res.daily)
        except Exception as exc:  # the store is away: the batch keeps its reservation, never less than billed
            log.warning("request %s: batch %s charged its reservation, not settled later: %s",
                        ex.request_id, batch_id, type(exc).__name__)  # fmt: skip

    async def _list(self, request: web.Request, route: Match, client: Client, ex: Exchange) -> web.StreamResponse:
        """A list, answered from the owner record (objects.py): one request of the key's rpm, no upstream call."""
        assert self._session is not None and route.op.owner_kind is not None
        session = self._session
        headers = request_headers_up(request.headers)  # the same allowlist as every forwarded request
        headers["x-api-key"] = self._upstream_key

        async def fetch(object_id: str) -> tuple[int, Any]:
            # Only for a row recorded before objects were kept: once per such object, ever.
            url = yarl.URL(self._base + route.path + "/" + object_id, encoded=True)
            try:
                async with self.slots.slot(client.name, self.config.upstream.connect_timeout), session.get(
                    url, headers=headers, allow_redirects=False
                ) as upstream:
                    raw = await upstream.read()
                    status = upstream.status
            except (TimeoutError, aiohttp.ClientError):
                self.metrics.upstream_errors += 1
                return 0, None
            try:
                return status, json.loads(raw)
            except ValueError:
                return status, None

        page = await self.objects.list_page(client, route.op.owner_kind, route.query, fetch)
        if route.op.owner_kind == "batch":
            localise_page(page)
        rf = self.filters.response_filter(client.name)
        if route.op.owner_kind == "file" and rf is not None and isinstance(page.get("data"), list):
            # Names the model gave its files, as on a get: redacted, or withheld when a rule blocks.
            tally = Tally()
            for item in page["data"]:
                filter_file_object(rf, item, tally)
            ex.verdicts.extend(tally.verdicts())
        ex.status = 200
        down = {"x-claudegate-request-id": ex.request_id}
        return web.Response(body=json.dumps(page).encode(), content_type="application/json", headers=down)

    async def _models(self, request: web.Request, route: Match, client: Client, ex: Exchange) -> web.StreamResponse:
        """The models list within the key's scope: upstream's whole catalogue (read once for every key
        for ``models_cache_seconds``, catalogue.py), filtered, paged here."""
        want = paging(route.query)  # a bad query is refused before upstream is asked
        headers = request_headers_up(request.headers)  # the same allowlist as every forwarded request
        # The selection (lifecycle, beta) goes upstream; the paging is the gateway's own.
        base = tuple((k, v) for k, v in route.query if k not in ("limit", "after_id", "before_id"))
        shaping = tuple(headers.get(name, "") for name in ("anthropic-version", "anthropic-beta"))
        ex.sent = True
        answer, shared = await self.catalogues.get(
            (base, shaping), lambda: self._read_catalogue(route.path, base, headers, client)
        )
        down = dict(answer.headers)
        if shared:
            # Upstream's request id belongs to the call that made the read (its audit record has it).
            down = {k: v for k, v in down.items() if k.lower() != "request-id"}
        else:
            ex.upstream_request_id = answer.upstream_request_id
        if client.scopes.rpm is not None or client.scopes.tpm is not None:
            down.update(self.admission.headers(client))
        down["x-claudegate-request-id"] = ex.request_id
        ex.upstream_status = answer.status if isinstance(answer, UpstreamAnswer) else 200
        if isinstance(answer, UpstreamAnswer):
            ex.status, ex.error_type = answer.status, "upstream"
            return web.Response(status=answer.status, body=self._filter_error(answer.body, ex), headers=down)
        down["content-type"] = "application/json"
        body = json.dumps(scoped_page(visible(list(answer.entries), client.scopes), want)).encode()
        ex.status = 200
        return web.Response(status=200, body=body, headers=down)

    async def _read_catalogue(
        self, path: str, base: tuple[tuple[str, str], ...], headers: dict[str, str], client: Client
    ) -> Catalogue | UpstreamAnswer:
        """Upstream's whole catalogue for one selection: at most MAX_UPSTREAM_PAGES pages, each past
        the first counted against the rpm of the key whose call made the read."""
        assert self._session is not None
        headers = {**headers, "x-api-key": self._upstream_key}
        entries: list[dict[str, Any]] = []
        down: tuple[tuple[str, str], ...] | None = None
        request_id: str | None = None
        after: str | None = None
        for n in range(MAX_UPSTREAM_PAGES):
            if n:
                # Each upstream page past the first counts against the key's rpm (the
                # call was admitted; the pages it costs make the key's next request wait).
                await self.admission.count_request(client)
            query = [*base, ("limit", str(UPSTREAM_PAGE))] + ([("after_id", after)] if after is not None else [])
            url = yarl.URL(self._base + path + "?" + urlencode(query), encoded=True)
            try:
                async with self.slots.slot(client.name, self.config.upstream.connect_timeout), self._session.get(
                    url, headers=headers, allow_redirects=False
                ) as upstream:
                    if down is None:
                        request_id = upstream.headers.get("request-id")
                        down = tuple(response_headers(upstream.headers, _DROP_DOWN, {}).items())
                    data = await self._read_whole(upstream)
                    status = upstream.status
            except (TimeoutError, aiohttp.ServerTimeoutError):
                self.metrics.upstream_errors += 1
                raise GatewayError("timeout_error", "The upstream API did not answer in time") from None
            except aiohttp.ClientError:
                self.metrics.upstream_errors += 1
                raise GatewayError("api_error", "The gateway could not reach the upstream API") from None
            if status >= 400:
                return UpstreamAnswer(status, data, down, request_id)
            try:
                doc = json.loads(data)
            except ValueError:
                doc = None
            page = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(doc, dict) or not isinstance(page, list):
                self.metrics.upstream_errors += 1
                raise GatewayError("api_error", "The upstream API answered the model list in an unknown shape")
            entries.extend(entry for entry in page if isinstance(entry, dict))
            last = doc.get("last_id")
            if doc.get("has_more") is not True or not isinstance(last, str) or not page:
                break
            after = last
        assert down is not None
        return Catalogue(tuple(entries), down, request_id)

    async def _read_upload(self, request: web.Request, ex: Exchange) -> tuple[bytes, str]:
        """Read, filter and rebuild a file upload: (body, Content-Type) to send upstream."""
        upload = await read_upload(request, self.config.max_upload_bytes)
        client = ex.client.name if ex.client is not None else ""

        async def apply(doc: dict[str, Any], size: int) -> FilterResult:
            return await self.offload.apply_policy(doc, size, client)  # the caller's overrides apply

        async def expand(data: bytes) -> tuple[Contents, FilterResult | None]:
            return await self.offload.inside(data, client)

        result = await filter_upload(apply, upload, expand)
        ex.verdicts.extend(result.verdicts)
        if result.blocked is not None:
            self.metrics.filter_blocks += 1
            kind = "permission_error" if result.status == 403 else "invalid_request_error"
            raise GatewayError(kind, f"The file was blocked by the gateway's filter rule {result.blocked.rule!r}")
        # What each later reference will reserve (filetokens.py); off the loop: a PDF may be inflated.
        ex.file_tokens = await asyncio.to_thread(file_tokens, upload.data, upload.content_type, upload.pdf_pages)
        return await upstream_body(upload)


class _ClientGone(Exception):
    """The client's connection broke while the gateway read its request body."""


async def _prepared(response: web.StreamResponse, request: web.Request, ex: Exchange) -> bool:
    """Send the status line and headers; False when the client left just before (an audited
    client disconnect, not a 500 with a traceback). aiohttp's own finishing of the unprepared
    response meets the same closed transport and ends quietly."""
    try:
        await response.prepare(request)
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        ex.error_type = "client_closed"
        return False
    if request.transport is not None:
        # A client that does not read holds its response here: at most this much unsent
        # (then aiohttp's writer waits for it, every 64 KiB written).
        request.transport.set_write_buffer_limits(high=_WRITE_HIGH)
    return True
