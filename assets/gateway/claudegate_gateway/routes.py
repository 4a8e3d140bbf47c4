"""The route table: the only Anthropic API operations the gateway serves.

Default deny. A request is served only if its method and its path, taken
byte for byte as the client sent it (never a decoded form), match one row of
:data:`OPERATIONS`; anything else is a 404 from the gateway and never reaches
upstream. The URL sent upstream is rebuilt from the matched row, its
validated path parameters and its validated, re-encoded query parameters, so
the path the scopes saw is exactly the path upstream serves.

This module imports no aiohttp (standard library only), so the installer can
read :data:`TEMPLATES` to validate ``clients[].endpoints`` in deploy.yaml.

Canonical form, checked on the raw path: ``/v1`` followed by one or more
segments of ``[A-Za-z0-9_-]``. That refuses, without a special case each:
percent-encoding (any ``%``), empty segments (``//``) and a trailing slash,
``.`` and ``..``, ``;`` parameters, backslashes, spaces and any non-ASCII
byte. Literal segments compare case-sensitively, so ``/v1/Messages`` is
unknown; path parameters must match :data:`ID_RE` and be at most
:data:`MAX_ID_LEN` characters.

Adding an operation is one row. The fields of :class:`Operation`:

``name``
    Stable operation name (``messages.create``), used in metrics and audit.
``method``, ``template``
    The HTTP method and the path template; ``{name}`` marks a path
    parameter (an id). Endpoint scopes are globs checked against the
    template (``/v1/messages/batches/{batch_id}``), never against the
    client's path.
``query``
    The allowlist of query parameters (:class:`QueryParam`): anything not
    listed, a repeated parameter that may not repeat, or a value that fails
    its check is a 400.
``body``
    What the request body may be: ``none`` (a non-empty body is a 400),
    ``json`` or ``multipart``.
``inspect``
    How the body is read before forwarding: ``message`` (model scope,
    max_tokens cap, stream permission, filters, token reservation),
    ``count_tokens`` (the same checks; reserves its input, referenced files
    included, and is settled to nothing, as upstream bills nothing), ``batch`` (each
    request of the batch as ``message``), ``none``.
``meter``
    How usage is charged: ``message`` (from the response's ``usage`` or the
    stream's ``message_start``/``message_delta``), ``batch`` (the
    reservation, charged at creation and settled from the results when the
    batch ends, see batchsettle.py), ``none`` (rate only).
``stream_through``
    True when the response needs no inspection and is relayed chunk by
    chunk instead of being read whole (file downloads, batch results,
    listings): a 400 MB download does not grow the gateway's memory.
``filter_response``
    True when the response carries model output that response filters
    should see.
``local``
    True for the gateway's own diagnostic operation (``/v1/claudegate/pace``):
    answered by the gateway, never forwarded, costs no tokens.
``explicit_scope``
    True when a glob never grants the operation: the client's endpoint
    scopes must list the template itself (``/v1/*`` does not include it).
``owner_kind``, ``owner_action``
    Ownership of objects that live in the shared upstream organisation:
    ``owner_kind`` is ``batch`` or ``file`` (None: no owned object), and
    ``owner_action`` says what the operation does with one: ``create``
    (record the new id as the caller's), ``list`` (keep only the caller's
    objects), ``access`` (the id in the path must be the caller's, else a
    404 as if it did not exist).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import parse_qsl, urlencode

API_PREFIX = "/v1"
ID_RE = re.compile(r"[A-Za-z0-9_-]+")
MAX_ID_LEN = 128
# The whole raw path in its only accepted form; see the module docstring.
_CANONICAL = re.compile(r"/v1(?:/[A-Za-z0-9_-]+)+")
MAX_PATH_LEN = 512
MAX_QUERY_LEN = 2048
_MAX_QUERY_FIELDS = 32

#: The gateway's own paced diagnostic stream (see the row in OPERATIONS).
PACE_TEMPLATE = "/v1/claudegate/pace"
PACE_EVENTS = 6
PACE_INTERVAL = 0.1  # seconds between two events

BodyKind = Literal["none", "json", "multipart"]
InspectKind = Literal["message", "count_tokens", "batch", "none"]
MeterKind = Literal["message", "batch", "none"]
OwnerKind = Literal["batch", "file"]
OwnerAction = Literal["create", "list", "access"]


class RouteError(Exception):
    """A request that matches no operation, or whose parameters are invalid.

    ``error_type`` is the Anthropic error type to answer with
    (``not_found_error`` or ``invalid_request_error``).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _is_id(value: str) -> bool:
    return len(value) <= MAX_ID_LEN and ID_RE.fullmatch(value) is not None


