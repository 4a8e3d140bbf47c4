"""A small, valid backup file written in the test (a one-client keystore and a pepper), sealed or plain."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path

from claudegate.backup import seal
from claudegate.redact import Secret

__all__ = ["write_backup_file"]


def write_backup_file(path: Path, passphrase: Secret | None, *, domain: str = "old.example.com") -> Path:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE clients (name TEXT)")
    db.execute("INSERT INTO clients VALUES ('team-a')")
    db.commit()
    members = {"keystore.db": bytes(db.serialize()), "key_pepper": b"pepper\n"}
    manifest = {
        "format": 1, "domain": domain, "created_at": "2026-11-30T10:00:00Z", "clients": 1,
        "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in members.items()},
    }  # fmt: skip
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"manifest.json": json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(seal(buffer.getvalue(), passphrase))
    return path
