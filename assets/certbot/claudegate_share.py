"""One ACME certificate for several hosts: sealed into PostgreSQL by the issuer, installed by the others.

With ``hosts:`` and ``tls.mode: acme``, the first host (the *issuer*) holds
the fleet's only ACME account and runs certbot; every other host (a
*follower*) relays HTTP-01 challenges to it (nginx) and installs what the
issuer publishes here. The state tier carries the certificate, never the
key in clear:

- ``tls_certificates`` (the gateway's schema, migration 4) holds one row a
  certificate: its full chain in clear, its private key sealed with
  AES-256-GCM under the fleet's share key (a 0600 file on every host, made
  on the operator's side; PostgreSQL never sees it). The associated data
  binds the seal to the domain, the serial and the SHA-256 of the chain, so
  a row whose certificate was swapped does not open.
- A follower takes the newest row that passes every check -- the seal
  opens, the key is the certificate's, the certificate names the domain and
  has not expired, and it is not older than the newest one this host ever
  installed (a high-water mark kept on the host: an old row written back
  cannot roll a host back) -- installs it and says what it refused.

Anyone who can write the table can therefore only withhold certificates,
never make a host serve one of their choosing. Used by the renewer loop
(claudegate_renew.py, every round) and by the deploy (one-shot runs of this
file: ``publish`` on the issuer, ``sync`` on a follower).

Only the standard library, ``cryptography`` and ``psycopg2`` (Debian's
``python3-psycopg2`` in the certbot image; imported only to talk to the
database, so the checks run anywhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
AAD_LABEL = b"claudegate-tls-share-v1"
#: Rows a follower looks at, newest first.
CANDIDATES = 8
#: The host's record of the newest certificate it installed (rollback guard).
INSTALLED_FILE = "installed.json"
#: The issuer's record of the last certificate it shared (the deploy's plan reads it).
PUBLISHED_FILE = "published.json"
#: Exit codes of the one-shot commands.
EXIT_INSTALLED = 0
EXIT_UNCHANGED = 3
EXIT_NOTHING = 4
EXIT_FAILED = 2

PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


class ShareError(Exception):
    """A row refused, or the state tier not reachable: the message says which and why."""


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def not_before(cert: x509.Certificate) -> dt.datetime:
    return getattr(cert, "not_valid_before_utc", None) or _utc(cert.not_valid_before)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return getattr(cert, "not_valid_after_utc", None) or _utc(cert.not_valid_after)


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def aad(domain: str, serial: str, fullchain: bytes) -> bytes:
    return b"\0".join((AAD_LABEL, domain.encode(), serial.encode(), hashlib.sha256(fullchain).hexdigest().encode()))


def load_share_key(path: Path) -> bytes:
    """The fleet's share key: 32 random bytes, hex in a 0600 file."""
    raw = path.read_text().strip()
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise ShareError(f"{path} is not a hex key") from None
    if len(key) != KEY_BYTES:
        raise ShareError(f"{path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def leaf(fullchain: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(fullchain)


def chain_of(fullchain: bytes) -> bytes:
    """The intermediates: everything after the leaf (certbot's chain.pem)."""
    second = fullchain.find(PEM_BEGIN, fullchain.find(PEM_BEGIN) + 1)
    return fullchain[second:] if second > 0 else b""


@dataclass(frozen=True)
class Sealed:
    domain: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fullchain: bytes
    nonce: bytes
    sealed_key: bytes


def seal(domain: str, fullchain: bytes, key_pem: bytes, share_key: bytes) -> Sealed:
    cert = leaf(fullchain)
    serial = serial_hex(cert)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(share_key).encrypt(nonce, key_pem, aad(domain, serial, fullchain))
    return Sealed(domain, serial, not_before(cert), not_after(cert), fullchain, nonce, sealed)


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {name.lower() for name in san.get_values_for_type(x509.DNSName)}


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def open_row(
    row: Sealed, *, domain: str, share_key: bytes, newest_installed: dt.datetime | None, now: dt.datetime
) -> tuple[x509.Certificate, bytes]:
    """The certificate and its key (PEM) if ``row`` may be installed, else :class:`ShareError` saying why."""
    if row.domain != domain:
        raise ShareError(f"row for {row.domain!r}, not {domain!r}")
    try:
        cert = leaf(row.fullchain)
    except ValueError:
        raise ShareError(f"serial {row.serial}: the chain is not a PEM certificate") from None
    if serial_hex(cert) != row.serial:
        raise ShareError(f"serial {row.serial}: the chain holds serial {serial_hex(cert)}")
    try:
        key_pem = AESGCM(share_key).decrypt(row.nonce, row.sealed_key, aad(domain, row.serial, row.fullchain))
    except (InvalidTag, ValueError):
        raise ShareError(
            f"serial {row.serial}: the sealed key does not open with this host's share key "
            "(sealed under another key, or the row was altered)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ShareError(f"serial {row.serial}: the sealed key is not a PEM private key") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise ShareError(f"serial {row.serial}: the key does not match the certificate")
    if domain.lower() not in _names(cert):
        raise ShareError(f"serial {row.serial}: the certificate does not name {domain}")
    if now >= not_after(cert):
        raise ShareError(f"serial {row.serial}: expired {not_after(cert):%Y-%m-%d %H:%M} UTC")
    if newest_installed is not None and not_before(cert) < newest_installed:
        raise ShareError(
            f"serial {row.serial}: older (issued {not_before(cert):%Y-%m-%d %H:%M:%S} UTC) than the certificate "
            f"this host installed last ({newest_installed:%Y-%m-%d %H:%M:%S} UTC): a rollback, refused"
        )
    return cert, key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install_files(tls: Path, fullchain: bytes, key_pem: bytes) -> None:
    """nginx's three files; the key first (0600 from its first byte), so a reload never pairs old and new."""
    _write(tls / ".privkey.next.pem", key_pem, 0o600)
    _write(tls / "chain.pem", chain_of(fullchain), 0o644)
    # fullchain and key: swapped one right after the other; the renewer reloads after both.
    _write(tls / "fullchain.pem", fullchain, 0o644)
    os.replace(tls / ".privkey.next.pem", tls / "privkey.pem")


# -- the host's own record ---------------------------------------------------


def read_installed(share_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((share_dir / INSTALLED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def installed_mark(share_dir: Path) -> dt.datetime | None:
    raw = read_installed(share_dir).get("not_before")
    if not isinstance(raw, str):
        return None
    try:
        return _utc(dt.datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


def write_installed(share_dir: Path, cert: x509.Certificate) -> None:
    record = {
        "serial": serial_hex(cert),
        "not_before": not_before(cert).isoformat(),
        "not_after": not_after(cert).isoformat(),
        "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _write(share_dir / INSTALLED_FILE, (json.dumps(record, sort_keys=True) + "\n").encode(), 0o600)


# -- PostgreSQL ----------------------------------------------------------------


@dataclass(frozen=True)
class ShareConfig:
    role: str  # "issuer" or "follower"
    domain: str
    url: str
    sslmode: str
    password_file: str | None
    ca_file: str | None
    key_file: str
    dir: Path

    @classmethod
    def load(cls, path: Path) -> ShareConfig:
        data = json.loads(path.read_text())
        pg = data["postgres"]
        return cls(
            role=data["role"], domain=data["domain"], url=pg["url"], sslmode=pg["sslmode"],
            password_file=pg.get("password_file"), ca_file=pg.get("ca_file"), key_file=data["key_file"],
            dir=path.parent,
        )  # fmt: skip


def connect(cfg: ShareConfig) -> Any:
    import psycopg2

    kwargs: dict[str, Any] = {"sslmode": cfg.sslmode, "connect_timeout": 5, "application_name": "claudegate-certbot"}
    if cfg.password_file:
        kwargs["password"] = Path(cfg.password_file).read_text().strip()
    if cfg.ca_file:
        kwargs["sslrootcert"] = cfg.ca_file
    try:
        return psycopg2.connect(cfg.url, **kwargs)
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShareError(f"cannot reach PostgreSQL: {first}") from None


def published(conn: Any, domain: str, serial: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM tls_certificates WHERE domain = %s AND serial = %s", (domain, serial))
        return cur.fetchone() is not None


def publish(cfg: ShareConfig, fullchain: bytes, key_pem: bytes) -> tuple[bool, str]:
    """Seal and insert the issuer's certificate unless it is there; (inserted, message)."""
    cert = leaf(fullchain)
    serial = serial_hex(cert)
    conn = connect(cfg)
    try:
        with conn:
            if published(conn, cfg.domain, serial):
                _record_published(cfg, serial)
                return False, f"serial {serial} is shared already"
            row = seal(cfg.domain, fullchain, key_pem, load_share_key(Path(cfg.key_file)))
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO tls_certificates (domain, serial, not_before, not_after, fullchain, key_nonce,"
                    " key_sealed, published_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (domain, serial) DO NOTHING",
                    (row.domain, row.serial, row.not_before, row.not_after, row.fullchain.decode(),
                     row.nonce, row.sealed_key, socket.gethostname()),
                )  # fmt: skip
                # Expired rows serve nobody.
                cur.execute(
                    "DELETE FROM tls_certificates WHERE domain = %s AND not_after < now() - interval '1 day'",
                    (cfg.domain,),
                )
    finally:
        conn.close()
    _record_published(cfg, serial)
    return True, f"shared serial {serial} with the other hosts"


def _record_published(cfg: ShareConfig, serial: str) -> None:
    _write(cfg.dir / PUBLISHED_FILE, (json.dumps({"serial": serial}) + "\n").encode(), 0o600)


def candidates(cfg: ShareConfig) -> list[Sealed]:
    conn = connect(cfg)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT domain, serial, not_before, not_after, fullchain, key_nonce, key_sealed"
                " FROM tls_certificates WHERE domain = %s ORDER BY not_before DESC, id DESC LIMIT %s",
                (cfg.domain, CANDIDATES),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    return [
        Sealed(r[0], r[1], _utc(r[2]), _utc(r[3]), r[4].encode(), bytes(r[5]), bytes(r[6])) for r in rows
    ]


@dataclass(frozen=True)
class SyncResult:
    code: int  # EXIT_INSTALLED, EXIT_UNCHANGED or EXIT_NOTHING
    message: str
    serial: str | None
    refused: tuple[str, ...] = ()


def choose(
    rows: list[Sealed], *, domain: str, share_key: bytes, newest_installed: dt.datetime | None,
    installed_serial: str | None, now: dt.datetime,
) -> tuple[Sealed | None, tuple[x509.Certificate, bytes] | None, list[str]]:  # fmt: skip
    """The newest row that passes :func:`open_row` (None: none), and why each newer one was refused."""
    refused: list[str] = []
    for row in rows:
        if installed_serial is not None and row.serial == installed_serial:
            return row, None, refused  # what this host serves is the newest valid one
        try:
            opened = open_row(row, domain=domain, share_key=share_key, newest_installed=newest_installed, now=now)
        except ShareError as exc:
            refused.append(str(exc))
            continue
        return row, opened, refused
    return None, None, refused


def sync(cfg: ShareConfig, tls: Path) -> SyncResult:
    """Install the newest acceptable shared certificate into ``tls`` (the caller reloads nginx)."""
    record = read_installed(cfg.dir)
    installed_serial = record.get("serial") if isinstance(record.get("serial"), str) else None
    row, opened, refused = choose(
        candidates(cfg), domain=cfg.domain, share_key=load_share_key(Path(cfg.key_file)),
        newest_installed=installed_mark(cfg.dir), installed_serial=installed_serial, now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    why = f" (refused: {'; '.join(refused)})" if refused else ""
    if row is None:
        return SyncResult(EXIT_NOTHING, f"no certificate for {cfg.domain} in the state tier to install{why}",
                          installed_serial, tuple(refused))  # fmt: skip
    if opened is None:
        return SyncResult(EXIT_UNCHANGED, f"serial {row.serial} is installed, the newest shared{why}", row.serial,
                          tuple(refused))  # fmt: skip
    cert, key_pem = opened
    install_files(tls, row.fullchain, key_pem)
    write_installed(cfg.dir, cert)
    return SyncResult(EXIT_INSTALLED, f"installed serial {row.serial} from the state tier{why}", row.serial,
                      tuple(refused))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """One-shot runs for the deploy: ``publish --live DIR`` (issuer) or ``sync --tls DIR`` (follower)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("publish", "sync"))
    parser.add_argument("--share", required=True, help="share.json")
    parser.add_argument("--live", help="publish: certbot's live directory of the lineage")
    parser.add_argument("--tls", help="sync: nginx's TLS directory")
    args = parser.parse_args(argv)
    cfg = ShareConfig.load(Path(args.share))
    try:
        if args.command == "publish":
            live = Path(args.live or "")
            _, message = publish(cfg, (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes())
            print(message, flush=True)
            return EXIT_INSTALLED
        result = sync(cfg, Path(args.tls or ""))
    except (ShareError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(result.message, flush=True)
    return result.code


if __name__ == "__main__":
    sys.exit(main())