# A list cursor may be one the gateway sealed (see cursors.py): an id of up
# to MAX_ID_LEN plus nonce and tag, base64url, fits in this.
MAX_CURSOR_LEN = 256


def _is_cursor(value: str) -> bool:
    return len(value) <= MAX_CURSOR_LEN and ID_RE.fullmatch(value) is not None


def _is_true(value: str) -> bool:
    return value == "true"


def _int_between(lo: int, hi: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        # isdigit() alone accepts Unicode digits; the ASCII check keeps "１０" out.
        return value.isascii() and value.isdigit() and len(value) <= 6 and lo <= int(value) <= hi

    return check


def _one_of(*choices: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return value in choices

    return check


@dataclass(frozen=True)
class QueryParam:
    """One allowed query parameter: its name, a check of its value, and
    whether it may be given more than once (``lifecycle[]=a&lifecycle[]=b``)."""

    name: str
    check: Callable[[str], bool]
    expect: str  # said in the 400 when the check fails
    repeat: bool = False


# The SDKs' beta namespaces add ?beta=true to every beta call; it selects
# nothing the scopes care about, and its only accepted value is "true".
BETA = QueryParam("beta", _is_true, "true")
LIMIT = QueryParam("limit", _int_between(1, 1000), "a whole number from 1 to 1000")
BEFORE_ID = QueryParam("before_id", _is_cursor, f"an id of [A-Za-z0-9_-], at most {MAX_CURSOR_LEN} characters")
AFTER_ID = QueryParam("after_id", _is_cursor, f"an id of [A-Za-z0-9_-], at most {MAX_CURSOR_LEN} characters")
PAGE = QueryParam("page", _is_cursor, f"a page cursor of [A-Za-z0-9_-], at most {MAX_CURSOR_LEN} characters")
LIFECYCLE = QueryParam(
    "lifecycle[]", _one_of("active", "deprecated", "retired"), "active, deprecated or retired", repeat=True
)
PAGING = (BETA, LIMIT, BEFORE_ID, AFTER_ID)


@dataclass(frozen=True)
class Operation:
    """One row of the route table; the fields are described in the module docstring."""

    name: str
    method: str
    template: str
    query: tuple[QueryParam, ...] = (BETA,)
    body: BodyKind = "none"
    inspect: InspectKind = "none"
    meter: MeterKind = "none"
    stream_through: bool = False
    filter_response: bool = False
    owner_kind: OwnerKind | None = None
    owner_action: OwnerAction | None = None
    local: bool = False
    explicit_scope: bool = False
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.template.split("/")[1:]))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(s[1:-1] for s in self.segments if s.startswith("{"))


OPERATIONS: tuple[Operation, ...] = (
    Operation("messages.create", "POST", "/v1/messages", body="json", inspect="message", meter="message",
              filter_response=True),
    Operation("messages.count_tokens", "POST", "/v1/messages/count_tokens", body="json", inspect="count_tokens"),
    Operation("models.list", "GET", "/v1/models", query=(*PAGING, LIFECYCLE), stream_through=True),
    Operation("models.get", "GET", "/v1/models/{model_id}", stream_through=True),
    Operation("batches.create", "POST", "/v1/messages/batches", body="json", inspect="batch", meter="batch",
              owner_kind="batch", owner_action="create"),
    Operation("batches.list", "GET", "/v1/messages/batches", query=PAGING,
              owner_kind="batch", owner_action="list"),
    Operation("batches.get", "GET", "/v1/messages/batches/{batch_id}", owner_kind="batch", owner_action="access"),
    Operation("batches.results", "GET", "/v1/messages/batches/{batch_id}/results", stream_through=True,
              filter_response=True, owner_kind="batch", owner_action="access"),
    Operation("batches.cancel", "POST", "/v1/messages/batches/{batch_id}/cancel",
              owner_kind="batch", owner_action="access"),
    Operation("batches.delete", "DELETE", "/v1/messages/batches/{batch_id}",
              owner_kind="batch", owner_action="access"),
    Operation("files.upload", "POST", "/v1/files", body="multipart", owner_kind="file", owner_action="create"),
    Operation("files.list", "GET", "/v1/files", query=(*PAGING, PAGE), owner_kind="file", owner_action="list"),
    Operation("files.get", "GET", "/v1/files/{file_id}", owner_kind="file", owner_action="access"),
    Operation("files.content", "GET", "/v1/files/{file_id}/content", stream_through=True,
              filter_response=True, owner_kind="file", owner_action="access"),
    Operation("files.delete", "DELETE", "/v1/files/{file_id}", owner_kind="file", owner_action="access"),
    # A stream the gateway makes at a known pace: the smoke test and the audit
    # prove from it that nothing between client and gateway buffers events,
    # whatever the upstream's own pace. Only for clients that list it.
    Operation("claudegate.pace", "GET", PACE_TEMPLATE, query=(), stream_through=True, local=True,
              explicit_scope=True),
)  # fmt: skip

