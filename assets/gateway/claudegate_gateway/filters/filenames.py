"""A file's name, as upstream shows it, through the response rules.

The files a client may download are made by the model (code execution's
outputs), and so is their name: text the model wrote, like a message's.
It reaches the client three ways besides the file's content: the file
object a get answers, the gateway's own lists (the object as upstream last
showed it), and the download's ``Content-Disposition`` header. Each is
checked here by the caller's response rules: a redact rewrites the name in
place; a block withholds it (``[WITHHELD:rule]``; a get answers the
gateway's error instead).
"""

from __future__ import annotations

from typing import Any

from claudegate_gateway.filters.response import ResponseFilter, Tally

__all__ = ["filter_disposition", "filter_file_object"]


def filter_file_object(rf: ResponseFilter, doc: Any, tally: Tally) -> bool:
    """Check a file object's ``filename`` in place; True when it changed (``tally`` says if a rule blocked)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("filename"), str):
        return False
    seen = Tally()
    name = doc["filename"]
    channel = rf.channel("text", seen)
    new = channel.feed(name) + channel.flush()
    _merge(tally, seen)
    if seen.blocked is not None:
        doc["filename"] = f"[WITHHELD:{seen.blocked.name}]"
        return True
    if new != name:
        doc["filename"] = new
        return True
    return False


def filter_disposition(rf: ResponseFilter, value: str, tally: Tally) -> str | None:
    """A ``Content-Disposition`` header value checked as text: itself, or None (dropped) when a rule matched.

    The header quotes the name in several spellings (``filename=``, RFC 5987
    ``filename*=``, percent-encoded); rewriting one could leave another, so
    a match drops the header (the client names the file itself).
    """
    from urllib.parse import unquote

    seen = Tally()
    channel = rf.channel("text", seen)
    channel.feed(unquote(value, errors="surrogateescape"))
    channel.flush()
    _merge(tally, seen)
    return None if any(seen.rules[name].action != "log" for name in seen.counts) else value


def _merge(into: Tally, seen: Tally) -> None:
    for name, count in seen.counts.items():
        for _ in range(count):
            into.add(seen.rules[name])
