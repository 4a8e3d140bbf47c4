"""A faithful, in-memory fake of the Anthropic API, for tests and benchmarks.

It is the project's only fake upstream: the gateway tests, the nginx tests, the
end-to-end deploy tests and the benchmarks all talk to it, and the official
``anthropic`` SDK must work against it exactly as against the real API.

In-process (a background thread with its own event loop)::

    with FakeAnthropic() as fake:
        client = anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)
        client.messages.create(model="claude-haiku-4-5", max_tokens=64,
                               messages=[{"role": "user", "content": "reply with 3 words"}])
        fake.state.fail(status=529)               # next API request gets a 529
        fake.state.requests[-1].headers["authorization"]

Out of process (prints ``listening on http://HOST:PORT`` once bound)::

    python -m tests.support.fake_anthropic --listen 127.0.0.1:0 [--api-key K ...]
        [--latency S] [--event-delay S] [--reply-words N] [--access-log]
    python tests/support/fake_anthropic.py ...      # same thing

and drive it over HTTP with ``FakeControl(url)`` or the ``/_fake/`` endpoints:

    GET    /_fake/requests   recorded API requests (``?path=``, ``?limit=``)
    DELETE /_fake/requests   forget recorded requests
    POST   /_fake/reset      requests, failures, batches, files, rate counters and config back to start
    POST   /_fake/fail       {"status": 529, "type": "overloaded_error", "message": "...", "count": 1}
                             {"mid_stream_after": N, "type": "overloaded_error"}   (SSE ``event: error``)
                             {"hang": true [, "seconds": S] [, "mid_stream_after": N]}
                             {"disconnect": true [, "mid_stream_after": N]}        (drop the TCP connection)
                             optional on every kind: "count" (-1 = until reset), "path" (exact request path),
                             "body_contains" (only requests whose body holds this text: a slow key's requests)
    GET    /_fake/config     current knobs;  POST /_fake/config  {"latency": S, "event_delay": S, ...}
    GET    /_fake/billed     what the fake billed: [{"path", "input_tokens", "output_tokens", "params", "at"}]
    GET    /_fake/health     {"ok": true}

Deterministic behaviour (see ``plan_reply`` and ``estimate_input_tokens``):

* the reply text is a fixed word sequence seeded by the last user text; one word is
  one output token; default length ``FakeState.default_reply_words`` (10); the user
  text ``reply with N words`` asks for N words; ``max_tokens`` truncates (stop_reason
  ``max_tokens``), ``stop_sequences`` cut the text (stop_reason ``stop_sequence``);
* input tokens are ``ceil(chars / 4)`` over system, message text, tool inputs and
  results and the JSON of tool definitions, plus a fixed 1000 per inline (base64)
  image or PDF; content referenced by ``file_id`` is billed as real Anthropic bills
  it (a text file ``ceil(chars / 4)``, a PDF ``PDF_PAGE_TOKENS`` per page, an image
  ``(w*h)/750`` after the 1568 px / 1.15 MP downscale), a URL source
  ``FakeState.url_source_tokens``; the same number is used by messages,
  count_tokens, usage and batches;
* what the fake *bills* is kept in ``FakeState.billed`` (one :class:`Billed` per
  message it generated, streamed or not, finished or cut off, and per succeeded
  batch request when the batch ends; count_tokens bills nothing), so tests can
  compare what a gateway charged with what upstream would have invoiced;
* with ``tools`` and a ``tool_choice`` of ``any``/``tool`` (or the last user text
  containing ``use the tool``) the reply is a ``tool_use`` block whose input holds
  the required properties of the tool's ``input_schema`` with placeholder values;
* ``thinking`` of type ``enabled``/``adaptive`` adds a short thinking block first;
* a *script* (``FakeState.script``, ``POST /_fake/config {"script": [...]}``) replaces
  the planned content with exactly the given blocks, streamed as exactly the given
  deltas: ``{"type": "text", "deltas": ["he", "llo"]}``, ``{"type": "thinking",
  "deltas": [...]}`` or ``{"type": "tool_use", "name": "t", "deltas": ["{\"a", "\": 1}"]}``
  (``partial_json`` pieces; their concatenation must be a JSON object). One delta is one
  output token. A server tool result (``{"type": "web_search_tool_result", "tool_use_id":
  ..., "content": ...}``, web fetch, code/bash/text editor execution) is sent whole in
  its ``content_block_start``, as the real API does. A code or bash execution result
  whose outputs (``content.content``) list ``{"type": "code_execution_output",
  "filename": ..., "file_content": ...}`` makes that file, as code execution does:
  the fake stores it in its Files API (downloadable) under a new id and the block
  carries ``{"type": ..., "file_id": <new id>}``; an output that gives a ``file_id``
  itself is sent as given. Until reset, every messages request gets the script.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import io
import json
import math
import mimetypes
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Self

from aiohttp import web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODELS",
    "ERROR_STATUS",
    "AsyncFakeAnthropic",
    "Billed",
    "Failure",
    "FakeAnthropic",
    "FakeControl",
    "FakeProcess",
    "FakeState",
    "ModelSpec",
    "RecordedRequest",
    "Reply",
    "estimate_input_tokens",
    "main",
    "make_app",
    "parse_failure",
    "plan_reply",
    "spawn_fake",
]

DEFAULT_API_KEY: Final = "sk-ant-api03-fake-upstream-key"
ORGANIZATION_ID: Final = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

# Anthropic's error types and the status code each one comes with.
ERROR_STATUS: Final[dict[str, int]] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STATUS_TYPE: Final[dict[int, str]] = {status: kind for kind, status in ERROR_STATUS.items()}
_DEFAULT_MESSAGES: Final[dict[str, str]] = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}

# Body size limits of the real API, per endpoint family.
MESSAGES_MAX_BYTES: Final = 32 * 1024 * 1024
BATCHES_MAX_BYTES: Final = 256 * 1024 * 1024
FILES_MAX_BYTES: Final = 500 * 1024 * 1024

IMAGE_TOKENS: Final = 1000  # fixed input-token cost of one inline image / binary document
PDF_PAGE_TOKENS: Final = 3000  # a page's text and its image, as billed for a PDF file
IMAGE_MAX_TOKENS: Final = 1600  # the most one image costs after the API's downscale
_PDF_PAGE_RE: Final = re.compile(rb"/Type\s*/Page(?![A-Za-z0-9])")
THINKING_WORDS: Final = 8
TOOL_JSON_CHUNK: Final = 16  # characters per input_json_delta

_VERSION_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REPLY_RE: Final = re.compile(r"reply with (\d+) (?:words?|tokens?)", re.IGNORECASE)
_TOOL_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_CUSTOM_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_WORD_PIECE_RE: Final = re.compile(r"\s*\S+")
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_WORDS: Final = (
    "amber", "beacon", "canyon", "delta", "ember", "falcon", "garnet", "harbor",
    "island", "juniper", "kettle", "lantern", "meadow", "nectar", "orchid", "pebble",
    "quartz", "ripple", "saffron", "timber", "umbra", "velvet", "willow", "xenon",
    "yonder", "zephyr", "anchor", "bramble", "cobalt", "drift", "echo", "fable",
    "glacier", "hollow", "ivory", "jasper", "kindle", "lumen", "mosaic", "nimbus",
    "onyx", "prism", "quill", "raven", "summit", "tundra", "unity", "vista",
    "wander", "yarrow", "zenith", "arbor", "breeze", "cinder", "dune", "fern",
    "grove", "haven", "inlet", "jade", "knoll", "lagoon", "marble", "north",
)  # fmt: skip


# ---------------------------------------------------------------------------
# models


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One entry of the fake's model catalogue (``GET /v1/models``)."""

    id: str
    display_name: str
    created_at: str  # RFC 3339
    aliases: tuple[str, ...] = ()
    max_tokens: int = 64_000
    max_input_tokens: int = 200_000
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    line: str | None = None
    deprecated_at: str | None = None
    retires_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "lifecycle": self.lifecycle,
            "line": self.line,
            "deprecated_at": self.deprecated_at,
            "retires_at": self.retires_at,
            "max_input_tokens": self.max_input_tokens,
            "max_tokens": self.max_tokens,
        }


# Newest first, as the real API lists them. Aliases resolve to the dated id.
DEFAULT_MODELS: Final[tuple[ModelSpec, ...]] = (
    ModelSpec("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", line="sonnet"),
    ModelSpec("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", max_tokens=128_000, line="opus"),
    ModelSpec(
        "claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", ("claude-opus-4-5",),
        lifecycle="deprecated", line="opus", deprecated_at="2026-04-22T00:00:00Z", retires_at="2027-01-22T00:00:00Z",
    ),
    ModelSpec("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", ("claude-haiku-4-5",), line="haiku"),
    ModelSpec(
        "claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", ("claude-sonnet-4-5",),
        lifecycle="deprecated", line="sonnet", deprecated_at="2026-05-30T00:00:00Z", retires_at="2026-11-30T00:00:00Z",
    ),
    ModelSpec("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z", ("claude-opus-4-1",),
              max_tokens=32_000, line="opus"),
    ModelSpec("claude-opus-4-20250514", "Claude Opus 4", "2025-05-22T00:00:00Z", ("claude-opus-4-0",),
              max_tokens=32_000, line="opus"),
    ModelSpec("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z", ("claude-sonnet-4-0",),
              line="sonnet"),
)  # fmt: skip


# ---------------------------------------------------------------------------
# helpers


def _new_id(prefix: str, length: int = 22) -> str:
    return prefix + "".join(random.choices(_BASE62, k=length))