# The distinct path templates, for scope validation here and in the installer.
TEMPLATES: tuple[str, ...] = tuple(dict.fromkeys(op.template for op in OPERATIONS))
# Rows by number of path segments: a request is compared with a handful of rows, not all.
_BY_LENGTH: dict[int, tuple[Operation, ...]] = {
    n: tuple(op for op in OPERATIONS if len(op.segments) == n) for n in {len(op.segments) for op in OPERATIONS}
}


@dataclass(frozen=True)
class Match:
    """A request matched to an operation, with its validated parameters."""

    op: Operation
    params: dict[str, str]
    query: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The canonical path: the template filled with the validated ids."""
        return self.op.template.format(**self.params)

    @property
    def target(self) -> str:
        """Path and re-encoded query, to append to the upstream base URL."""
        if not self.query:
            return self.path
        return self.path + "?" + urlencode(self.query)


def _show(raw: str) -> str:
    # Error text quotes at most a little of what the client sent.
    return repr(raw[:80] + ("..." if len(raw) > 80 else ""))


def match(method: str, raw_path: str, raw_query: str = "") -> Match:
    """The operation for a request, from its RAW (undecoded) path and query.

    Raises :class:`RouteError`: ``not_found_error`` for a path or method the
    table does not serve, ``invalid_request_error`` for a bad query.
    """
    if len(raw_path) > MAX_PATH_LEN or _CANONICAL.fullmatch(raw_path) is None:
        raise RouteError("not_found_error", f"Not found: {_show(raw_path)} is not an API path this gateway serves")
    segments = raw_path.split("/")[1:]
    found: Operation | None = None
    params: dict[str, str] = {}
    for op in _BY_LENGTH.get(len(segments), ()):
        got = _match_segments(op.segments, segments)
        if got is None:
            continue
        if op.method == method:
            found, params = op, got
            break
    if found is None:
        raise RouteError("not_found_error", f"Not found: {method} {_show(raw_path)} is not an operation this gateway serves")
    return Match(found, params, parse_query(found, raw_query))


def _match_segments(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{"):
            if len(got) > MAX_ID_LEN:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def parse_query(op: Operation, raw_query: str) -> tuple[tuple[str, str], ...]:
    """Validate a raw query string against the row's allowlist; the result is re-encoded upstream."""
    if not raw_query:
        return ()
    if len(raw_query) > MAX_QUERY_LEN:
        raise RouteError("invalid_request_error", f"The query string is longer than {MAX_QUERY_LEN} characters")
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, strict_parsing=True,
                          max_num_fields=_MAX_QUERY_FIELDS, errors="strict")  # fmt: skip
    except (ValueError, UnicodeDecodeError):
        raise RouteError("invalid_request_error", f"The query string {_show(raw_query)} is malformed") from None
    allowed = {p.name: p for p in op.query}
    seen: set[str] = set()
    for name, value in pairs:
        spec = allowed.get(name)
        if spec is None:
            known = ", ".join(sorted(allowed)) or "none"
            raise RouteError(
                "invalid_request_error",
                f"{_show(name)}: unknown query parameter for {op.method} {op.template}; allowed: {known}",
            )
        if name in seen and not spec.repeat:
            raise RouteError("invalid_request_error", f"{name}: given more than once; give it once")
        seen.add(name)
        if not spec.check(value):
            raise RouteError("invalid_request_error", f"{name}: {_show(value)} is not {spec.expect}")
    return tuple(pairs)


def glob_operations(glob: str) -> list[Operation]:
    """The operations an endpoint-scope glob allows (matched against templates)."""
    return [op for op in OPERATIONS if fnmatchcase(op.template, glob)]


def unknown_endpoint_globs(globs: list[str] | tuple[str, ...]) -> list[str]:
    """The globs that match no operation: each is a config mistake."""
    return [g for g in globs if not glob_operations(g)]


def endpoint_glob_problem(glob: str) -> str | None:
    """Why an endpoint-scope glob is wrong (one sentence naming the known templates), or None."""
    if glob_operations(glob):
        return None
    return f"{glob!r} matches no operation the gateway serves; known: {', '.join(TEMPLATES)}"
