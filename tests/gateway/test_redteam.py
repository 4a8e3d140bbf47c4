"""Red-team findings against the merged route table and filters, one test each.

Each test is an attack that got through the merged code; it passes only
with the fix committed alongside it. Secret-shaped values are assembled at
run time so this file holds none for secret scanners to trip on.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from claudegate_gateway.filters import FilterPolicy

# An Anthropic-shaped key, built here so the source holds none.
SECRET = "sk-ant-api03-" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0" * 3 + "AA"
BLOCK = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "block", "direction": "both"}])
REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}])


def _message(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": content}], **extra}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- request direction --------------------------------------------------------


def test_base64_text_document_secret_after_padding_is_found() -> None:
    """Attack: a text/plain base64 document whose data is b64("hi") + b64(secret).

    Python's lenient decoder stops at the first padding, so the filter saw
    only "hi" and the secret went upstream; a decoder that reads on past the
    padding (many do) hands the model the secret.
    """
    data = _b64(b"hi") + _b64(f"key {SECRET} end".encode())
    assert "=" in data[:4]  # the padding really sits before the secret
    doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
    assert BLOCK.apply(doc).blocked is not None
    redacted = REDACT.apply(doc)
    assert redacted.changed
    out = redacted.body["messages"][0]["content"][0]["source"]["data"]
    assert SECRET.encode() not in base64.b64decode(out)
    assert base64.b64decode(out).startswith(b"hi")


def test_base64_text_document_secret_before_a_stray_character_is_found() -> None:
    """Attack: b64(secret) + "A": one character too many made the whole string undecodable, so unscanned."""
    plain = _b64(f"key {SECRET} ends".encode())
    assert "=" not in plain  # a length without padding: the stray character makes the count 1 mod 4
    for data in (plain + "A", plain + "=A"):
        doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
        assert BLOCK.apply(doc).blocked is not None, data[-6:]


def test_base64_text_document_with_line_breaks_still_scanned() -> None:
    """MIME-style base64 (line breaks every 76 characters) is read whole, as before."""
    raw = _b64(f"{'x' * 100} {SECRET} end".encode())
    data = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))
    doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
    assert BLOCK.apply(doc).blocked is not None


def test_mcp_server_url_and_token_are_scanned() -> None:
    """Attack: a secret in mcp_servers[].url or authorization_token.

    Both leave the organisation (Anthropic calls that URL with that token);
    issue #7 lists them as filtered, and the walker never looked at them.
    """
    for server in (
        {"type": "url", "url": f"https://example.invalid/sse?k={SECRET}", "name": "x"},
        {"type": "url", "url": "https://example.invalid/sse", "name": "x", "authorization_token": SECRET},
        {"type": "url", "url": "https://example.invalid/sse", "name": "x",
         "tool_configuration": {"allowed_tools": [SECRET]}},
    ):
        doc = _message("hello", mcp_servers=[server])
        assert BLOCK.apply(doc).blocked is not None, server
        redacted = REDACT.apply(doc)
        assert redacted.changed and SECRET not in json.dumps(redacted.body), server
        assert doc["mcp_servers"][0] == server  # apply never mutates its input