def new_request_id() -> str:
    return _new_id("req_011C", 20)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def _dumps(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode()


def error_payload(kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    """Anthropic's error body: ``{"type":"error","error":{...},"request_id":...}``."""
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


class ApiError(Exception):
    """Raised inside handlers; the middleware turns it into Anthropic's error response."""

    def __init__(
        self, status: int, kind: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


# ---------------------------------------------------------------------------
# state


@dataclass(slots=True)
class RecordedRequest:
    """One API request as the fake received it (control endpoints are not recorded)."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # parsed body, or None when not JSON
    time: float  # time.time() when received
    raw_path: str = ""  # the path exactly as sent (``path`` is percent-decoded)
    raw_query: str = ""  # the query string exactly as sent

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query_string": self.query_string,
            "headers": self.headers,
            "body": self.text,
            "json": self.json,
            "time": self.time,
            "raw_path": self.raw_path,
            "raw_query": self.raw_query,
        }


FailureKind = Literal["status", "mid_stream", "hang", "disconnect"]


@dataclass(slots=True)
class Failure:
    """An injected failure, consumed by the next ``count`` matching API requests.

    * ``status``: answer with an Anthropic error (``status``/``error_type``/``message``).
    * ``mid_stream``: a streaming message request gets ``event: error`` after ``after_events`` events.
    * ``hang``: stall ``seconds`` (None: forever) before answering, or after ``after_events``
      events of a stream when ``after_events`` is set; then carry on normally.
    * ``disconnect``: close the connection without an answer, or after ``after_events``
      events of a stream when ``after_events`` is set.

    ``count`` < 0 means "until reset"; ``path`` restricts it to one exact request path;
    ``body_contains`` to requests whose raw body contains that text (e.g. a marker
    in one client's prompts, to make only that client's requests slow).
    """

    kind: FailureKind = "status"
    status: int = 529
    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    count: int = 1
    path: str | None = None
    after_events: int | None = None
    seconds: float | None = None
    retry_after: float | None = None
    body_contains: str | None = None

    @property
    def streaming_only(self) -> bool:
        return self.kind == "mid_stream" or (
            self.kind in ("hang", "disconnect") and self.after_events is not None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "type": self.error_type,
            "message": self.message,
            "count": self.count,
            "path": self.path,
            "mid_stream_after": self.after_events,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "body_contains": self.body_contains,
        }


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def parse_failure(spec: Mapping[str, Any]) -> Failure:
    """Build a :class:`Failure` from the JSON accepted by ``POST /_fake/fail``."""
    if not isinstance(spec, Mapping):
        raise ValueError("failure spec must be a JSON object")
    count = _int(spec.get("count", 1), "count")
    if count == 0:
        raise ValueError("count must be non-zero (-1 = until reset)")
    path = spec.get("path")
    if path is not None and not isinstance(path, str):
        raise ValueError("path must be a string")
    body_contains = spec.get("body_contains")
    if body_contains is not None and (not isinstance(body_contains, str) or not body_contains):
        raise ValueError("body_contains must be a non-empty string")
    failure = _parse_kind(spec, count, path)
    failure.body_contains = body_contains
    return failure


def _parse_kind(spec: Mapping[str, Any], count: int, path: str | None) -> Failure:
    after = spec.get("mid_stream_after")
    if after is not None:
        after = _int(after, "mid_stream_after", minimum=0)
    seconds = spec.get("seconds")
    if seconds is not None:
        seconds = _number(seconds, "seconds")
    kind_name = spec.get("type")
    if kind_name is not None and kind_name not in ERROR_STATUS:
        raise ValueError(f"unknown error type {kind_name!r}; one of {sorted(ERROR_STATUS)}")
    status = spec.get("status")
    if status is not None:
        status = _int(status, "status", minimum=400)
        if status > 599:
            raise ValueError("status must be a 4xx or 5xx code")
    if spec.get("disconnect"):
        return Failure(kind="disconnect", count=count, path=path, after_events=after)
    if spec.get("hang"):
        return Failure(kind="hang", count=count, path=path, after_events=after, seconds=seconds)
    if after is not None:
        kind_name = kind_name or (_STATUS_TYPE.get(status) if status else None) or "overloaded_error"
        message = spec.get("message") or _DEFAULT_MESSAGES[kind_name]
        return Failure(
            kind="mid_stream",
            status=ERROR_STATUS[kind_name],
            error_type=kind_name,
            message=str(message),
            count=count,
            path=path,
            after_events=after,
        )
    if status is None:
        status = ERROR_STATUS[kind_name] if kind_name else 529
    kind_name = (
        kind_name or _STATUS_TYPE.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    )
    message = spec.get("message") or _DEFAULT_MESSAGES[kind_name]
    retry_after = spec.get("retry_after")
    if retry_after is not None:
        retry_after = _number(retry_after, "retry_after")
    elif status == 429:
        retry_after = 1.0
    return Failure(
        kind="status",
        status=status,
        error_type=kind_name,
        message=str(message),
        count=count,
        path=path,
        retry_after=retry_after,
    )


@dataclass(slots=True)
class Billed:
    """One generation the fake billed: its path, tokens, and the request params it answered."""

    path: str
    input_tokens: int
    output_tokens: int
    params: Any
    at: float = field(default_factory=time.time)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class _Batch:
    id: str
    created: float
    requests: list[dict[str, Any]]
    processing_seconds: float
    status: Literal["in_progress", "canceling", "ended"] = "in_progress"
    cancel_initiated: float | None = None
    ended: float | None = None
    results: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class _File:
    id: str
    filename: str
    mime_type: str
    data: bytes
    created: float
    expires: float | None
    downloadable: bool
    # A test's hold on downloads of it: the first ``stall_after`` bytes are sent, the rest once
    # ``resume`` is set (in process only; a download that sees neither sends it whole).
    stall_after: int | None = None
    resume: threading.Event | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "file",
            "id": self.id,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.data),
            "created_at": _iso(self.created),
            "expires_at": _iso(self.expires) if self.expires is not None else None,
            "downloadable": self.downloadable,
        }


_CONFIG_FIELDS: Final = (
    "latency",
    "event_delay",
    "default_reply_words",
    "batch_processing_seconds",
    "files_downloadable",
    "record_requests",
    "max_recorded",
    "public_base_url",
    "max_message_bytes",
    "script",
    "url_source_tokens",
)


@dataclass(eq=False)
class FakeState:
    """Everything the fake knows; safe to poke from the test thread while it serves."""

    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    latency: float = 0.0  # seconds before the first byte of every API response
    event_delay: float = 0.0  # seconds between two SSE events
    failures: list[Failure] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    record_requests: bool = True
    max_recorded: int = 10_000  # keep (about) the last N requests
    default_reply_words: int = 10
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    batch_processing_seconds: float = 0.0  # a batch ends this long after creation
    files_downloadable: bool = True  # the real API only allows downloading files made by tools
    public_base_url: str | None = None  # base of batch results_url; default: the request's own origin
    max_message_bytes: int = MESSAGES_MAX_BYTES
    script: list[dict[str, Any]] | None = None  # scripted content blocks and deltas (see plan_reply)
    ratelimit_requests: int = 4_000
    ratelimit_input_tokens: int = 2_000_000
    ratelimit_output_tokens: int = 400_000
    url_source_tokens: int = 5_000  # what fetching one URL source bills (the fake fetches nothing)
    batches: dict[str, _Batch] = field(default_factory=dict, repr=False)
    files: dict[str, _File] = field(default_factory=dict, repr=False)
    # Code execution containers made so far (one upstream workspace: any request may name any of them).
    containers: set[str] = field(default_factory=set, repr=False)
    billed: list[Billed] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._initial: dict[str, Any] = {name: getattr(self, name) for name in _CONFIG_FIELDS}
        self._initial_keys = set(self.api_keys)
        self._initial_models = self.models
        self._model_index: dict[str, ModelSpec] = {}
        self._indexed_models: tuple[ModelSpec, ...] | None = None
        self._rl_window = -1
        self._rl_reset = ""
        self._rl_requests = 0
        self._rl_input = 0
        self._rl_output = 0

    # -- failures ---------------------------------------------------------

    def add_failure(self, spec: Mapping[str, Any] | Failure) -> Failure:
        failure = spec if isinstance(spec, Failure) else parse_failure(spec)
        with self._lock:
            self.failures.append(failure)
        return failure

    def fail(
        self,
        status: int | None = None,
        type: str | None = None,
        message: str | None = None,
        *,
        count: int = 1,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> Failure:
        """The next ``count`` API requests get an Anthropic error (default 529 overloaded_error)."""
        spec: dict[str, Any] = {
            "status": status,
            "type": type,
            "message": message,
            "count": count,
            "path": path,
        }
        if retry_after is not None:
            spec["retry_after"] = retry_after
        return self.add_failure(spec)

    def fail_mid_stream(
        self, after: int, type: str = "overloaded_error", message: str | None = None, *, count: int = 1
    ) -> Failure:
        """The next streaming message request gets ``event: error`` after ``after`` events."""
        return self.add_failure({"mid_stream_after": after, "type": type, "message": message, "count": count})

    def hang(
        self,
        *,
        seconds: float | None = None,
        mid_stream_after: int | None = None,
        count: int = 1,
        path: str | None = None,
        body_contains: str | None = None,
    ) -> Failure:
        """Stall the next request (forever unless ``seconds``), before answering or mid-stream."""
        spec: dict[str, Any] = {
            "hang": True, "count": count, "path": path, "seconds": seconds, "body_contains": body_contains,
        }
        if mid_stream_after is not None:
            spec["mid_stream_after"] = mid_stream_after
        return self.add_failure(spec)

    def disconnect_mid_stream(self, after: int, *, count: int = 1) -> Failure:
        """Drop the TCP connection of the next stream after ``after`` events."""
        return self.add_failure({"disconnect": True, "mid_stream_after": after, "count": count})

    def disconnect(self, *, count: int = 1, path: str | None = None) -> Failure:
        """Drop the TCP connection of the next request without answering."""
        return self.add_failure({"disconnect": True, "count": count, "path": path})

    def take_failure(self, path: str, streaming: bool, body: bytes = b"") -> Failure | None:
        if not self.failures:
            return None
        with self._lock:
            for i, failure in enumerate(self.failures):
                if failure.path is not None and failure.path != path:
                    continue
                if failure.streaming_only and not streaming:
                    continue
                if failure.body_contains is not None and failure.body_contains.encode() not in body:
                    continue
                if failure.count > 0:
                    failure.count -= 1
                    if failure.count == 0:
                        del self.failures[i]
                return failure
        return None

    # -- config / reset -----------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change knobs (``latency``, ``event_delay``, ``api_keys``, ...); returns the config."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("latency", "event_delay", "batch_processing_seconds"):
                checked[name] = _number(value, name)
            elif name in ("default_reply_words", "max_recorded", "max_message_bytes", "url_source_tokens"):
                checked[name] = _int(value, name, minimum=0)
            elif name in ("files_downloadable", "record_requests"):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be a boolean")
                checked[name] = value
            elif name == "public_base_url":
                if value is not None and not isinstance(value, str):
                    raise ValueError("public_base_url must be a string or null")
                checked[name] = value.rstrip("/") if value else None
            elif name == "script":
                checked[name] = None if value is None else _check_script(value)
            elif name == "api_keys":
                if isinstance(value, str) or not all(isinstance(k, str) and k for k in value):
                    raise ValueError("api_keys must be a list of non-empty strings")
                checked[name] = set(value)
            else:
                raise ValueError(f"unknown config field {name!r}")
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)
        return self.config()

    def config(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _CONFIG_FIELDS}
        out["api_keys"] = sorted(self.api_keys)
        out["pending_failures"] = [f.to_json() for f in list(self.failures)]
        return out

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def reset(self) -> None:
        """Forget requests, failures, batches and files; restore the construction-time config."""
        with self._lock:
            self.requests.clear()
            self.failures.clear()
            self.batches.clear()
            self.files.clear()
            self.containers.clear()
            self.billed.clear()
            for name, value in self._initial.items():
                setattr(self, name, value)
            self.api_keys = set(self._initial_keys)
            self.models = self._initial_models
            self._rl_window = -1

    # -- requests -------------------------------------------------------

    def record(self, rec: RecordedRequest) -> None:
        if not self.record_requests:
            return
        requests = self.requests
        requests.append(rec)
        cap = self.max_recorded
        if len(requests) > cap + cap // 10 + 1:  # trim in bulk: amortised O(1) per request
            with self._lock:
                del requests[: len(requests) - cap]

    def requests_for(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path == path and (method is None or r.method == method)]

    def last_request(self, path: str | None = None) -> RecordedRequest | None:
        for rec in reversed(list(self.requests)):
            if path is None or rec.path == path:
                return rec
        return None

    # -- models -----------------------------------------------------------

    def resolve_model(self, name: str) -> ModelSpec | None:
        if self._indexed_models is not self.models:
            index: dict[str, ModelSpec] = {}
            for spec in self.models:
                index[spec.id] = spec
                for alias in spec.aliases:
                    index.setdefault(alias, spec)
            self._model_index, self._indexed_models = index, self.models
        return self._model_index.get(name)

    # -- rate limit headers -----------------------------------------------

    def ratelimit_headers(self, input_tokens: int = 0, output_tokens: int = 0) -> dict[str, str]:
        now = time.time()
        window = int(now // 60)
        if window != self._rl_window:
            self._rl_window = window
            self._rl_reset = _iso((window + 1) * 60.0).replace(".000000Z", "Z")
            self._rl_requests = self._rl_input = self._rl_output = 0
        self._rl_requests += 1
        self._rl_input += input_tokens
        self._rl_output += output_tokens
        req_left = max(0, self.ratelimit_requests - self._rl_requests)
        in_left = max(0, self.ratelimit_input_tokens - self._rl_input)
        out_left = max(0, self.ratelimit_output_tokens - self._rl_output)
        reset = self._rl_reset
        return {
            "anthropic-ratelimit-requests-limit": str(self.ratelimit_requests),
            "anthropic-ratelimit-requests-remaining": str(req_left),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(
                self.ratelimit_input_tokens + self.ratelimit_output_tokens
            ),
            "anthropic-ratelimit-tokens-remaining": str(in_left + out_left),
            "anthropic-ratelimit-tokens-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": str(self.ratelimit_input_tokens),
            "anthropic-ratelimit-input-tokens-remaining": str(in_left),
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-limit": str(self.ratelimit_output_tokens),
            "anthropic-ratelimit-output-tokens-remaining": str(out_left),
            "anthropic-ratelimit-output-tokens-reset": reset,
        }


# ---------------------------------------------------------------------------
# token estimate


def _block_cost(block: Any) -> tuple[int, int]:
    """(characters, fixed tokens) of one content block."""
    if isinstance(block, str):
        return len(block), 0
    if not isinstance(block, Mapping):
        return 0, 0
    kind = block.get("type")
    if kind == "text":
        return len(str(block.get("text", ""))), 0
    if kind in ("image", "document", "container_upload"):
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") in ("file", "url"):
            return 0, 0  # billed by referenced_input_tokens, which knows the files
        if kind == "container_upload":
            return 0, 0
    if kind == "image":
        return 0, IMAGE_TOKENS
    if kind == "document":
        chars = len(str(block.get("title") or "")) + len(str(block.get("context") or ""))
        if isinstance(source, Mapping) and source.get("type") == "text":
            return chars + len(str(source.get("data", ""))), 0
        if isinstance(source, Mapping) and source.get("type") == "content":
            c, extra = _content_cost(source.get("content"))
            return chars + c, extra
        return chars, IMAGE_TOKENS
    if kind == "tool_use":
        return len(str(block.get("name", ""))) + len(json.dumps(block.get("input", {}))), 0
    if kind == "tool_result":
        return _content_cost(block.get("content"))
    if kind == "thinking":
        return len(str(block.get("thinking", ""))), 0
    if kind == "redacted_thinking":
        return 0, 0
    return len(json.dumps(block)), 0


def _content_cost(content: Any) -> tuple[int, int]:
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), 0
    chars = extra = 0
    if isinstance(content, list):
        for block in content:
            c, e = _block_cost(block)
            chars += c
            extra += e
    return chars, extra


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Deterministic input-token estimate: ceil(chars/4) + 1000 per image/binary document (min 1)."""
    chars, extra = _content_cost(body.get("system"))
    for message in body.get("messages") or ():
        if isinstance(message, Mapping):
            c, e = _content_cost(message.get("content"))
            chars += c
            extra += e
    for tool in body.get("tools") or ():
        chars += len(json.dumps(tool, separators=(",", ":"), sort_keys=True))
    return max(1, -(-chars // 4) + extra)


def _image_dims(data: bytes) -> tuple[int, int] | None:
    # PNG and GIF headers (what the tests upload); other images bill the most an image can.
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return None


def _pdf_page_count(data: bytes) -> int:
    """The pages a PDF reader finds (its page tree: a page needs no /Type there), as Anthropic bills
    them, or the page objects in plain sight when that is more (the tests' hand-made PDFs have no tree)."""
    plain = len(_PDF_PAGE_RE.findall(data))
    try:
        import pypdf

        return max(plain, len(pypdf.PdfReader(io.BytesIO(data), strict=False).pages))
    except Exception:  # not readable as a whole, or no pypdf here
        return plain


def _file_input_tokens(stored: _File) -> int:
    """What one reference to an uploaded file bills, by what the file is."""
    data = stored.data
    if data.startswith(b"%PDF-"):
        return max(1, _pdf_page_count(data)) * PDF_PAGE_TOKENS
    dims = _image_dims(data)
    if dims is not None:
        w, h = dims
        scale = min(1.0, 1568 / max(w, h, 1))
        w2, h2 = w * scale, h * scale
        if w2 * h2 > 1_150_000:
            shrink = (1_150_000 / (w2 * h2)) ** 0.5
            w2, h2 = w2 * shrink, h2 * shrink
        return max(1, math.ceil(w2 * h2 / 750))
    if stored.mime_type.startswith("image/"):
        return IMAGE_MAX_TOKENS
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return PDF_PAGE_TOKENS  # an unknown binary document: one page's worth
    return max(1, -(-len(text) // 4))


def referenced_input_tokens(state: FakeState, body: Any) -> int:
    """Input tokens of content the body points at: files by id, URL sources (containers bill none)."""
    total = 0
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if node.get("type") in ("image", "document"):
                source = node.get("source")
                if isinstance(source, Mapping) and source.get("type") == "file":
                    stored = state.files.get(str(source.get("file_id")))
                    total += _file_input_tokens(stored) if stored is not None else 0
                elif isinstance(source, Mapping) and source.get("type") == "url":
                    total += state.url_source_tokens
            stack.extend(v for v in node.values() if isinstance(v, Mapping | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, Mapping | list))
    return total


def _reply_for(state: FakeState, body: Mapping[str, Any]) -> Reply:
    """The reply to a messages body, its input billed with the content it references."""
    reply = scripted_reply(state.script, body) if state.script else plan_reply(body, state.default_reply_words)
    reply.input_tokens += referenced_input_tokens(state, body)
    for block in reply.content:
        _make_output_files(state, block)
    return reply


# The result blocks whose outputs are files the sandbox wrote (listed in ``content.content``).
OUTPUT_FILE_RESULTS: Final = frozenset({"code_execution_tool_result", "bash_code_execution_tool_result"})


def _make_output_files(state: FakeState, block: dict[str, Any]) -> None:
    """Store the files a scripted code execution result says its run wrote; the block then names their ids."""
    result = block.get("content") if block.get("type") in OUTPUT_FILE_RESULTS else None
    outputs = result.get("content") if isinstance(result, dict) else None
    if not isinstance(outputs, list):
        return
    for n, item in enumerate(outputs):
        if not isinstance(item, dict) or "file_content" not in item:
            continue
        filename = str(item.get("filename", "output.txt"))
        data = item["file_content"]
        stored = _File(
            _new_id("file_011C", 20), filename, mimetypes.guess_type(filename)[0] or "text/plain",
            data.encode() if isinstance(data, str) else bytes(data), time.time(), None, True,
        )
        with state._lock:
            state.files[stored.id] = stored
        outputs[n] = {"type": item.get("type", "code_execution_output"), "file_id": stored.id}


_CODE_EXECUTION = re.compile(r"^code_execution_[0-9]{8}$")


def _container_for(state: FakeState, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container a request runs in: the one it names (any the workspace has), or a new one when
    it uses code execution or uploads a file into a container; None otherwise."""
    given = body.get("container")
    named = given.get("id") if isinstance(given, Mapping) else given
    if isinstance(named, str):
        if named not in state.containers:
            raise ApiError(404, "not_found_error", f"Container not found: {named}")
    else:
        tools = body.get("tools") or []
        uses = any(isinstance(t, Mapping) and _CODE_EXECUTION.match(str(t.get("type", ""))) for t in tools)
        if not uses and b'"container_upload"' not in _dumps(body.get("messages") or []):
            return None
        named = _new_id("container_011")
        state.containers.add(named)
    return {"id": named, "expires_at": "2099-01-01T00:00:00Z"}


def _bill(state: FakeState, path: str, reply: Reply, params: Any) -> None:
    state.billed.append(Billed(path, reply.input_tokens, reply.output_tokens, params))


# ---------------------------------------------------------------------------
# request validation

_MESSAGE_FIELDS: Final = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "cache_control", "diagnostics", "inference_geo", "output_config", "speed",
    "output_format", "user_profile_id", "workspace_id",
})  # fmt: skip
_COUNT_FIELDS: Final = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management",
    "cache_control", "output_config", "speed", "output_format", "user_profile_id", "workspace_id",
})  # fmt: skip
_BLOCK_TYPES: Final = (
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
    "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload",
    "mcp_tool_use", "mcp_tool_result",
)  # fmt: skip
_IMAGE_MEDIA: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _check_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where}: Input should be a valid string")
    return value


def _check_number(value: Any, where: str, lo: float, hi: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{where}: Input should be a valid number")
    if value < lo:
        raise _bad(f"{where}: Input should be greater than or equal to {lo:g}")
    if hi is not None and value > hi:
        raise _bad(f"{where}: Input should be less than or equal to {hi:g}")


def _check_source(source: Any, where: str, kind: str) -> None:
    if not isinstance(source, Mapping):
        raise _bad(
            f"{where}: Field required" if source is None else f"{where}: Input should be a valid dictionary"
        )
    stype = source.get("type")
    if stype == "base64":
        media = source.get("media_type")
        if kind == "image" and media not in _IMAGE_MEDIA:
            raise _bad(
                f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        if kind == "document" and media != "application/pdf":
            raise _bad(f"{where}.base64.media_type: Input should be 'application/pdf'")
        _check_str(source.get("data"), f"{where}.base64.data")
    elif stype == "url":
        _check_str(source.get("url"), f"{where}.url.url")
    elif stype == "file":
        _check_str(source.get("file_id"), f"{where}.file.file_id")
    elif kind == "document" and stype == "text":
        _check_str(source.get("data"), f"{where}.text.data")
    elif kind == "document" and stype == "content":
        if not isinstance(source.get("content"), str | list):
            raise _bad(f"{where}.content.content: Input should be a valid list")
    else:
        raise _bad(f"{where}: Input tag '{stype}' found using 'type' does not match any of the expected tags")


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, Mapping):
        raise _bad(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in _BLOCK_TYPES:
        raise _bad(f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags")
    if kind == "text":
        if not _check_str(block.get("text"), f"{where}.text.text"):
            raise _bad("messages: text content blocks must be non-empty")
    elif kind in ("image", "document"):
        _check_source(block.get("source"), f"{where}.{kind}.source", kind)
    elif kind == "tool_use":
        _check_str(block.get("id"), f"{where}.tool_use.id")
        _check_str(block.get("name"), f"{where}.tool_use.name")
        if not isinstance(block.get("input"), Mapping):
            raise _bad(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _check_str(block.get("tool_use_id"), f"{where}.tool_result.tool_use_id")
        content = block.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(f"{where}.tool_result.content: Input should be a valid list")
        if isinstance(content, list):
            for j, inner in enumerate(content):
                _check_block(inner, f"{where}.tool_result.content.{j}")


def _block_ids(content: Any, kind: str, key: str) -> list[str]:
    if not isinstance(content, list):
        return []
    return [str(b.get(key)) for b in content if isinstance(b, Mapping) and b.get("type") == kind]


def validate_body(body: Any, *, count_only: bool = False, where: str = "") -> dict[str, Any]:
    """Check a messages (or count_tokens) body like the real API; raises :class:`ApiError` (400)."""
    if not isinstance(body, dict):
        raise _bad(f"{where or 'body'}: Input should be a valid dictionary")
    allowed = _COUNT_FIELDS if count_only else _MESSAGE_FIELDS
    for key in body:
        if key not in allowed:
            raise _bad(f"{where}{key}: Extra inputs are not permitted")
    required = ("model", "messages") if count_only else ("model", "messages", "max_tokens")
    for key in required:
        if key not in body:
            raise _bad(f"{where}{key}: Field required")
    _check_str(body["model"], f"{where}model")
    if not count_only:
        max_tokens = body["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise _bad(f"{where}max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise _bad(f"{where}max_tokens: Input should be greater than or equal to 1")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise _bad(f"{where}stream: Input should be a valid boolean")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _bad(f"{where}messages: Input should be a valid list")
    if not messages:
        raise _bad(f"{where}messages: at least one message is required")
    if len(messages) > 100_000:
        raise _bad(f"{where}messages: List should have at most 100000 items after validation")
    last = len(messages) - 1
    for i, message in enumerate(messages):
        at = f"{where}messages.{i}"
        if not isinstance(message, Mapping):
            raise _bad(f"{at}: Input should be a valid dictionary")
        for key in message:
            if key not in ("role", "content"):
                raise _bad(f"{at}.{key}: Extra inputs are not permitted")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise _bad(f"{at}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise _bad(f"{at}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            if not content and not (i == last and role == "assistant"):
                raise _bad(
                    f"{at}: all messages must have non-empty content except for the optional final assistant message"
                )
        elif isinstance(content, list):
            if not content and not (i == last and role == "assistant"):
                raise _bad(
                    f"{at}: all messages must have non-empty content except for the optional final assistant message"
                )
            for j, block in enumerate(content):
                _check_block(block, f"{at}.content.{j}")
                if role == "system" and block.get("type") != "text":
                    raise _bad(f"{at}.content.{j}.type: Input should be 'text'")
        else:
            raise _bad(f"{at}.content: Input should be a valid list")
        if i == last and role == "assistant":
            tail = content if isinstance(content, str) else ""
            if isinstance(content, list) and content and isinstance(content[-1], Mapping):
                tail = str(content[-1].get("text", "")) if content[-1].get("type") == "text" else ""
            if tail and tail != tail.rstrip():
                raise _bad("final assistant content cannot end with trailing whitespace")
        if role == "assistant" and i < last:
            wanted = _block_ids(content, "tool_use", "id")
            if wanted:
                got = set(_block_ids(messages[i + 1].get("content"), "tool_result", "tool_use_id"))
                missing = [tid for tid in wanted if tid not in got]
                if missing:
                    raise _bad(
                        f"{where}messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                        "corresponding `tool_result` block in the next message."
                    )
    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for j, block in enumerate(system):
                if not isinstance(block, Mapping) or block.get("type") != "text":
                    raise _bad(f"{where}system.{j}.type: Input should be 'text'")
                _check_str(block.get("text"), f"{where}system.{j}.text")
        elif not isinstance(system, str):
            raise _bad(f"{where}system: Input should be a valid list")
    tool_names: list[str] = []
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad(f"{where}tools: Input should be a valid list")
        for j, tool in enumerate(tools):
            at = f"{where}tools.{j}"
            if not isinstance(tool, Mapping):
                raise _bad(f"{at}: Input should be a valid dictionary")
            name = tool.get("name")
            if tool.get("type") in (None, "custom"):
                if not isinstance(name, str) or not _TOOL_NAME_RE.match(name):
                    raise _bad(f"{at}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
                if "input_schema" not in tool:
                    raise _bad(f"{at}.custom.input_schema: Field required")
                if not isinstance(tool["input_schema"], Mapping):
                    raise _bad(f"{at}.custom.input_schema: Input should be a valid dictionary")
            elif not isinstance(name, str):
                raise _bad(f"{at}.name: Field required")
            tool_names.append(str(name))
        if len(set(tool_names)) != len(tool_names):
            raise _bad(f"{where}tools: Tool names must be unique.")
    choice = body.get("tool_choice")
    if choice is not None:
        tag = choice.get("type") if isinstance(choice, Mapping) else None
        if tag not in ("auto", "any", "tool", "none"):
            raise _bad(
                f"{where}tool_choice: Input tag '{tag}' found using 'type' does not match any of the "
                "expected tags: 'auto', 'any', 'tool', 'none'"
            )
        if choice["type"] in ("any", "tool") and not tool_names:
            raise _bad(f"{where}tool_choice: tool_choice may only be specified while providing tools.")
        if choice["type"] == "tool":
            name = _check_str(choice.get("name"), f"{where}tool_choice.tool.name")
            if name not in tool_names:
                raise _bad(f"{where}tool_choice: Tool '{name}' not found in tools")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, Mapping) or thinking.get("type") not in (
            "enabled",
            "disabled",
            "adaptive",
        ):
            raise _bad(
                f"{where}thinking: Input tag does not match any of the expected tags: "
                "'enabled', 'disabled', 'adaptive'"
            )
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if isinstance(budget, bool) or not isinstance(budget, int):
                raise _bad(f"{where}thinking.enabled.budget_tokens: Field required")
            if budget < 1024:
                raise _bad(
                    f"{where}thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                )
            if not count_only and budget >= body["max_tokens"]:
                raise _bad("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if "temperature" in body:
        _check_number(body["temperature"], f"{where}temperature", 0, 1)
    if "top_p" in body:
        _check_number(body["top_p"], f"{where}top_p", 0, 1)
    top_k = body.get("top_k", 0)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise _bad(f"{where}top_k: Input should be greater than or equal to 0")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _bad(f"{where}stop_sequences: Input should be a valid list")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise _bad(f"{where}metadata: Input should be a valid dictionary")
    return body


# ---------------------------------------------------------------------------
# deterministic replies


@dataclass(slots=True)
class Reply:
    """What the fake model answers: complete content blocks plus usage."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    # index -> the exact deltas to stream for that block (scripted replies)
    deltas: dict[int, list[str]] = field(default_factory=dict)
    # {"id", "expires_at"} of the code execution container the request ran in, if any
    container: dict[str, Any] | None = None


# Blocks the API's server tools add to a reply (web search and fetch, code execution).
SERVER_RESULT_TYPES = frozenset({
    "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
})


def _check_script(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ValueError("script must be a non-empty list of blocks")
    for i, block in enumerate(value):
        if isinstance(block, dict) and block.get("type") in SERVER_RESULT_TYPES:
            # A server tool's result arrives whole, in its content_block_start, as from the real API.
            if "content" not in block or "tool_use_id" not in block or "deltas" in block:
                raise ValueError(f"script[{i}]: a server tool result needs tool_use_id and content, and no deltas")
            continue
        if not isinstance(block, dict) or block.get("type") not in ("text", "thinking", "tool_use"):
            raise ValueError(f"script[{i}]: a block of type text, thinking, tool_use or a server tool result is required")
        deltas = block.get("deltas")
        if not isinstance(deltas, list) or not all(isinstance(d, str) for d in deltas):
            raise ValueError(f"script[{i}].deltas must be a list of strings")
        if block["type"] == "tool_use":
            try:
                parsed = json.loads("".join(deltas))
            except ValueError:
                raise ValueError(f"script[{i}].deltas must join to a JSON object") from None
            if not isinstance(parsed, dict) or not isinstance(block.get("name"), str):
                raise ValueError(f"script[{i}]: a tool_use needs a name and deltas joining to a JSON object")
    return [dict(b) for b in value]


def scripted_reply(script: Sequence[Mapping[str, Any]], body: Mapping[str, Any]) -> Reply:
    """The reply a script describes (see the module doc)."""
    content: list[dict[str, Any]] = []
    deltas: dict[int, list[str]] = {}
    for index, block in enumerate(script):
        if block["type"] in SERVER_RESULT_TYPES:
            content.append(json.loads(json.dumps(block)))  # a copy: its outputs may be made into files
            continue
        pieces = list(block["deltas"])
        deltas[index] = pieces
        joined = "".join(pieces)
        if block["type"] == "text":
            content.append({"type": "text", "text": joined})
        elif block["type"] == "thinking":
            signature = base64.b64encode(hashlib.sha256(joined.encode()).digest() * 2).decode()
            content.append({"type": "thinking", "thinking": joined, "signature": signature})
        else:
            content.append({"type": "tool_use", "id": _new_id("toolu_01"), "name": block["name"],
                            "input": json.loads(joined)})
    has_tool = any(b["type"] == "tool_use" for b in content)
    output = max(sum(len(p) for p in deltas.values()), 1)
    return Reply(content, "tool_use" if has_tool else "end_turn", None, estimate_input_tokens(body), output, deltas)


def last_user_text(messages: Sequence[Any]) -> str:
    """Text of the last user message (text blocks and tool_result text, joined)."""
    for message in reversed(messages):
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        parts: list[str] = []
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    parts.append(inner)
                elif isinstance(inner, list):
                    parts.extend(str(b.get("text", "")) for b in inner if isinstance(b, Mapping))
        return "\n".join(parts)
    return ""


def _words(seed: int, count: int) -> list[str]:
    x = seed & 0x7FFFFFFF
    out: list[str] = []
    n = len(_WORDS)
    for _ in range(count):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(_WORDS[(x >> 8) % n])
    return out


def _sentence(words: list[str], finished: bool) -> str:
    if not words:
        return ""
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    return text + "." if finished else text


def _placeholder(schema: Any, depth: int = 0) -> Any:
    if not isinstance(schema, Mapping) or depth > 8:
        return "example"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _placeholder(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        required = schema.get("required")
        if not isinstance(props, Mapping):
            props = {}
        if not isinstance(required, list):
            required = []
        return {str(k): _placeholder(props.get(k), depth + 1) for k in required}
    if kind == "array":
        need = schema.get("minItems", 0)
        need = need if isinstance(need, int) and not isinstance(need, bool) and need > 0 else 0
        return [_placeholder(schema.get("items"), depth + 1) for _ in range(min(need, 16))]
    if kind == "integer":
        low = schema.get("minimum")
        return low if isinstance(low, int) and not isinstance(low, bool) else 1
    if kind == "number":
        low = schema.get("minimum")
        return float(low) if isinstance(low, int | float) and not isinstance(low, bool) else 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def _chosen_tool(body: Mapping[str, Any], user_text: str) -> tuple[Mapping[str, Any], bool] | None:
    """(tool, forced) when the fake model should call a tool."""
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping) and "input_schema" in t]
    if not tools:
        return None
    choice = body.get("tool_choice")
    if not isinstance(choice, Mapping):
        choice = {}
    kind = choice.get("type", "auto")
    if kind == "none":
        return None
    if kind == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return tool, True
        return None
    if kind == "any":
        return tools[0], True
    if "use the tool" in user_text.lower():
        return tools[0], False
    return None


def plan_reply(body: Mapping[str, Any], default_words: int = 10) -> Reply:
    """The deterministic answer to a validated messages body."""
    input_tokens = estimate_input_tokens(body)
    budget = int(body["max_tokens"])
    user_text = last_user_text(body["messages"])
    seed = zlib.crc32(user_text.encode())
    content: list[dict[str, Any]] = []
    output = 0
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        n = min(THINKING_WORDS, budget)
        text = "Considering " + " ".join(_words(seed ^ 0x5BD1E995, n - 1)) if n > 1 else "Considering"
        signature = base64.b64encode(hashlib.sha256(text.encode()).digest() * 2).decode()
        content.append({"type": "thinking", "thinking": text, "signature": signature})
        output += n
        budget -= n
    stop_sequence: str | None = None
    picked = _chosen_tool(body, user_text)
    if picked is not None and budget > 0:
        tool, forced = picked
        name = str(tool.get("name"))
        if not forced:
            preamble = f"I will use the {name} tool."
            content.append({"type": "text", "text": preamble})
            output += len(preamble.split())
        tool_input = _placeholder(tool.get("input_schema"))
        if not isinstance(tool_input, dict):
            tool_input = {}
        content.append({"type": "tool_use", "id": _new_id("toolu_01"), "name": name, "input": tool_input})
        output += 1 + math.ceil(len(json.dumps(tool_input)) / 4)
        stop_reason = "tool_use"
    else:
        match = _REPLY_RE.search(user_text)
        wanted = int(match.group(1)) if match else default_words
        n = min(wanted, max(budget, 0))
        truncated = wanted > n
        text = _sentence(_words(seed, n), finished=not truncated)
        stop_reason = "max_tokens" if truncated else "end_turn"
        stops = [s for s in body.get("stop_sequences") or () if s]
        if stops and text:
            hits = [(text.find(s), s) for s in stops if s in text]
            if hits:
                cut, stop_sequence = min(hits)
                text = text[:cut]
                stop_reason = "stop_sequence"
                n = len(text.split())
        if text:
            content.append({"type": "text", "text": text})
        output += n
    return Reply(content, stop_reason, stop_sequence, input_tokens, max(output, 1))


def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_json(reply: Reply, model: str, message_id: str | None = None) -> dict[str, Any]:
    return {
        "id": message_id or _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply, reply.output_tokens),
        **({"container": reply.container} if reply.container is not None else {}),
    }


def _sse(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def stream_events(reply: Reply, model: str, message_id: str | None = None) -> Iterator[bytes]:
    """The SSE byte chunks of a streamed reply, one event per chunk, in the real API's order."""
    start = message_json(reply, model, message_id)
    start["content"] = []
    start.pop("container", None)  # told in message_delta, once the turn has run
    start["stop_reason"] = None
    start["stop_sequence"] = None
    start["usage"] = _usage(reply, 1)
    yield _sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(reply.content):
        kind = block["type"]
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "tool_use":
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        else:
            opening = block
        yield _sse(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}
        )
        if index == 0:
            yield _sse("ping", {"type": "ping"})
        scripted = reply.deltas.get(index)
        if scripted is not None:
            field_of = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking"),
                        "tool_use": ("input_json_delta", "partial_json")}
            delta_type, key = field_of[kind]
            for piece in scripted:
                delta = {"type": delta_type, key: piece}
                yield _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            if kind == "thinking":
                delta = {"type": "signature_delta", "signature": block["signature"]}
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == "text":
            for piece in _WORD_PIECE_RE.findall(block["text"]):
                delta = {"type": "text_delta", "text": piece}
                yield _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
        elif kind == "thinking":
            for piece in _WORD_PIECE_RE.findall(block["thinking"]):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == "tool_use":
            raw = json.dumps(block["input"])
            pieces = [""] + [raw[i : i + TOOL_JSON_CHUNK] for i in range(0, len(raw), TOOL_JSON_CHUNK)]
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield _sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence,
                      **({"container": reply.container} if reply.container is not None else {})},
            "usage": {
                "input_tokens": reply.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": reply.output_tokens,
            },
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


# ---------------------------------------------------------------------------
# HTTP layer

STATE_KEY: Final = web.AppKey("fake_anthropic_state", FakeState)
_INVALID: Final = object()  # _Ctx.json when the body is not valid JSON
_FOREVER: Final = 10 * 365 * 86400.0


@dataclass(slots=True)
class _Ctx:
    """Per-request data the middleware hands to the handlers."""

    rid: str
    body: bytes = b""
    json: Any = _INVALID
    stream_failure: Failure | None = None


_CTX: Any = web.RequestKey("fake_anthropic_ctx", _Ctx) if hasattr(web, "RequestKey") else "fake_anthropic_ctx"


def _ctx(request: web.Request) -> _Ctx:
    ctx: _Ctx = request[_CTX]
    return ctx


def _headers(request: web.Request, input_tokens: int = 0, output_tokens: int = 0) -> dict[str, str]:
    state = request.app[STATE_KEY]
    headers = state.ratelimit_headers(input_tokens, output_tokens)
    headers["request-id"] = _ctx(request).rid
    headers["anthropic-organization-id"] = ORGANIZATION_ID
    headers["x-robots-tag"] = "none"
    return headers


def _json_response(
    request: web.Request, data: Any, *, status: int = 200, in_tok: int = 0, out_tok: int = 0
) -> web.Response:
    headers = _headers(request, in_tok, out_tok)
    headers["Content-Type"] = "application/json"
    return web.Response(body=_dumps(data), status=status, headers=headers)


def _error_response(request: web.Request, err: ApiError) -> web.Response:
    headers = _headers(request)
    headers.update(err.headers)
    headers["Content-Type"] = "application/json"
    body = _dumps(error_payload(err.kind, err.message, _ctx(request).rid))
    return web.Response(body=body, status=err.status, headers=headers)


def _failure_error(failure: Failure) -> ApiError:
    extra: dict[str, str] = {}
    if failure.retry_after is not None:
        seconds = failure.retry_after
        extra["retry-after"] = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
    return ApiError(failure.status, failure.error_type, failure.message, headers=extra)


def _json_body(request: web.Request) -> Any:
    ctx = _ctx(request)
    parsed = ctx.json
    if parsed is _INVALID:
        raw = ctx.body
        if not raw.strip():
            raise _bad("Request body is empty; expected a JSON object")
        try:
            json.loads(raw)
        except ValueError as exc:
            raise _bad(f"There was an error parsing the body of your request as JSON: {exc}") from None
        raise _bad("There was an error parsing the body of your request as JSON")
    return parsed


def _check_size(request: web.Request, limit: int) -> None:
    if len(_ctx(request).body) > limit:
        raise ApiError(413, "request_too_large", _DEFAULT_MESSAGES["request_too_large"])


def _resolve(state: FakeState, name: str) -> ModelSpec:
    spec = state.resolve_model(name)
    if spec is None or spec.lifecycle == "retired":
        raise ApiError(404, "not_found_error", f"model: {name}")
    return spec


def _check_model_limits(spec: ModelSpec, body: Mapping[str, Any]) -> None:
    if body["max_tokens"] > spec.max_tokens:
        raise _bad(
            f"max_tokens: {body['max_tokens']} > {spec.max_tokens}, which is the maximum allowed "
            f"number of output tokens for {spec.id}"
        )


@web.middleware
async def _api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    path = request.path
    if path.startswith("/_fake/"):
        result: web.StreamResponse = await handler(request)
        return result
    state = request.app[STATE_KEY]
    ctx = request[_CTX] = _Ctx(new_request_id())
    try:
        body = await request.read() if request.body_exists else b""
    except web.HTTPRequestEntityTooLarge:
        return _error_response(
            request, ApiError(413, "request_too_large", _DEFAULT_MESSAGES["request_too_large"])
        )
    ctx.body = body
    parsed: Any = None
    if body and not request.content_type.startswith("multipart/"):
        try:
            parsed = json.loads(body)
        except ValueError:
            pass
        else:
            ctx.json = parsed
    headers = request.headers
    state.record(
        RecordedRequest(
            request.method,
            path,
            request.query_string,
            {k.lower(): v for k, v in headers.items()},
            body,
            parsed,
            time.time(),
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
        )
    )
    if state.latency:
        await asyncio.sleep(state.latency)
    try:
        match_error = request.match_info.http_exception
        if match_error is not None:
            if match_error.status == 405:
                allow = ", ".join(sorted(getattr(match_error, "allowed_methods", ()) or ()))
                raise ApiError(405, "invalid_request_error", "Method Not Allowed", headers={"allow": allow})
            raise ApiError(404, "not_found_error", "Not Found")
        key = headers.get("x-api-key")
        if key is None:
            auth = headers.get("authorization")
            if auth is None:
                raise ApiError(401, "authentication_error", "x-api-key header is required")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in state.api_keys:
                raise ApiError(401, "authentication_error", "Invalid bearer token")
        elif key not in state.api_keys:
            raise ApiError(401, "authentication_error", "invalid x-api-key")
        version = headers.get("anthropic-version")
        if not version:
            raise _bad("anthropic-version: header is required")
        if not _VERSION_RE.match(version):
            raise _bad(f"anthropic-version: '{version}' is not a valid version")
        if state.failures:
            streaming = path == "/v1/messages" and isinstance(parsed, dict) and parsed.get("stream") is True
            failure = state.take_failure(path, streaming, body)
            if failure is not None:
                if failure.kind == "status":
                    raise _failure_error(failure)
                if failure.after_events is not None:
                    ctx.stream_failure = failure
                elif failure.kind == "hang":
                    await asyncio.sleep(_FOREVER if failure.seconds is None else failure.seconds)
                else:  # disconnect
                    _drop_connection(request)
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as err:
        return _error_response(request, err)


# -- messages ------------------------------------------------------------


async def _messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    _check_size(request, state.max_message_bytes)
    body = validate_body(_json_body(request))
    spec = _resolve(state, body["model"])
    _check_model_limits(spec, body)
    reply = _reply_for(state, body)
    reply.container = _container_for(state, body)
    # Billed once generation starts, whether or not anyone reads the answer to its end.
    _bill(state, request.path, reply, body)
    if not body.get("stream"):
        return _json_response(
            request, message_json(reply, spec.id), in_tok=reply.input_tokens, out_tok=reply.output_tokens
        )
    headers = _headers(request, reply.input_tokens, reply.output_tokens)
    headers["Content-Type"] = "text/event-stream; charset=utf-8"
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    failure = _ctx(request).stream_failure
    fail_at = failure.after_events if failure is not None and failure.after_events is not None else -1
    index = 0
    for index, chunk in enumerate(stream_events(reply, spec.id)):
        if index and state.event_delay:
            await asyncio.sleep(state.event_delay)
        if index == fail_at and failure is not None and await _stream_failure(request, response, failure):
            return response
        await response.write(chunk)
    if failure is not None and fail_at > index and await _stream_failure(request, response, failure):
        return response
    await response.write_eof()
    return response


def _drop_connection(request: web.Request) -> NoReturn:
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


async def _stream_failure(request: web.Request, response: web.StreamResponse, failure: Failure) -> bool:
    """Apply a mid-stream failure; True when the stream is over."""
    if failure.kind == "hang":
        await asyncio.sleep(_FOREVER if failure.seconds is None else failure.seconds)
        return False
    if failure.kind == "disconnect":
        _drop_connection(request)
    payload = error_payload(failure.error_type, failure.message, _ctx(request).rid)
    await response.write(_sse("error", payload))
    await response.write_eof()
    return True


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    _check_size(request, state.max_message_bytes)
    body = validate_body(_json_body(request), count_only=True)
    _resolve(state, body["model"])
    tokens = estimate_input_tokens(body) + referenced_input_tokens(state, body)
    return _json_response(request, {"input_tokens": tokens})


# -- pagination ------------------------------------------------------------


def _limit(request: web.Request, default: int = 20) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad("limit: Input should be a valid integer") from None
    if value < 1:
        raise _bad("limit: Input should be greater than or equal to 1")
    if value > 1000:
        raise _bad("limit: Input should be less than or equal to 1000")
    return value


def _page(request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """first_id/last_id/has_more pagination (models, batches)."""
    limit = _limit(request)
    ids = [item["id"] for item in items]
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if after is not None and before is not None:
        raise _bad("Cannot specify both after_id and before_id")
    if before is not None:
        end = ids.index(before) if before in ids else 0
        start = max(0, end - limit)
        data, has_more = items[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after is not None and after in ids else (len(ids) if after else 0)
        data = items[start : start + limit]
        has_more = start + limit < len(items)
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


# -- models ------------------------------------------------------------------


async def _list_models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    wanted = request.query.getall("lifecycle[]", []) or request.query.getall("lifecycle", [])
    stages = set(wanted) if wanted else {"active", "deprecated"}
    items = [m.to_json() for m in state.models if m.lifecycle in stages]
    return _json_response(request, _page(request, items))


async def _get_model(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    name = request.match_info["model_id"]
    spec = state.resolve_model(name)
    if spec is None:
        raise ApiError(404, "not_found_error", f"model: {name}")
    return _json_response(request, spec.to_json())


# -- message batches -----------------------------------------------------------


def _batch_base(request: web.Request) -> str:
    base = request.app[STATE_KEY].public_base_url
    return base or f"{request.scheme}://{request.host}"


def _advance_batch(state: FakeState, batch: _Batch) -> None:
    """Finish a batch whose processing time has passed (lazily, on access)."""
    if batch.status == "ended":
        return
    now = time.time()
    if batch.status == "in_progress" and now < batch.created + batch.processing_seconds:
        return
    results: list[dict[str, Any]] = []
    for item in batch.requests:
        custom_id = item["custom_id"]
        if batch.status == "canceling":
            results.append({"custom_id": custom_id, "result": {"type": "canceled"}})
            continue
        params = item["params"]
        spec = state.resolve_model(params["model"])
        if spec is None:
            error = error_payload("not_found_error", f"model: {params['model']}", new_request_id())
            results.append({"custom_id": custom_id, "result": {"type": "errored", "error": error}})
            continue
        try:
            _check_model_limits(spec, params)
        except ApiError as err:
            error = error_payload(err.kind, err.message, new_request_id())
            results.append({"custom_id": custom_id, "result": {"type": "errored", "error": error}})
            continue
        reply = _reply_for(state, params)
        _bill(state, "/v1/messages/batches", reply, params)
        results.append(
            {"custom_id": custom_id, "result": {"type": "succeeded", "message": message_json(reply, spec.id)}}
        )
    batch.results = results
    batch.status = "ended"
    batch.ended = now


def _batch_json(request: web.Request, batch: _Batch) -> dict[str, Any]:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.results is None:
        counts["processing"] = len(batch.requests)
    else:
        for item in batch.results:
            counts[item["result"]["type"]] += 1
    ended = batch.status == "ended"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": counts,
        "ended_at": _iso(batch.ended) if batch.ended is not None else None,
        "created_at": _iso(batch.created),
        "expires_at": _iso(batch.created + 86400),
        "archived_at": None,
        "cancel_initiated_at": _iso(batch.cancel_initiated) if batch.cancel_initiated is not None else None,
        "results_url": f"{_batch_base(request)}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _get_batch(request: web.Request) -> _Batch:
    state = request.app[STATE_KEY]
    batch_id = request.match_info["batch_id"]
    with state._lock:
        batch = state.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "not_found_error", f"Message batch {batch_id} not found.")
        _advance_batch(state, batch)
    return batch


async def _create_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    _check_size(request, BATCHES_MAX_BYTES)
    body = _json_body(request)
    if not isinstance(body, dict):
        raise _bad("body: Input should be a valid dictionary")
    for key in body:
        if key != "requests":
            raise _bad(f"{key}: Extra inputs are not permitted")
    items = body.get("requests")
    if items is None:
        raise _bad("requests: Field required")
    if not isinstance(items, list):
        raise _bad("requests: Input should be a valid list")
    if not items:
        raise _bad("requests: List should have at least 1 item after validation, not 0")
    if len(items) > 100_000:
        raise _bad("requests: List should have at most 100000 items after validation")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"requests.{i}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID_RE.match(custom_id):
            raise _bad(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise _bad(
                f"requests: Duplicate custom_id '{custom_id}' found. Each request must have a unique custom_id."
            )
        seen.add(custom_id)
        if "params" not in item:
            raise _bad(f"requests.{i}.params: Field required")
        validate_body(item["params"], where=f"requests.{i}.params.")
        if item["params"].get("stream"):
            raise _bad(f"requests.{i}.params.stream: Message batch requests cannot be streamed")
    batch = _Batch(_new_id("msgbatch_01"), time.time(), items, state.batch_processing_seconds)
    with state._lock:
        state.batches[batch.id] = batch
    return _json_response(request, _batch_json(request, batch))


async def _list_batches(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    with state._lock:
        batches = sorted(state.batches.values(), key=lambda b: b.created, reverse=True)
        for batch in batches:
            _advance_batch(state, batch)
        items = [_batch_json(request, b) for b in batches]
    return _json_response(request, _page(request, items))


async def _retrieve_batch(request: web.Request) -> web.StreamResponse:
    return _json_response(request, _batch_json(request, _get_batch(request)))


async def _cancel_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    batch = _get_batch(request)
    with state._lock:
        if batch.status == "ended":
            raise _bad(f"Message batch {batch.id} has already ended and cannot be canceled.")
        if batch.status == "in_progress":
            batch.status = "canceling"
            batch.cancel_initiated = time.time()
    return _json_response(request, _batch_json(request, batch))


async def _batch_results(request: web.Request) -> web.StreamResponse:
    batch = _get_batch(request)
    if batch.results is None:
        raise _bad(f"Message batch {batch.id} has not finished processing; results are not available yet.")
    payload = b"".join(_dumps(item) + b"\n" for item in batch.results)
    headers = _headers(request)
    headers["Content-Type"] = "application/binary"
    return web.Response(body=payload, headers=headers)


async def _delete_batch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    batch = _get_batch(request)
    if batch.status != "ended":
        raise _bad(f"Message batch {batch.id} is still in progress; cancel it before deleting it.")
    with state._lock:
        state.batches.pop(batch.id, None)
    return _json_response(request, {"id": batch.id, "type": "message_batch_deleted"})


# -- files -------------------------------------------------------------------


def _multipart_parts(request: web.Request) -> list[tuple[dict[str, str], bytes]]:
    header = request.headers.get("content-type", "") if request.content_type == "multipart/form-data" else ""
    match = re.search(r'boundary="?([^";]+)"?', header)
    if not match:
        raise _bad("Content-Type must be multipart/form-data with a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts: list[tuple[dict[str, str], bytes]] = []
    for chunk in _ctx(request).body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        part_headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                part_headers[name.strip().lower()] = value.strip()
        parts.append((part_headers, data))
    return parts


async def _upload_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    _check_size(request, FILES_MAX_BYTES)
    upload: tuple[str, str, bytes] | None = None
    expires_in: int | None = None
    for part_headers, data in _multipart_parts(request):
        _, params = parse_content_disposition(part_headers.get("content-disposition"))
        name = params.get("name")
        if name == "file":
            filename = content_disposition_filename(params, "filename") or ""
            filename = filename.replace("\\", "/").rsplit("/", 1)[-1]
            mime = part_headers.get("content-type", "").split(";")[0].strip()
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(filename)[0] or mime or "application/octet-stream"
            if not filename:
                filename = "unnamed" + (mimetypes.guess_extension(mime) or "")
            upload = (filename, mime, data)
        elif name == "expires_in_seconds":
            try:
                expires_in = int(data.decode().strip())
            except ValueError:
                raise _bad("expires_in_seconds: Input should be a valid integer") from None
            if not 3600 <= expires_in <= 7_776_000:
                raise _bad("expires_in_seconds: Input should be between 3600 and 7776000")
    if upload is None:
        raise _bad("file: Field required")
    now = time.time()
    filename, mime, data = upload
    stored = _File(
        _new_id("file_011C", 20),
        filename,
        mime,
        data,
        now,
        now + expires_in if expires_in else None,
        state.files_downloadable,
    )
    with state._lock:
        state.files[stored.id] = stored
    return _json_response(request, stored.to_json())


def _get_file(request: web.Request) -> _File:
    state = request.app[STATE_KEY]
    file_id = request.match_info["file_id"]
    stored = state.files.get(file_id)
    if stored is None:
        raise ApiError(404, "not_found_error", f"File not found: {file_id}")
    return stored


def _cursor_page(data: list[dict[str, Any]], next_page: str | None) -> dict[str, Any]:
    """``next_page`` cursor pagination (files), with the older first_id/last_id fields too."""
    return {
        "data": data,
        "next_page": next_page,
        "has_more": next_page is not None,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


async def _list_files(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    with state._lock:
        files = sorted(state.files.values(), key=lambda f: f.created, reverse=True)
    query = request.query
    wanted = query.getall("ids[]", []) or query.getall("ids", [])
    if wanted:
        if "page" in query or "limit" in query:
            raise _bad("ids: cannot be combined with page or limit")
        keep = set(wanted)
        return _json_response(request, _cursor_page([f.to_json() for f in files if f.id in keep], None))
    if "after_id" in query or "before_id" in query:
        return _json_response(request, _page(request, [f.to_json() for f in files]))
    start = 0
    cursor = query.get("page")
    if cursor:
        try:
            start = int(base64.urlsafe_b64decode(cursor.removeprefix("page_").encode() + b"==").decode())
        except ValueError:
            raise _bad("page: Invalid page cursor") from None
    limit = _limit(request)
    end = start + limit
    next_page = None
    if end < len(files):
        next_page = "page_" + base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=")
    return _json_response(request, _cursor_page([f.to_json() for f in files[start:end]], next_page))


async def _retrieve_file(request: web.Request) -> web.StreamResponse:
    return _json_response(request, _get_file(request).to_json())


async def _file_content(request: web.Request) -> web.StreamResponse:
    stored = _get_file(request)
    if not stored.downloadable:
        raise _bad(f"File {stored.id} is not downloadable")
    headers = _headers(request)
    headers["Content-Type"] = stored.mime_type
    headers["Content-Disposition"] = f'attachment; filename="{stored.filename}"'
    if stored.stall_after is None or stored.resume is None:
        return web.Response(body=stored.data, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(stored.data)
    await response.prepare(request)
    await response.write(stored.data[: stored.stall_after])
    await asyncio.get_running_loop().run_in_executor(None, stored.resume.wait)
    await response.write(stored.data[stored.stall_after :])
    await response.write_eof()
    return response


async def _delete_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    stored = _get_file(request)
    with state._lock:
        state.files.pop(stored.id, None)
    return _json_response(request, {"id": stored.id, "type": "file_deleted"})


# -- control endpoints -----------------------------------------------------------


def _plain(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(data), status=status, content_type="application/json")


async def _control_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=_dumps({"error": f"invalid JSON: {exc}"}).decode(), content_type="application/json"
        ) from None


async def _ctl_requests(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    path = request.query.get("path")
    records = list(state.requests)
    if path:
        records = [r for r in records if r.path == path]
    limit = request.query.get("limit")
    if limit and limit.isdigit():
        records = records[-int(limit) :] if int(limit) else []
    return _plain([r.to_json() for r in records])


async def _ctl_clear_requests(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].clear_requests()
    return _plain({"ok": True})


async def _ctl_reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset()
    return _plain({"ok": True})


async def _ctl_fail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    spec = await _control_json(request)
    specs = spec if isinstance(spec, list) else [spec]
    try:
        added = [state.add_failure(s) for s in specs]
    except (ValueError, TypeError) as exc:
        return _plain({"error": str(exc)}, status=400)
    return _plain({"ok": True, "added": [f.to_json() for f in added], "pending": len(state.failures)})


async def _ctl_billed(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    return _plain([
        {"path": b.path, "input_tokens": b.input_tokens, "output_tokens": b.output_tokens, "params": b.params,
         "at": b.at}
        for b in list(state.billed)
    ])  # fmt: skip


async def _ctl_get_config(request: web.Request) -> web.StreamResponse:
    return _plain(request.app[STATE_KEY].config())


async def _ctl_config(request: web.Request) -> web.StreamResponse:
    spec = await _control_json(request)
    if not isinstance(spec, dict):
        return _plain({"error": "config must be a JSON object"}, status=400)
    try:
        return _plain(request.app[STATE_KEY].configure(**spec))
    except (ValueError, TypeError) as exc:
        return _plain({"error": str(exc)}, status=400)


async def _ctl_health(request: web.Request) -> web.StreamResponse:
    return _plain({"ok": True})


def make_app(state: FakeState | None = None) -> web.Application:
    """The fake's aiohttp application, serving ``state`` (a fresh one by default)."""
    app = web.Application(middlewares=[_api_middleware], client_max_size=FILES_MAX_BYTES + 1024 * 1024)
    app[STATE_KEY] = state if state is not None else FakeState()
    r = app.router
    r.add_post("/v1/messages", _messages)
    r.add_post("/v1/messages/count_tokens", _count_tokens)
    r.add_get("/v1/models", _list_models)
    r.add_get("/v1/models/{model_id}", _get_model)
    r.add_post("/v1/messages/batches", _create_batch)
    r.add_get("/v1/messages/batches", _list_batches)
    r.add_get("/v1/messages/batches/{batch_id}", _retrieve_batch)
    r.add_delete("/v1/messages/batches/{batch_id}", _delete_batch)
    r.add_post("/v1/messages/batches/{batch_id}/cancel", _cancel_batch)
    r.add_get("/v1/messages/batches/{batch_id}/results", _batch_results)
    r.add_post("/v1/files", _upload_file)
    r.add_get("/v1/files", _list_files)
    r.add_get("/v1/files/{file_id}", _retrieve_file)
    r.add_delete("/v1/files/{file_id}", _delete_file)
    r.add_get("/v1/files/{file_id}/content", _file_content)
    r.add_get("/_fake/requests", _ctl_requests)
    r.add_delete("/_fake/requests", _ctl_clear_requests)
    r.add_post("/_fake/reset", _ctl_reset)
    r.add_post("/_fake/fail", _ctl_fail)
    r.add_get("/_fake/config", _ctl_get_config)
    r.add_get("/_fake/billed", _ctl_billed)
    r.add_post("/_fake/config", _ctl_config)
    r.add_get("/_fake/health", _ctl_health)
    return app


# ---------------------------------------------------------------------------
# running it


def _make_runner(state: FakeState, access_log: bool) -> web.AppRunner:
    if access_log:
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        return web.AppRunner(
            make_app(state), handle_signals=False, shutdown_timeout=0.5, handler_cancellation=True
        )
    return web.AppRunner(
        make_app(state),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=0.5,
        handler_cancellation=True,
    )


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class AsyncFakeAnthropic:
    """The fake served on the current event loop: ``async with AsyncFakeAnthropic() as fake:``."""

    def __init__(self, state: FakeState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state if state is not None else FakeState()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def api_key(self) -> str:
        return sorted(self.state.api_keys)[0]

    async def start(self) -> Self:
        runner = _make_runner(self.state, access_log=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class FakeAnthropic:
    """The fake on 127.0.0.1 with an OS-chosen port, in a background thread with its own loop.

    ``with FakeAnthropic() as fake: ... fake.url, fake.state, fake.api_key``
    """

    def __init__(self, state: FakeState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state if state is not None else FakeState()
        self.host = host
        self.port = port
        self._inner = AsyncFakeAnthropic(self.state, host=host, port=port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def api_key(self) -> str:
        return sorted(self.state.api_keys)[0]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fake Anthropic API did not start in time")
        if self._error is not None:
            raise RuntimeError(f"fake Anthropic API failed to start: {self._error}") from self._error
        self.port = self._inner.port
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._inner.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._inner.stop())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._inner.stop(), loop).result(timeout)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FakeControl:
    """Drive a fake running elsewhere (subprocess, container) through its ``/_fake/`` endpoints."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        query = "?" + urllib.parse.urlencode({"path": path}) if path else ""
        result: list[dict[str, Any]] = self._call("GET", "/_fake/requests" + query)
        return result

    def clear_requests(self) -> None:
        self._call("DELETE", "/_fake/requests")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset")

    def fail(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/_fake/fail", spec)
        return result

    def config(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = (
            self._call("POST", "/_fake/config", changes) if changes else self._call("GET", "/_fake/config")
        )
        return result

    def billed(self) -> list[dict[str, Any]]:
        """What the fake billed (its ledger), one entry per generation."""
        result: list[dict[str, Any]] = self._call("GET", "/_fake/billed")
        return result

    def health(self) -> bool:
        try:
            return bool(self._call("GET", "/_fake/health").get("ok"))
        except OSError:
            return False


REPO_ROOT: Final = Path(__file__).resolve().parents[2]


class FakeProcess:
    """The fake as a child process (``spawn_fake``); ``.url``, ``.control``, ``.stop()``."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.control = FakeControl(url)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn_fake(
    listen: str = "127.0.0.1:0",
    *,
    api_keys: Sequence[str] = (),
    latency: float = 0.0,
    event_delay: float = 0.0,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    timeout: float = 15.0,
) -> FakeProcess:
    """Start ``python -m tests.support.fake_anthropic`` and wait for its ``listening on`` line."""
    cmd = [python, "-m", "tests.support.fake_anthropic", "--listen", listen]
    for key in api_keys:
        cmd += ["--api-key", key]
    cmd += ["--latency", str(latency), "--event-delay", str(event_delay), *extra_args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line: list[str] = []

    def read() -> None:
        line.append(proc.stdout.readline() if proc.stdout else "")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    match = re.match(r"listening on (http://\S+)", line[0]) if line else None
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"fake did not start: {line[0] if line else 'no output'!r}")
    return FakeProcess(proc, match.group(1))


# ---------------------------------------------------------------------------
# CLI


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


async def _serve(state: FakeState, host: str, port: int, access_log: bool) -> None:
    runner = _make_runner(state, access_log)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = int(runner.addresses[0][1])
    print(f"listening on {_url(host, bound)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_anthropic",
        description="Fake Anthropic API for tests and benchmarks.",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="address to bind; port 0 picks a free one (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted upstream key (repeatable; default {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds before the first byte of a response"
    )
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--reply-words", type=int, default=10, help="default reply length in words")
    parser.add_argument("--batch-processing-seconds", type=float, default=0.0)
    parser.add_argument("--public-base-url", default=None, help="base URL used in batch results_url")
    parser.add_argument("--max-recorded", type=int, default=10_000, help="recorded requests to keep")
    parser.add_argument("--no-record", action="store_true", help="do not record requests")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    state = FakeState(
        api_keys=set(args.api_keys) if args.api_keys else {DEFAULT_API_KEY},
        latency=args.latency,
        event_delay=args.event_delay,
        default_reply_words=args.reply_words,
        batch_processing_seconds=args.batch_processing_seconds,
        public_base_url=args.public_base_url,
        max_recorded=args.max_recorded,
        record_requests=not args.no_record,
    )
    host, port = args.listen
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(state, host, port, args.access_log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
