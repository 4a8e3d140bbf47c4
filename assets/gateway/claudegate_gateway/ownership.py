"""Who owns which batch and file.

Batches and files belong to the whole Anthropic organisation behind the one
upstream key, so the gateway keeps its own record: the client that created
an object through the gateway owns it, and nobody else (no other client, and
for objects made outside the gateway, no client at all) can see, read,
cancel, delete or reference it. An id the caller does not own is answered
exactly like an id that does not exist, without asking upstream.

This module holds the record (a table in the keystore's SQLite file) and the
pure helpers the request path uses: finding ``file_id`` references in a
request body and filtering a list page down to the caller's objects.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

ObjectKind = Literal["batch", "file"]

OWNERSHIP_SCHEMA = """
CREATE TABLE IF NOT EXISTS owned_objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    tokens INTEGER
);
CREATE INDEX IF NOT EXISTS owned_objects_by_owner ON owned_objects(owner, kind);
"""

OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# A list scans at most this many upstream pages to fill one filtered page.
MAX_SCAN_PAGES = 10
SCAN_PAGE_SIZE = 1000


class Ownership:
    """The owner record, on the keystore's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def migrate(self) -> None:
        """Add the ``tokens`` column to a table made before files' estimates were kept."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(owned_objects)")}
        if "tokens" not in columns:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                self._db.execute("ALTER TABLE owned_objects ADD COLUMN tokens INTEGER")

    def record(self, kind: ObjectKind, object_id: str, owner: str, tokens: int | None = None) -> None:
        """Record an owner; ``tokens``: a file's input-token estimate per reference (filetokens.py)."""
        with self._db:
            # INSERT OR IGNORE: an id is owned by whoever created it first,
            # never taken over by a later claim.
            self._db.execute(
                "INSERT OR IGNORE INTO owned_objects(id, kind, owner, created_at, tokens) VALUES (?,?,?,?,?)",
                (object_id, kind, owner, time.time(), tokens),
            )

    def file_tokens(self, owner: str, ids: list[str]) -> dict[str, int]:
        """The recorded estimates of the owner's files among `ids` (files without one are left out)."""
        found: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for object_id, tokens in self._db.execute(
                f"SELECT id, tokens FROM owned_objects WHERE kind = 'file' AND owner = ? AND id IN ({marks})",  # noqa: S608
                (owner, *chunk),
            ):
                if isinstance(tokens, int):
                    found[object_id] = tokens
        return found

    def owns(self, kind: ObjectKind, object_id: str, owner: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM owned_objects WHERE id = ? AND kind = ? AND owner = ?", (object_id, kind, owner)
        ).fetchone()
        return row is not None

    def owned(self, kind: ObjectKind, owner: str, ids: list[str]) -> set[str]:
        """Which of `ids` the owner owns (one query per page, not per id)."""
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self._db.execute(
                    f"SELECT id FROM owned_objects WHERE kind = ? AND owner = ? AND id IN ({marks})",  # noqa: S608
                    (kind, owner, *chunk),
                )
            )
        return found

    def forget(self, kind: ObjectKind, object_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM owned_objects WHERE id = ? AND kind = ?", (object_id, kind))

    def disown_all(self, owner: str) -> None:
        """Called inside the keystore's transaction when a revoked name is reused."""
        self._db.execute("DELETE FROM owned_objects WHERE owner = ?", (owner,))


def file_ids(doc: Any) -> Iterator[Any]:
    """Every ``file_id`` value anywhere in a request body.

    Deliberately not limited to the block types that take one today
    (document, image, container_upload; inside tool_result content; inside
    batch requests): a reference the walker does not know is a reference
    that would slip through. Iterative, so depth cannot overflow the stack.
    """
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "file_id":
                    yield value
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))


MAX_FILE_REFS = 1000


def referenced_file_ids(doc: Any) -> list[str]:
    """The distinct file ids a body references; ValueError for a malformed one."""
    seen: dict[str, None] = {}
    for value in file_ids(doc):
        if not isinstance(value, str) or not OBJECT_ID.match(value):
            raise ValueError("file_id: must be a file id of letters, digits, '_' and '-'")
        seen[value] = None
        if len(seen) > MAX_FILE_REFS:
            raise ValueError(f"file_id: more than {MAX_FILE_REFS} files in one request")
    return list(seen)


@dataclass
class PageScan:
    """Fill one page of the caller's objects from upstream pages of everyone's.

    The caller asked for ``limit`` objects after ``after_id`` (or before
    ``before_id``). Upstream pages are fetched one by one from that cursor;
    owned objects are kept in order until ``limit`` + 1 are found (the extra
    one proves ``has_more``) or upstream has no more, within ``MAX_SCAN_PAGES``.
    """

    limit: int
    backward: bool  # paging with before_id: pages run towards newer objects
    found: list[dict[str, Any]] = field(default_factory=list)
    upstream_more: bool = True
    scanned_last: str | None = None
    pages: int = 0
    seal: Callable[[str], str] = field(default=lambda position: position, repr=False)

    def take(self, page: dict[str, Any], owned: set[str]) -> str | None:
        """Take one upstream page; return the cursor for the next fetch, or None when done."""
        self.pages += 1
        data = [d for d in page.get("data") or [] if isinstance(d, dict) and isinstance(d.get("id"), str)]
        self.upstream_more = bool(page.get("has_more")) and bool(data)
        ordered = list(reversed(data)) if self.backward else data
        for item in ordered:
            if item["id"] in owned:
                self.found.append(item)
                if len(self.found) > self.limit:
                    return None
        if ordered:
            self.scanned_last = ordered[-1]["id"]
        if not self.upstream_more or self.pages >= MAX_SCAN_PAGES:
            return None
        return self.scanned_last

    def result(self) -> dict[str, Any]:
        data = self.found[: self.limit]
        has_more = len(self.found) > self.limit or self.upstream_more
        if self.backward:
            data.reverse()
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        if not data and has_more and self.scanned_last is not None:
            # The scan bound was reached with none of the caller's objects:
            # the cursor is the scan position, sealed (see objects.py) so
            # that it names no other client's object.
            first = last = self.seal(self.scanned_last)
        return {"data": data, "has_more": has_more, "first_id": first, "last_id": last}
