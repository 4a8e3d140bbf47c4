"""What an Anthropic API key looks like, checked where a person pastes one (wizard, secret question).

A pasted ``.env`` line (``ANTHROPIC_API_KEY=sk-ant-...``) or a stray word is
caught when it is typed, not minutes later by the smoke test. The messages
never quote the value: it may be a real key.
"""

from __future__ import annotations

import re

__all__ = ["KEY_PREFIX", "key_problem"]

#: Every Anthropic API key starts with this (``sk-ant-api03-...``, ``sk-ant-admin01-...``).
KEY_PREFIX = "sk-ant-"
_KEY_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def key_problem(value: str) -> str | None:
    """Why ``value`` cannot be an Anthropic API key, or None."""
    if not value:
        return "is empty"
    if any(ch.isspace() for ch in value) or not value.isascii():
        return "contains spaces or non-ASCII characters; paste only the key"
    if "=" in value:
        return "looks like a line from an environment file (NAME=value); paste only what follows the ="
    if not value.startswith(KEY_PREFIX):
        return f"is not an Anthropic API key (those start with {KEY_PREFIX}); copy one from the Anthropic Console"
    if not _KEY_CHARS.fullmatch(value):
        return "has characters an Anthropic API key does not have; paste only the key"
    return None
