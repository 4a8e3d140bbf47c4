"""Backup files made in the test: a one-client keystore, and the archive a backup seals (hostile ones too)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

from claudegate.backup import seal
from claudegate.redact import Secret

__all__ = ["bundle", "keystore", "write_backup_file"]


def keystore() -> bytes:
    """A SQLite keystore with one client, team-a, as the gateway's snapshot would be."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE clients (name TEXT)")
    db.execute("INSERT INTO clients VALUES ('team-a')")
    db.commit()
    return bytes(db.serialize())


def bundle(members: dict[str, bytes], *, links: tuple[str, ...] = (), **manifest: Any) -> bytes:
    """The gzip tar a backup seals: a manifest with the members' checksums, the members, and ``links``
    (symlinks to /etc/shadow, which a restore must refuse)."""
    manifest = {"format": 1, **manifest, "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"manifest.json": json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/shadow"
            tar.addfile(info)
    return buffer.getvalue()


def write_backup_file(path: Path, passphrase: Secret | None, *, domain: str = "old.example.com") -> Path:
    """A valid backup of ``domain`` at ``path`` (sealed with ``passphrase``, else plain)."""
    members = {"keystore.db": keystore(), "key_pepper": b"pepper\n"}
    data = bundle(members, domain=domain, created_at="2026-11-30T10:00:00Z", clients=1)
    path.write_bytes(seal(data, passphrase))
    return path
