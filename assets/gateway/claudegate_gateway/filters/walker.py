"""Collecting the strings of a request body, in document order, with where each lives."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

_VALUE, _KEY, _B64, _NUM = range(4)
_M_STR, _M_KEY, _M_B64, _M_CONTENT, _M_BLOCK, _M_SOURCE, _M_JSON, _M_TOOL, _M_SCHEMA = range(9)

_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "mcp_tool_result"})
_SKIP_TYPES = frozenset({"thinking", "redacted_thinking"})
_SOURCE_TYPES = frozenset({"base64", "text", "content", "url", "file"})
_OPAQUE_KEYS = frozenset({
    "type", "id", "tool_use_id", "signature", "data", "media_type", "cache_control",
    "citations", "encrypted_content", "encrypted_index", "file_id",
})

Path = tuple[Any, ...]


# (kind, path, text): _VALUE: the string at path; _KEY: `text` is a key of the
# dict at path; _B64: the string at path is base64 of `text`; _NUM: the int at
# path, as digits. Plain tuples: this runs for every string of every request.
_Piece = tuple[int, Path, str]


def _big_int(v: Any) -> bool:
    """An integer that could be a card number (13-19 digits)."""
    return isinstance(v, int) and not isinstance(v, bool) and 10**12 <= abs(v) < 10**20


def _collect(body: Mapping[str, Any]) -> list[_Piece]:
    """Every scannable string, in document order, with where it lives."""
    pieces: list[_Piece] = []
    add = pieces.append
    stack: list[tuple[int, Any, Path]] = []
    push = stack.append
    pop = stack.pop
    tools = body.get("tools")
    if isinstance(tools, list):
        for i in range(len(tools) - 1, -1, -1):
            push((_M_TOOL, tools[i], ("tools", i)))
    messages = body.get("messages")
    if isinstance(messages, list):
        for i in range(len(messages) - 1, -1, -1):
            msg = messages[i]
            if isinstance(msg, dict) and "content" in msg:
                push((_M_CONTENT, msg["content"], ("messages", i, "content")))
    if "system" in body:
        push((_M_CONTENT, body["system"], ("system",)))

    while stack:
        mode, node, path = pop()
        if mode == _M_BLOCK:
            if isinstance(node, dict):
                kind = node.get("type")
                if kind == "text":
                    text = node.get("text")
                    if isinstance(text, str) and text:
                        add((_VALUE, (*path, "text"), text))
                else:
                    _push_block(node, kind, path, push)
                continue
            mode = _M_CONTENT  # a bare string or list where a block was expected
        # Containers: leading simple children are taken in place (the usual
        # case, and cheaper); from the first nested one on, children are
        # pushed in reverse so the order of pieces stays document order.
        if mode == _M_CONTENT:
            if isinstance(node, str):
                if node:
                    add((_VALUE, path, node))
            elif isinstance(node, list):
                n, i = len(node), 0
                while i < n:
                    block = node[i]
                    if isinstance(block, dict) and block.get("type") == "text":
                        text = block.get("text")
                        if isinstance(text, str) and text:
                            add((_VALUE, (*path, i, "text"), text))
                    elif isinstance(block, str):
                        if block:
                            add((_VALUE, (*path, i), block))
                    else:
                        break
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    push((_M_BLOCK, node[j], (*path, j)))
        elif mode == _M_JSON:
            if isinstance(node, str):
                if node:
                    add((_VALUE, path, node))
            elif isinstance(node, dict):
                items = list(node.items())
                n, i = len(items), 0
                while i < n:
                    k, v = items[i]
                    if isinstance(v, (dict, list)):
                        break
                    if isinstance(k, str) and k:
                        add((_KEY, path, k))
                    if isinstance(v, str):
                        if v:
                            add((_VALUE, (*path, k), v))
                    elif _big_int(v):
                        add((_NUM, (*path, k), str(v)))
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    k, v = items[j]
                    push((_M_JSON, v, (*path, k)))
                    if isinstance(k, str) and k:
                        push((_M_KEY, k, path))
            elif isinstance(node, list):
                n, i = len(node), 0
                while i < n:
                    v = node[i]
                    if isinstance(v, (dict, list)):
                        break
                    if isinstance(v, str):
                        if v:
                            add((_VALUE, (*path, i), v))
                    elif _big_int(v):
                        add((_NUM, (*path, i), str(v)))
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    push((_M_JSON, node[j], (*path, j)))
            elif _big_int(node):
                add((_NUM, path, str(node)))
        elif mode == _M_STR:
            if isinstance(node, str) and node:
                add((_VALUE, path, node))
        elif mode == _M_KEY:
            add((_KEY, path, node))
        elif mode == _M_SOURCE:
            _push_source(node, path, push)
        elif mode == _M_B64:
            try:
                raw = base64.b64decode(node)
            except (binascii.Error, ValueError):
                continue  # not base64: upstream rejects it anyway
            text = raw.decode("utf-8", "surrogateescape")
            if text:
                add((_B64, path, text))
        elif mode == _M_TOOL:
            if isinstance(node, dict):
                if "input_schema" in node:
                    push((_M_SCHEMA, node["input_schema"], (*path, "input_schema")))
                push((_M_STR, node.get("description"), (*path, "description")))
        elif mode == _M_SCHEMA:
            if isinstance(node, dict):
                for k, v in reversed(node.items()):
                    if k == "description" and isinstance(v, str):
                        push((_M_STR, v, (*path, k)))
                    elif isinstance(v, (dict, list)):
                        push((_M_SCHEMA, v, (*path, k)))
            elif isinstance(node, list):
                for i in range(len(node) - 1, -1, -1):
                    push((_M_SCHEMA, node[i], (*path, i)))
    return pieces


def _push_block(
    node: dict[Any, Any], kind: Any, path: Path, push: Callable[[tuple[int, Any, Path]], None]
) -> None:
    if not isinstance(kind, str):
        kind = None  # missing or malformed: walk its fields like an unknown type
    if kind in _TOOL_USE_TYPES:
        if "input" in node:
            push((_M_JSON, node["input"], (*path, "input")))
    elif kind in _TOOL_RESULT_TYPES:
        if "content" in node:
            push((_M_CONTENT, node["content"], (*path, "content")))
    elif kind == "document" or kind == "image":
        if kind == "document":
            push((_M_STR, node.get("context"), (*path, "context")))
            push((_M_STR, node.get("title"), (*path, "title")))
        if "source" in node:
            push((_M_SOURCE, node["source"], (*path, "source")))
    elif kind in _SKIP_TYPES:
        return
    elif kind in _SOURCE_TYPES and ("data" in node or "url" in node):
        _push_source(node, path, push)
    else:
        for k, v in reversed(list(node.items())):
            if not isinstance(k, str) or k in _OPAQUE_KEYS:
                continue
            if isinstance(v, str):
                push((_M_STR, v, (*path, k)))
            elif isinstance(v, (dict, list)):
                push((_M_BLOCK, v, (*path, k)))


def _push_source(node: Any, path: Path, push: Callable[[tuple[int, Any, Path]], None]) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "text":
        push((_M_STR, node.get("data"), (*path, "data")))
    elif kind == "base64":
        data = node.get("data")
        if node.get("media_type") == "text/plain" and isinstance(data, str):
            push((_M_B64, data, (*path, "data")))
    elif kind == "content":
        if "content" in node:
            push((_M_CONTENT, node["content"], (*path, "content")))
    elif kind == "url":
        push((_M_STR, node.get("url"), (*path, "url")))


