"""How many tokens a request reserves before it goes upstream: one pure function.

    reservation_tokens(body_tokens, references(doc), file_tokens, limits) -> tokens

``body_tokens`` is what inspection.py already works out (the body's size
estimate plus every ``max_tokens``); this module adds what upstream bills
as input although the body only points at it:

* every ``file_id`` anywhere in the body (documents, images, container
  uploads, tool results, batch requests, fields nobody knows yet), once per
  occurrence, at the estimate recorded when the file was uploaded
  (filetokens.py); an id with no recorded estimate (uploaded before the
  gateway kept them) at :data:`filetokens.UNKNOWN_FILE_TOKENS`;
* every URL source (an object ``{"type": "url", "url": ...}``: document and
  image sources, and MCP servers, whose tool results are input too) at
  ``limits.url_source_tokens``;
* every server tool that bills what it brings back as input (web search,
  web fetch): its ``max_uses`` (or ``limits.server_tool_default_uses``) x
  ``limits.server_tool_use_tokens``, or x web fetch's own
  ``max_content_tokens`` when it sets one. A tool sent without those bounds
  gets the reserved ones written in (:func:`bound_server_tools`), so
  upstream cannot run past what was reserved.

Nothing here touches gateway state, so a shared admission tier (Redis) can
call the same function; the settle step is :func:`metering.charge` for
messages and :func:`batchsettle.batch_usage` for batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from claudegate_gateway.filetokens import UNKNOWN_FILE_TOKENS

_SERVER_TOOL = re.compile(r"^(web_search|web_fetch)_[0-9]{8}$")


@dataclass(frozen=True)
class ReservationLimits:
    """The documented ceilings (gateway.yaml ``limits``; deploy.yaml ``limits.reservations``)."""

    url_source_tokens: int = 100_000
    server_tool_use_tokens: int = 25_000
    server_tool_default_uses: int = 10


@dataclass
class References:
    """What a body points at that upstream bills as input (picklable: made in the inspection worker)."""

    files: dict[str, int] = field(default_factory=dict)  # file id -> occurrences
    url_sources: int = 0
    # One (max_uses or None, per-use token cap or None) per server tool definition.
    server_tools: list[tuple[int | None, int | None]] = field(default_factory=list)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def references(doc: Any) -> References:
    """Walk the whole body (iteratively: depth cannot overflow) for referenced content."""
    found = References()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            value = node.get("file_id")
            if isinstance(value, str):
                found.files[value] = found.files.get(value, 0) + 1
            kind = node.get("type")
            if kind == "url" and isinstance(node.get("url"), str):
                found.url_sources += 1
            elif isinstance(kind, str) and _SERVER_TOOL.match(kind):
                # Only web fetch has max_content_tokens; on a web search it bounds nothing
                # upstream, so it must not lower what the search's results are reserved at.
                per_use = _positive_int(node.get("max_content_tokens")) if kind.startswith("web_fetch") else None
                found.server_tools.append((_positive_int(node.get("max_uses")), per_use))
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return found


def bound_server_tools(doc: Any, limits: ReservationLimits) -> bool:
    """Give every web search / web fetch tool without its own bounds the ones it was reserved at.

    A tool with no ``max_uses`` could search more often than the reservation
    assumed, and a web fetch with no ``max_content_tokens`` could bring back
    a whole book: the gateway writes the reserved bounds into the request,
    so upstream itself enforces them. True when the document was changed.
    """
    changed = False
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and _SERVER_TOOL.match(kind):
                if _positive_int(node.get("max_uses")) is None:
                    node["max_uses"] = limits.server_tool_default_uses
                    changed = True
                if kind.startswith("web_fetch") and _positive_int(node.get("max_content_tokens")) is None:
                    node["max_content_tokens"] = limits.server_tool_use_tokens
                    changed = True
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return changed


def referenced_tokens(refs: References, file_tokens: Mapping[str, int], limits: ReservationLimits) -> int:
    """The input tokens the referenced content may be billed at."""
    total = 0
    for file_id, count in refs.files.items():
        total += count * file_tokens.get(file_id, UNKNOWN_FILE_TOKENS)
    total += refs.url_sources * limits.url_source_tokens
    for max_uses, per_use in refs.server_tools:
        uses = max_uses if max_uses is not None else limits.server_tool_default_uses
        total += uses * (per_use if per_use is not None else limits.server_tool_use_tokens)
    return total


def reservation_tokens(
    body_tokens: int, refs: References, file_tokens: Mapping[str, int], limits: ReservationLimits
) -> int:
    """Tokens to reserve for one request: its own estimate plus everything it references."""
    return body_tokens + referenced_tokens(refs, file_tokens, limits)
