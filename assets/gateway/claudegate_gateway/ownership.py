"""Who owns which batch and file.

Batches and files belong to the whole Anthropic organisation behind the one
upstream key, so the gateway keeps its own record: the client that created
an object through the gateway owns it, and nobody else (no other client, and
for objects made outside the gateway, no client at all) can see, read,
cancel, delete or reference it. An id the caller does not own is answered
exactly like an id that does not exist, without asking upstream.

This module holds the record (a table in the keystore's SQLite file) and the
pure helpers the request path uses: finding ``file_id`` references in a
request body.

The record is also the index list calls are answered from: each row keeps
the object as upstream last showed it (``object``: JSON text, the answer to
its creation, refreshed by every get or cancel through the gateway and by
the batch settlement poll), and pages run over the owner's rows by
``(created_at, id)``, newest first, so a list never asks upstream and never
sees another client's objects.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, Literal

# A container (code execution's sandbox, its uploaded files and outputs) is owned by the
# client whose request made it: only that client may name it in a later request's `container`.
ObjectKind = Literal["batch", "file", "container"]

OWNERSHIP_SCHEMA = """
CREATE TABLE IF NOT EXISTS owned_objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    tokens INTEGER,
    object TEXT
);
CREATE INDEX IF NOT EXISTS owned_objects_by_owner ON owned_objects(owner, kind);
"""
# Made by migrate(), after the columns it names exist.
_PAGE_INDEX = "CREATE INDEX IF NOT EXISTS owned_objects_pages ON owned_objects(owner, kind, created_at, id)"

OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# An object as upstream showed it is a few hundred bytes; anything far larger
# is not kept (the list then shows the id and type only).
MAX_SNAPSHOT_BYTES = 16_384

# Reused names, why ``record(credential=...)``: ownership is by client *name*, and a revoked name may be
# given to someone else (``keys create`` again: the old holder's objects are disowned, its
# credentials deleted). A request of the old holder still upstream at that moment (an upload,
# a batch create, a code run's output files) must not make its object the new holder's: it is
# recorded only if the key that sent it still belongs to that name, in the same statement.
# (A rotated-out key still belongs to its client until the rotation after next drops it.)

# One row of a list page: (id, the object as last seen or None).
PageRow = tuple[str, str | None]


class Ownership:
    """The owner record, on the keystore's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def migrate(self) -> None:
        """Add the columns of later versions (``tokens``, ``object``) to a table made before them."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(owned_objects)")}
        for name, kind in (("tokens", "INTEGER"), ("object", "TEXT")):
            if name not in columns:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                    self._db.execute(f"ALTER TABLE owned_objects ADD COLUMN {name} {kind}")
        self._db.execute(_PAGE_INDEX)

    def record(
        self, kind: ObjectKind, object_id: str, owner: str, tokens: int | None = None, obj: str | None = None,
        credential: str | None = None,
    ) -> None:
        """Record an owner; ``tokens``: a file's input-token estimate per reference (filetokens.py);
        ``obj``: the object as upstream answered its creation (JSON text), for lists;
        ``credential``: the public id of the key whose request made the object: recorded
        only while that key is still one of ``owner``'s (see the note on reused names above)."""
        with self._db:
            # INSERT OR IGNORE: an id is owned by whoever created it first,
            # never taken over by a later claim.
            self._db.execute(
                "INSERT OR IGNORE INTO owned_objects(id, kind, owner, created_at, tokens, object)"
                " SELECT ?,?,?,?,?,? WHERE ? IS NULL OR EXISTS"
                " (SELECT 1 FROM credentials WHERE public_id = ? AND name = ?)",
                (object_id, kind, owner, time.time(), tokens, obj, credential, credential, owner),
            )

    def snapshot(self, kind: ObjectKind, object_id: str, obj: str) -> None:
        """Keep a newer view of an object already recorded (never creates a row: ownership is not claimed here)."""
        with self._db:
            self._db.execute("UPDATE owned_objects SET object = ? WHERE id = ? AND kind = ?", (obj, object_id, kind))

    def page(
        self, kind: ObjectKind, owner: str, cursor: str | None, backward: bool, limit: int
    ) -> list[PageRow] | None:
        """Up to ``limit`` + 1 of the owner's objects next to ``cursor``, in walking order.

        Forward (``after_id``, or no cursor): older than the cursor, newest first.
        Backward (``before_id``): newer than the cursor, nearest first (the caller
        reverses them into list order). None when the cursor is not one of the
        owner's objects. One indexed query, whatever other clients hold.
        """
        where, args = "", [owner, kind]
        if cursor is not None:
            row = self._db.execute(
                "SELECT created_at FROM owned_objects WHERE id = ? AND kind = ? AND owner = ?", (cursor, kind, owner)
            ).fetchone()
            if row is None:
                return None
            where = f" AND (created_at, id) {'>' if backward else '<'} (?, ?)"
            args += [row[0], cursor]
        order = "ASC" if backward else "DESC"
        return [
            (r[0], r[1])
            for r in self._db.execute(
                f"SELECT id, object FROM owned_objects WHERE owner = ? AND kind = ?{where}"  # noqa: S608
                f" ORDER BY created_at {order}, id {order} LIMIT ?",
                (*args, limit + 1),
            )
        ]

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


# Server tool results whose outputs are files the code execution sandbox wrote
# (``content.content``: ``{"type": "code_execution_output", "file_id": ...}``,
# ``bash_code_execution_output``); upstream made them for the request's client.
OUTPUT_FILE_RESULTS = frozenset({
    "code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
})
# At most this many output files of one response are recorded as its client's.
MAX_OUTPUT_FILES = 1000


def output_file_ids(block: Any) -> list[str]:
    """The files a code execution result block says its run wrote.

    Only the result's own structure counts (an ``*_output`` entry of the
    result's ``content`` list): an id the model wrote in text, in a tool
    input, or in the run's stdout is not an output and grants nothing.
    """
    if not isinstance(block, dict) or block.get("type") not in OUTPUT_FILE_RESULTS:
        return []
    result = block.get("content")
    outputs = result.get("content") if isinstance(result, dict) else None
    if not isinstance(outputs, list):
        return []
    found: list[str] = []
    for item in outputs:
        if not isinstance(item, dict):
            continue
        kind, file_id = item.get("type"), item.get("file_id")
        if isinstance(kind, str) and kind.endswith("_output") and isinstance(file_id, str) and OBJECT_ID.match(file_id):
            found.append(file_id)
    return found
