"""Request and response header hygiene: the presented key, hop-by-hop headers,
encodings, and what upstream says that clients must not see.

Each check is strict rather than forgiving, because nginx and the gateway
must read a request the same way: nginx keys its per-key rate zone on the
same header value the gateway authenticates, so the gateway never trims,
unfolds or picks one of several values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from multidict import CIMultiDictProxy

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import KEY_RE

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
     "proxy-authorization", "proxy-authenticate", "proxy-connection"}
)  # fmt: skip
# Upstream's view of the whole organisation: its id and its org-wide rate
# limits are none of a client's business (a client with gateway limits gets
# the gateway's own anthropic-ratelimit-* headers instead).
_ORG_HEADERS = frozenset({"anthropic-organization-id"})
# What a client may say to upstream besides its body: the API's own request
# headers and the SDKs' harmless metadata. Everything else stays here, such
# as anthropic-workspace-id (which would let a client pick another workspace
# of the organisation's key), cookies, forwarding and credential headers.
_UP_ALLOWED = frozenset({"content-type", "accept", "anthropic-version", "anthropic-beta", "user-agent", "x-app"})
_UP_ALLOWED_PREFIXES = ("x-stainless-",)
_ORG_PREFIXES = ("anthropic-ratelimit-",)


def _refuse(message: str) -> GatewayError:
    return GatewayError("authentication_error", message)


def presented_key(headers: CIMultiDictProxy[str]) -> str:
    """The one client key of a request, or a 401.

    Accepted: ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (or
    both, carrying the same key, as an SDK given both settings sends).
    Refused: a repeated header, two different keys, another scheme, and any
    value that is not exactly a gateway key (whitespace, control or
    non-ASCII characters anywhere): nothing is stripped or guessed.
    """
    api_keys = headers.getall("x-api-key", [])
    auths = headers.getall("authorization", [])
    if len(api_keys) > 1 or len(auths) > 1:
        raise _refuse("The key header is repeated; send the key once, in x-api-key or Authorization: Bearer")
    found: list[str] = list(api_keys)
    if auths:
        scheme, space, value = auths[0].partition(" ")
        if scheme.lower() != "bearer" or not space:
            raise _refuse("Authorization must be 'Bearer <key>'")
        found.append(value)
    if not found:
        raise _refuse("x-api-key header is required")
    if len(found) == 2 and found[0] != found[1]:
        raise _refuse("x-api-key and Authorization carry different keys; send one key")
    if KEY_RE.fullmatch(found[0]) is None:
        raise _refuse("invalid x-api-key")
    return found[0]


def connection_named(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names listed in ``Connection:``: they belong to this hop only (RFC 9110 7.6.1)."""
    names: set[str] = set()
    for value in headers.getall("connection", []):
        names.update(n.strip().lower() for n in value.split(",") if n.strip())
    return frozenset(names)


def request_headers_up(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The client's headers that go upstream: the allowlist, minus what ``Connection`` names."""
    hop = connection_named(headers)
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if (lower in _UP_ALLOWED or lower.startswith(_UP_ALLOWED_PREFIXES)) and lower not in hop:
            # A repeated header is one list (RFC 9110 5.3): keep every value, as the scope check saw them.
            out[lower] = f"{out[lower]}, {value}" if lower in out else value
    return out


def check_request_encoding(headers: CIMultiDictProxy[str]) -> None:
    """A compressed request body would pass the filters unread: 415 (the gateway does not decode it)."""
    encodings = [e.strip().lower() for v in headers.getall("content-encoding", []) for e in v.split(",")]
    if any(e and e != "identity" for e in encodings):
        raise GatewayError(
            "invalid_request_error",
            "Content-Encoding on a request body is not supported by this gateway; send the body uncompressed",
            status=415,
        )


def is_org_header(name: str) -> bool:
    lower = name.lower()
    return lower in _ORG_HEADERS or lower.startswith(_ORG_PREFIXES)


@functools.lru_cache(maxsize=8)
def _gone(drop: frozenset[str]) -> frozenset[str]:
    return HOP_BY_HOP | drop


def response_headers(
    upstream: CIMultiDictProxy[str], drop: frozenset[str], own: Mapping[str, str]
) -> dict[str, str]:
    """What goes back to the client: upstream's headers minus hop-by-hop, ``drop`` (lower-case),
    the ones upstream's ``Connection`` names, and the organisation's, plus ``own``."""
    gone = _gone(drop)
    if "connection" in upstream:
        gone = gone | connection_named(upstream)
    # Runs on every answer: the organisation's headers tested inline (as is_org_header).
    out = {
        k: v for k, v in upstream.items()
        if (lk := k.lower()) not in gone and lk not in _ORG_HEADERS and not lk.startswith(_ORG_PREFIXES)
    }  # fmt: skip
    out.update(own)
    return out
