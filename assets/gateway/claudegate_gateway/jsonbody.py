"""Strict JSON request bodies: read one way, the way upstream reads them.

A body two parsers read differently is a way past an inspection: the
gateway would check one value and upstream act on another. So a body is
refused unless it is UTF-8, an object, without duplicate keys (Python keeps
the last, another parser may keep the first), without NaN/Infinity, and
nested at most :data:`MAX_DEPTH` levels (deeper would also end in a
RecursionError somewhere down the line).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

MAX_DEPTH = 128


class BodyError(ValueError):
    """Why a body is refused, said for the client (400 invalid_request_error)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyError(f"The request body has the key {key[:64]!r} twice in one object; give each key once")
            seen.add(key)
    return doc


def _constant(name: str) -> NoReturn:
    raise BodyError(f"The request body contains {name}, which is not valid JSON")


def depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed document, walked without recursion; stops early past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object in a request body, or :class:`BodyError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("The request body is not valid UTF-8") from None
    try:
        doc = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except RecursionError:
        raise BodyError(f"The request body is nested deeper than {MAX_DEPTH} levels") from None
    except BodyError:
        raise
    except ValueError as exc:
        raise BodyError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BodyError("The request body must be a JSON object")
    if depth(doc) > MAX_DEPTH:
        raise BodyError(f"The request body is nested deeper than {MAX_DEPTH} levels")
    return doc
