"""The tool's own known_hosts file: read like OpenSSH, written only by appending.

Format (``sshd(8)`` "SSH_KNOWN_HOSTS FILE FORMAT")::

    [@revoked|@cert-authority] host-patterns key-type base64-key [comment]

- host patterns are comma-separated names, ``[host]:port`` for a port other
  than 22, with ``*``/``?`` wildcards and ``!`` negation, or one hashed entry
  ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``;
- ``#`` comments and blank lines are kept untouched.

We never rewrite the file (paramiko's ``HostKeys.save`` does, and drops
lines it does not understand -- pyinfra #1209): a newly accepted key is one
line appended under an exclusive lock.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KnownHostEntry",
    "KnownHostsFile",
    "fingerprint_sha256",
    "host_id",
    "normalize_fingerprint",
]


def host_id(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``host``, or ``[host]:port`` off port 22."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint_sha256(key_blob: bytes) -> str:
    """``SHA256:<unpadded base64>``, exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


_FP_RE = re.compile(r"^SHA256:([A-Za-z0-9+/]{43})=?$")


def normalize_fingerprint(value: str) -> str | None:
    """A user-typed ``SHA256:...`` fingerprint in canonical form, or None if it is not one."""
    match = _FP_RE.match(value.strip())
    return f"SHA256:{match.group(1)}" if match else None


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _hashed_matches(field: str, name: str) -> bool:
    parts = field.split("|")
    # "|1|salt|hash" splits into ["", "1", salt, hash]
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    actual = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class KnownHostEntry:
    """One key line of a known_hosts file (comments and blanks are not entries)."""

    path: Path
    line: int  # 1-based
    marker: str | None  # "@revoked", "@cert-authority" or None
    hosts: str  # the raw host-pattern field
    key_type: str
    key_base64: str

    @property
    def key_blob(self) -> bytes:
        try:
            return base64.b64decode(self.key_base64, validate=True)
        except (binascii.Error, ValueError):
            return b""

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.key_blob)

    def matches(self, name: str) -> bool:
        """Does this entry apply to ``name`` (as made by :func:`host_id`)?"""
        if self.hosts.startswith("|"):
            return _hashed_matches(self.hosts, name)
        positive = False
        for pattern in self.hosts.split(","):
            if pattern.startswith("!"):
                if _pattern_matches(pattern[1:], name):
                    return False  # a matching negation wins, as in OpenSSH
            elif _pattern_matches(pattern, name):
                positive = True
        return positive


class KnownHostsFile:
    """A known_hosts file we read fully and only ever append to."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def entries(self) -> list[KnownHostEntry]:
        """All key lines; a missing file has none. Unparseable lines are skipped (and kept)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        found: list[KnownHostEntry] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            marker = None
            if fields[0].startswith("@"):
                marker, fields = fields[0], fields[1:]
            if len(fields) < 3:
                continue
            found.append(KnownHostEntry(self.path, number, marker, fields[0], fields[1], fields[2]))
        return found

    def lookup(self, host: str, port: int) -> list[KnownHostEntry]:
        """Entries for this host and port (``@cert-authority`` lines are ignored: no CA support)."""
        name = host_id(host, port)
        return [e for e in self.entries() if e.marker != "@cert-authority" and e.matches(name)]

    def append(self, host: str, port: int, key_type: str, key_base64: str, *, hashed: bool = False) -> int:
        """Append one line for this host and key; return its 1-based line number.

        Creates the file (0600) and its directory (0700) if needed. Existing
        content is never rewritten; a missing final newline is supplied.
        """
        name = host_id(host, port)
        if hashed:
            salt = os.urandom(20)
            digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
            name = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
        line = f"{name} {key_type} {key_base64}\n".encode()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
            count = 0
            offset = 0
            while chunk := os.pread(fd, 1 << 16, offset):
                count += chunk.count(b"\n")
                offset += len(chunk)
        finally:
            os.close(fd)
        return count
