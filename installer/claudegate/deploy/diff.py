"""Unified diffs of rendered files against what the host has, for plans."""

from __future__ import annotations

import difflib

__all__ = ["file_diff"]

#: Files bigger than this are summarised, not diffed line by line.
MAX_DIFF_BYTES = 256 * 1024


def file_diff(path: str, old: bytes | None, new: bytes | None) -> str:
    """``diff -u`` style text from ``old`` (on the host; None = absent) to ``new`` (None = removed).

    Empty when they are equal.
    """
    if old == new:
        return ""
    for data in (old, new):
        if data is not None and (len(data) > MAX_DIFF_BYTES or b"\0" in data):
            return f"Binary or large file {path} differs\n"
    old_lines = (old or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    new_lines = (new or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    diff = difflib.unified_diff(
        old_lines,
        new_lines,
        fromfile=f"host/{path}" if old is not None else "/dev/null",
        tofile=f"new/{path}" if new is not None else "/dev/null",
    )
    out = []
    for line in diff:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
