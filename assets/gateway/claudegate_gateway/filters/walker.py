"""Collecting the strings of a request body, in document order, with where each lives."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

# _FIXED / _FIXED_KEY: a value / dict key that cannot be rewritten without
# breaking the request (a tool name that tool_use blocks and tool_choice
# refer to, a schema's property names and enum values, a batch custom_id):
# scanned like the others, but a redact verdict on one blocks the request.
_VALUE, _KEY, _B64, _NUM, _FIXED, _FIXED_KEY = range(6)
_KEY_KINDS = frozenset({_KEY, _FIXED_KEY})
_FIXED_KINDS = frozenset({_FIXED, _FIXED_KEY})
_M_STR, _M_KEY, _M_B64, _M_CONTENT, _M_BLOCK, _M_SOURCE, _M_JSON, _M_TOOL, _M_SCHEMA, _M_FIXED = range(10)

_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "mcp_tool_result"})
_SKIP_TYPES = frozenset({"thinking", "redacted_thinking"})
# Top-level request fields read by name in _collect. Everything else is
# walked whole (fail closed), numbers and booleans included.
_ROLES = ("user", "assistant")
_TOP_FIXED = frozenset({
    "model", "tool_choice", "max_tokens", "stream", "temperature", "top_p", "top_k", "thinking", "service_tier",
})
_TOP_BY_NAME = frozenset({"system", "messages", "tools", "metadata", *_TOP_FIXED})
# A tool definition's fields read by name (name, description, schema) or not text at all.
_TOOL_SHAPE_KEYS = frozenset({"name", "type", "description", "input_schema", "cache_control"})
# Schema strings that are prose: redacted in place. Every other schema string
# (enum and const values, patterns, formats, defaults) and every key
# (property names, which `required` and tool inputs name) is fixed.
_SCHEMA_PROSE = frozenset({"description", "title"})
_SOURCE_TYPES = frozenset({"base64", "text", "content", "url", "file"})
_OPAQUE_KEYS = frozenset({
    "type", "id", "tool_use_id", "signature", "data", "media_type", "cache_control",
    "citations", "encrypted_content", "encrypted_index", "file_id",
})

# Content block types of the Messages API. A block of another type is
# refused by upstream, but only after upstream has read it: its type and
# every field (the opaque ones included) are scanned, fixed.
_KNOWN_BLOCK_TYPES = frozenset({
    "text", "image", "document", "search_result", "container_upload", *_TOOL_USE_TYPES, *_TOOL_RESULT_TYPES,
    *_SKIP_TYPES, "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "web_search_result", "web_fetch_result", "code_execution_result", "code_execution_output",
    "bash_code_execution_result", "bash_code_execution_output", "text_editor_code_execution_view_result",
    "text_editor_code_execution_create_result", "text_editor_code_execution_str_replace_result",
    "web_search_tool_result_error", "web_fetch_tool_error", "code_execution_tool_result_error",
    "bash_code_execution_tool_result_error", "text_editor_code_execution_tool_result_error",
    "tool_reference", "tool_search_tool_search_result",
})
# The fields each block type of the API has that the walker reads (or that
# are opaque by design). Any other field of such a block is not the API's:
# upstream refuses it, after reading it; it is scanned, fixed.
_BLOCK_FIELDS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "citations", "cache_control"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "image": frozenset({"type", "source", "cache_control"}),
    "document": frozenset({"type", "source", "title", "context", "citations", "cache_control"}),
    **{k: frozenset({"type", "id", "name", "server_name", "input", "cache_control"}) for k in _TOOL_USE_TYPES},
    **{k: frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"}) for k in _TOOL_RESULT_TYPES},
}
_TEXT_FAST = frozenset({"type", "text", "cache_control"})
# Ids a client chooses (upstream checks only their alphabet, which a token
# fits) and upstream quotes back in its errors: scanned, fixed.
_ID_KEYS = ("id", "tool_use_id")

Path = tuple[Any, ...]
_PADDING = re.compile(r"=+")
_NOT_B64 = re.compile(r"[^A-Za-z0-9+/=]")


# (kind, path, text): _VALUE: the string at path; _KEY: `text` is a key of the
# dict at path; _B64: the string at path is base64 of `text`; _NUM: the int at
# path, as digits. Plain tuples: this runs for every string of every request.
_Piece = tuple[int, Path, str]


def _big_int(v: Any) -> bool:
    """An integer that could be a card number (13-19 digits)."""
    return isinstance(v, int) and not isinstance(v, bool) and 10**12 <= abs(v) < 10**20


def _collect(body: Mapping[str, Any], *, fixed: bool = False) -> list[_Piece]:
    """Every scannable string, in document order, with where it lives.

    ``fixed``: the whole document is fields that cannot be rewritten (a
    batch request's ``custom_id`` and whatever sits outside ``params``).
    """
    pieces: list[_Piece] = []
    add = pieces.append
    stack: list[tuple[int, Any, Path]] = []
    push = stack.append
    pop = stack.pop
    if fixed:
        push((_M_FIXED, body, ()))
    else:
        _push_top(body, push)

    while stack:
        mode, node, path = pop()
        if mode == _M_FIXED:
            if isinstance(node, str):
                if node:
                    add((_FIXED, path, node))
            elif isinstance(node, dict):
                for k, v in reversed(list(node.items())):
                    push((_M_FIXED, v, (*path, k)))
                    if isinstance(k, str) and k:
                        push((_M_KEY, (_FIXED_KEY, k), path))
            elif isinstance(node, list):
                for i in range(len(node) - 1, -1, -1):
                    push((_M_FIXED, node[i], (*path, i)))
            elif _big_int(node):
                add((_FIXED, path, str(node)))
            continue
        if mode == _M_BLOCK:
            if isinstance(node, dict):
                kind = node.get("type")
                if kind == "text":
                    text = node.get("text")
                    if isinstance(text, str) and text:
                        add((_VALUE, (*path, "text"), text))
                    # Citations of an earlier answer are part of what the model reads.
                    cites = node.get("citations")
                    if isinstance(cites, list) and cites:
                        push((_M_JSON, cites, (*path, "citations")))
                    _push_extra(node, "text", path, push)
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
            elif isinstance(node, dict):
                push((_M_BLOCK, node, path))  # one block where a list was expected: still read
            elif isinstance(node, list):
                n, i = len(node), 0
                while i < n:
                    block = node[i]
                    if isinstance(block, dict) and block.get("type") == "text" and block.keys() <= _TEXT_FAST:
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
            if isinstance(node, tuple):
                add((node[0], path, node[1]))
            else:
                add((_KEY, path, node))
        elif mode == _M_SOURCE:
            _push_source(node, path, push)
        elif mode == _M_B64:
            text = _b64_all(node).decode("utf-8", "surrogateescape")
            if text:
                add((_B64, path, text))
        elif mode == _M_TOOL:
            if isinstance(node, dict):
                # Every other field the model may read (input_examples, a server
                # tool's settings, fields added later) is walked whole.
                for k, v in reversed(node.items()):
                    if isinstance(k, str) and k not in _TOOL_SHAPE_KEYS:
                        push((_M_JSON, v, (*path, k)))
                if "input_schema" in node:
                    push((_M_SCHEMA, node["input_schema"], (*path, "input_schema")))
                push((_M_STR, node.get("description"), (*path, "description")))
                for k in ("type", "name"):  # a server tool's type, a name tool_use blocks refer to
                    if k in node:
                        push((_M_FIXED, node[k], (*path, k)))
            else:
                push((_M_FIXED, node, path))
        elif mode == _M_SCHEMA:
            if isinstance(node, dict):
                for k, v in reversed(list(node.items())):
                    if k in _SCHEMA_PROSE and isinstance(v, str):
                        push((_M_STR, v, (*path, k)))
                    elif isinstance(v, (dict, list)):
                        push((_M_SCHEMA, v, (*path, k)))
                    else:
                        push((_M_FIXED, v, (*path, k)))
                    if isinstance(k, str) and k:
                        push((_M_KEY, (_FIXED_KEY, k), path))
            elif isinstance(node, list):
                for i in range(len(node) - 1, -1, -1):
                    push((_M_SCHEMA, node[i], (*path, i)))
            else:
                push((_M_FIXED, node, path))
    return pieces


def _push_top(body: Mapping[str, Any], push: Callable[[tuple[int, Any, Path]], None]) -> None:
    """The request's fields, pushed so they pop in document order: system, messages, tools, the rest."""
    # Fail closed: a field not read by name is walked whole. That covers
    # stop_sequences, mcp_servers (Anthropic calls each url with its
    # authorization_token), output_format / output_config (a schema the
    # model reads), container, service_tier and any field the API adds later.
    for key in reversed([k for k in body if k not in _TOP_BY_NAME]):
        push((_M_JSON, body[key], (key,)))
    # Fixed: the model name (scoped by glob, and quoted back in upstream's
    # errors), tool_choice (its name must be a tool's name) and the settings.
    for key in reversed([k for k in body if k in _TOP_FIXED]):
        push((_M_FIXED, body[key], (key,)))
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        # user_id is free text (redacted in place); other keys are not the API's.
        for k, v in reversed(list(metadata.items())):
            push((_M_STR if k == "user_id" and isinstance(v, str) else _M_FIXED, v, ("metadata", k)))
            if isinstance(k, str) and k:
                push((_M_KEY, (_FIXED_KEY, k), ("metadata",)))
    elif "metadata" in body:
        push((_M_FIXED, metadata, ("metadata",)))
    tools = body.get("tools")
    if isinstance(tools, list):
        for i in range(len(tools) - 1, -1, -1):
            push((_M_TOOL, tools[i], ("tools", i)))
    elif "tools" in body:
        push((_M_FIXED, tools, ("tools",)))
    messages = body.get("messages")
    if isinstance(messages, list):
        for i in range(len(messages) - 1, -1, -1):
            msg = messages[i]
            if isinstance(msg, dict):
                # Any other field of a message, and a role that is not one
                # of the two: fixed (upstream would quote them back). The
                # usual roles are left out so the spaced join of two
                # messages' texts is not cut by them.
                for k, v in reversed(list(msg.items())):
                    if k != "content" and not (k == "role" and v in _ROLES):
                        push((_M_FIXED, v, ("messages", i, k)))
                if "content" in msg:
                    push((_M_CONTENT, msg["content"], ("messages", i, "content")))
            else:
                push((_M_FIXED, msg, ("messages", i)))
    elif "messages" in body:
        push((_M_FIXED, messages, ("messages",)))
    if "system" in body:
        push((_M_CONTENT, body["system"], ("system",)))


def _b64_all(data: str) -> bytes:
    """Every byte any base64 decoder could read from ``data``.

    Python's lenient decoder stops at the first padding (``YQ==`` + more
    decodes to ``a``) and refuses a run with one character too many; other
    decoders read on, or drop what is left over. Each run between paddings
    is decoded on its own, characters outside the alphabet and a last lone
    character dropped, so text hidden after a padding or behind a stray
    character is scanned too (and a redaction re-encodes the whole, as one
    plain base64 string).
    """
    out: list[bytes] = []
    for run in _PADDING.split(_NOT_B64.sub("", data)):
        usable = len(run) - (len(run) % 4 == 1)
        if usable:
            out.append(base64.b64decode(run[:usable] + "=" * (-usable % 4)))
    return b"".join(out)


def _push_block(
    node: dict[Any, Any], kind: Any, path: Path, push: Callable[[tuple[int, Any, Path]], None]
) -> None:
    if not isinstance(kind, str):
        kind = None  # missing or malformed: walk its fields like an unknown type
    for k in _ID_KEYS:
        if isinstance(node.get(k), str):
            push((_M_FIXED, node[k], (*path, k)))
    if kind not in _KNOWN_BLOCK_TYPES:
        # Not the API's: everything in it reaches upstream's validator (and
        # its error message), so everything is scanned, and none rewritten.
        push((_M_FIXED, {k: v for k, v in node.items() if k not in _ID_KEYS}, path))
        return
    _push_extra(node, kind, path, push)
    if kind in _TOOL_USE_TYPES:
        if "input" in node:
            push((_M_JSON, node["input"], (*path, "input")))
        for k in ("server_name", "name"):  # must match a tool (or MCP server) by name
            if k in node:
                push((_M_FIXED, node[k], (*path, k)))
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


def _push_extra(node: dict[Any, Any], kind: str, path: Path, push: Callable[[tuple[int, Any, Path]], None]) -> None:
    """Fields a block of this API type does not have (``{"type": "text", "text": .., "x": SECRET}``): fixed."""
    fields = _BLOCK_FIELDS.get(kind)
    if fields is None or node.keys() <= fields:
        return
    for k, v in node.items():
        if k not in fields:
            push((_M_FIXED, v, (*path, k)))
            if isinstance(k, str) and k:
                push((_M_KEY, (_FIXED_KEY, k), path))
