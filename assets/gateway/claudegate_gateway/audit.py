"""The audit log: one JSON line per request.

It records who asked for what and what it cost, never a key and, by default,
no prompt text. Lines are written straight through (one write each) so a
crash loses at most the request in flight.

Bounded on every axis, because its input is partly the client's: each string
field is cut to a maximum length (a 20 MB model name is not a 20 MB line),
lists and mappings to a maximum number of items, and the file rotates by size
into a fixed number of old files (``audit.jsonl.1`` is the newest), inside the
gateway, so the container needs no logrotate.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

FIELD_CHARS = 512
MAX_ITEMS = 32
ROTATE_BYTES = 64 * 1024 * 1024
KEEP_FILES = 5
_RECHECK = 64


_SCALARS = frozenset({bool, int, float, type(None)})


def _small(record: dict[str, Any], chars: int, items: int) -> bool:
    # The common record, checked cheaply (it runs on every request): short
    # strings and scalars only, and empty lists.
    if len(record) > items:
        return False
    for key, v in record.items():
        t = type(v)
        if t is str:
            if len(v) > chars:
                return False
        elif t is list:
            if v:
                return False
        elif t not in _SCALARS or type(key) is not str or len(key) > 64:
            return False
    return True


def bounded(value: Any, chars: int = FIELD_CHARS, items: int = MAX_ITEMS, depth: int = 4) -> Any:
    """`value` with its strings, lists and mappings all cut to size (a copy when anything was cut)."""
    if isinstance(value, dict) and _small(value, chars, items):
        return value
    if isinstance(value, str):
        if len(value) <= chars:
            return value
        return value[:chars] + f"...[{len(value) - chars} more chars]"
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth <= 0:
        return "..."
    if isinstance(value, dict):
        out = {
            bounded(str(k), 64, items, 0): bounded(v, chars, items, depth - 1)
            for k, v in itertools.islice(value.items(), items)
        }
        if len(value) > items:
            out["..."] = f"{len(value) - items} more"
        return out
    if isinstance(value, (list, tuple)):
        cut = [bounded(v, chars, items, depth - 1) for v in value[:items]]
        if len(value) > items:
            cut.append(f"...[{len(value) - items} more]")
        return cut
    return bounded(str(value), chars, items, depth)


class AuditLog:
    def __init__(
        self,
        path: Path | None,
        *,
        field_chars: int = FIELD_CHARS,
        rotate_bytes: int = ROTATE_BYTES,
        keep_files: int = KEEP_FILES,
    ) -> None:
        self._fd: int | None = None
        # The file's size as last seen plus what this process wrote since: the size is
        # asked of the file (fstat) only every _RECHECK writes or when this passes the
        # bound, so another writer's lines (blue/green) make a rotation at most that late.
        self._size = 0
        self._unchecked = 0
        self._path = path
        self.field_chars = field_chars
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        assert self._path is not None
        # O_APPEND keeps whole lines intact even with several writers.
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size, self._unchecked = os.fstat(self._fd).st_size, 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        line = json.dumps(bounded(record, self.field_chars), separators=(",", ":"), default=str) + "\n"
        data = line.encode()
        self._unchecked += 1
        if self._size + len(data) > self.rotate_bytes or self._unchecked >= _RECHECK:
            self._size, self._unchecked = os.fstat(self._fd).st_size, 0
            if self._size + len(data) > self.rotate_bytes:
                self._rotate()
        os.write(self._fd, data)
        self._size += len(data)

    def _rotate(self) -> None:
        assert self._path is not None and self._fd is not None
        mine = os.fstat(self._fd)
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            # Another gateway process (blue/green) rotated already: follow it.
            os.close(self._fd)
            self._open()
            return
        if self.keep_files > 0:
            for n in range(self.keep_files - 1, 0, -1):
                older = self._path.with_name(f"{self._path.name}.{n}")
                if older.exists():
                    os.replace(older, self._path.with_name(f"{self._path.name}.{n + 1}"))
            os.replace(self._path, self._path.with_name(f"{self._path.name}.1"))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        os.close(self._fd)
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
