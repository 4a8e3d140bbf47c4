"""Writing the operator's secret files: one way, used by every writer on this machine.

The Anthropic key the wizard or the session saves, the client keys a deploy
issues, the internal CA's key, the wizard's draft and a backup all go
through :func:`write_private`:

- **0600 from the first byte**: the data goes into a new temporary file
  (``mkstemp``: ``O_CREAT | O_EXCL``, so never an existing file or a
  symlink planted under its name), whose mode is set with ``fchmod`` before
  anything is written, whatever the umask;
- **atomic**: the temporary file is flushed to disk and renamed over the
  target, so a reader sees the old file or the new one, never a half;
- **never through a symlink**: the rename replaces a symlink at the target
  instead of writing where it points; ``exclusive=True`` (a backup without
  ``--force``) refuses any existing entry, a dangling symlink included,
  by ``link``-ing the finished file into place;
- the directory is created 0700 when missing (an existing one keeps its mode).

Files written on the *target* go through the connector (``put_file``),
which has the same rules with an owner and a mode of its own.

This module imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["PRIVATE_MODE", "write_private"]

PRIVATE_MODE = 0o600


def write_private(path: Path | str, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` (mode 0600), atomically; FileExistsError when ``exclusive`` and it exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), PRIVATE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, path, follow_symlinks=False)  # fails on any existing entry
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
