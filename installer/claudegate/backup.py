"""Backup and restore of what a deploy cannot re-create.

What is saved:

- the keystore (clients, scopes, key *hashes*, daily usage), as a consistent
  SQLite snapshot taken inside the serving gateway (``Connection.serialize``,
  one read transaction: never a half-written page of a live WAL database);
- the pepper the key hashes are keyed with (without it the hashes are
  useless, with it and the keystore a client key can be *checked*, never
  recovered: neither holds a key);
- certbot's directory (ACME account key, certificates, renewal config) and
  the served certificate, when they exist;
- with ``state.host``: a ``pg_dump`` of the state host's PostgreSQL (keys,
  owned objects, the usage ledger), custom format; ``restore`` loads it
  back with ``pg_restore --clean`` in one transaction (one host). Redis is
  not saved: it holds only rate windows and in-flight holds, rebuilt from
  PostgreSQL;
- several hosts (``hosts:``): every host's pepper and TLS trees, and
  ``state.json``, claudegate's rows of state.postgres exported at one
  moment by a serving gateway (``claudegate-gateway state export``).

Not saved: the Anthropic key (it is on the operator's side already), the
audit log (see ``claudegate usage``), releases and images (a deploy makes
them). The file is written 0600, and encrypted when a passphrase is given
(scrypt, then Fernet: AES-128-CBC with HMAC-SHA256; a wrong passphrase or a
changed byte is refused, never restored).

Restore puts the keystore and the pepper (and, for ``tls.mode: acme``,
certbot's directory) onto a host a deploy already set up, under the deploy
lock: the gateways are stopped for the swap (a few seconds without service),
the keystore's WAL files are removed with the old database, and the serving
gateway is started and waited for. Existing client keys then work there.
A fleet's restore (:func:`restore_fleet`) replaces state.postgres's rows in
one transaction, telling every replica, and gives the backup's pepper to
each host that lacks it: all hosts or none.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claudegate import __version__
from claudegate.config.derive import GATEWAY_KEYSTORE
from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy import docker_cli
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.docker_cli import GATEWAY_PYTHON
from claudegate.deploy.layout import GATEWAY_GID, GATEWAY_UID, HostLayout
from claudegate.deploy.lock import RemoteLock
from claudegate.deploy.services import wait_gateway_ready
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.deploy.state_host import dump_postgres, restore_postgres
from claudegate.deploy.steps.files import SECRET_MODE
from claudegate.errors import ClaudegateError, ConfigError
from claudegate.keys import list_clients
from claudegate.private_files import write_private
from claudegate.redact import Secret

__all__ = [
    "Backup",
    "BackupResult",
    "FleetHost",
    "RestoreResult",
    "check_fleet_backup",
    "check_state_rows",
    "create_backup",
    "export_state_rows",
    "fleet_members",
    "host_members",
    "import_state_rows",
    "keystore_snapshot",
    "read_backup",
    "read_passphrase",
    "restore_backup",
    "restore_fleet",
    "write_backup",
]

MAGIC_PLAIN = b"claudegate-backup 1 tar\n"
#: The backup member holding the state host's ``pg_dump`` (custom format).
POSTGRES_DUMP = "postgres.dump"
#: The backup member holding state.postgres's rows as the gateway exports them (several hosts, a URL's PostgreSQL).
STATE_ROWS = "state.json"
MAGIC_SEALED = b"claudegate-backup 1 scrypt-fernet\n"
_SALT = 16
# scrypt cost: ~0.1 s and 32 MiB here; a guess costs an attacker the same.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}

# A consistent copy of the live keystore, written to stdout by the gateway's own
# Python. Bytes 18-19 of the header say "WAL" (2) in the live file; the copy is
# marked rollback-journal (1) so it opens on its own, with no -wal beside it
# (the gateway switches it back to WAL when it opens it).
_SNAPSHOT = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1])\n"
    "db.execute('PRAGMA busy_timeout=5000')\n"
    "data = bytearray(db.serialize())\n"
    "data[18:20] = b'\\x01\\x01'\n"
    "sys.stdout.buffer.write(data)\n"
)
_TAR_DIR = 'set -eu\n[ -d "$1" ] || exit 0\ncd -- "$1"\ntar -c --numeric-owner -f - .'
_UNTAR_DIR = 'set -eu\nmkdir -p -- "$1"\ntar -x --numeric-owner -C "$1" -f -'


class BackupError(ClaudegateError):
    """A backup that cannot be made or used (wrong passphrase, damaged file, nothing deployed)."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    encrypted: bool
    clients: int | None  # None: no keystore in the file (several hosts: the clients are in PostgreSQL)
    contents: tuple[str, ...]
    size: int
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        how = "encrypted" if self.encrypted else "NOT encrypted (0600; keep it as secret as the server)"
        clients = "" if self.clients is None else f"; {self.clients} clients"
        return (
            f"backup written to {self.path} ({self.size} bytes, {how}): {', '.join(self.contents)}{clients}"
        ) + "".join(f"\nnote: {note}" for note in self.notes)


@dataclass(frozen=True)
class RestoreResult:
    target: str
    clients: tuple[str, ...]
    restored: tuple[str, ...]
    created_at: str
    source_domain: str

    def text(self) -> str:
        return (
            f"restored {', '.join(self.restored)} from the backup of {self.source_domain} ({self.created_at}) "
            f"onto {self.target}; clients: {', '.join(self.clients) or 'none'}"
        )


@dataclass(frozen=True)
class Backup:
    """A backup file read and checked (passphrase, checksums, members): what a restore puts on a host.

    Read before anything is asked or connected, so a wrong passphrase or a
    damaged file is said first and the question names what would be restored.
    """

    source: Path
    manifest: dict[str, Any]
    members: dict[str, bytes]

    def summary(self) -> str:
        m = self.manifest
        clients = m.get("clients", "?")
        count = "clients in PostgreSQL" if clients is None else f"{clients} client{'' if clients == 1 else 's'}"
        return f"the backup of {m.get('domain', '?')} made {m.get('created_at', '?')} ({count}, {self.source})"


def read_passphrase(file: Path | None = None, env: str | None = None) -> Secret | None:
    """The passphrase from a file (first line) or an environment variable; None when neither is given."""
    if file is not None and env is not None:
        raise ConfigError("--passphrase-file and --passphrase-env: give one of them")
    if file is not None:
        try:
            text = file.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"--passphrase-file: cannot read {file}: {exc.strerror}") from None
        value = text[0] if text else ""
        where = f"the first line of {file}"
    elif env is not None:
        value = os.environ.get(env, "")
        where = f"${env}"
    else:
        return None
    if len(value) < 12:
        raise ConfigError(f"the passphrase ({where}) is shorter than 12 characters", hint="use a longer one")
    return Secret(value)


def _fernet(passphrase: Secret, salt: bytes) -> Any:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    key = Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.reveal_bytes())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(bundle: bytes, passphrase: Secret | None) -> bytes:
    if passphrase is None:
        return MAGIC_PLAIN + bundle
    salt = os.urandom(_SALT)
    token: bytes = _fernet(passphrase, salt).encrypt(bundle)
    return MAGIC_SEALED + salt + token


def unseal(data: bytes, passphrase: Secret | None, source: Path) -> bytes:
    if data.startswith(MAGIC_PLAIN):
        return data[len(MAGIC_PLAIN) :]
    if not data.startswith(MAGIC_SEALED):
        raise BackupError(
            f"{source} is not a claudegate backup", hint="give the file claudegate backup wrote"
        )
    if passphrase is None:
        raise ConfigError(
            f"{source} is encrypted",
            hint="pass the passphrase with --passphrase-file FILE or --passphrase-env VAR",
        )
    from cryptography.fernet import InvalidToken

    body = data[len(MAGIC_SEALED) :]
    try:
        return bytes(_fernet(passphrase, body[:_SALT]).decrypt(body[_SALT:]))
    except InvalidToken:
        raise BackupError(
            f"{source}: wrong passphrase, or the file was changed",
            hint="check the passphrase; nothing was restored",
        ) from None


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``path`` 0600 from the first byte; refuse to overwrite unless ``force``."""
    try:
        write_private(path, data, exclusive=not force)
    except FileExistsError:
        raise ConfigError(
            f"--out: {path} exists", hint="choose another file, or pass --force to replace it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {path}: {exc.strerror}") from None


def _host(cfg: DeployConfig, connector: Connector, argv: list[str], what: str, **kw: Any) -> bytes:
    result = connector.run(argv, sudo=uses_sudo(cfg, connector), timeout=300, check=False, **kw)
    if not result.ok:
        stderr = connector.redact(result.stderr.decode("utf-8", errors="replace")).strip()
        raise BackupError(
            f"{what} failed on {connector.target}: {stderr.splitlines()[-1] if stderr else 'failed'}"
        )
    return result.stdout


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def keystore_snapshot(cfg: DeployConfig, connector: Connector, container: str) -> bytes:
    """A consistent copy of the live SQLite keystore, taken inside the serving gateway ``container``."""
    return _host(
        cfg, connector, docker_cli.exec_in(container, [*GATEWAY_PYTHON[:1], "-c", _SNAPSHOT, GATEWAY_KEYSTORE]),
        "the keystore snapshot",
    )  # fmt: skip


def host_members(
    cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None, *, keystore: bool = True
) -> dict[str, bytes]:
    """What one host holds that a deploy cannot re-create: keystore snapshot, pepper, TLS and ACME trees.

    ``keystore=False``: no SQLite snapshot (hosts on a shared PostgreSQL keep their clients there; a
    snapshot taken in their gateway would be of an empty or stale file).
    """
    layout = layout or HostLayout()
    sudo = uses_sudo(cfg, connector)
    container = serving_gateway_container(cfg, connector, layout)
    pepper = connector.get_file(layout.pepper_file, sudo=sudo)
    if not pepper:
        raise BackupError(f"{layout.pepper_file} is missing on {connector.target}", hint="deploy first")
    connector.add_secret(Secret(pepper.decode("utf-8", errors="replace").strip()))
    members = {"key_pepper": pepper}
    if keystore:
        members = {"keystore.db": keystore_snapshot(cfg, connector, container), **members}
    for name, directory in (("tls.tar", layout.tls), ("letsencrypt.tar", layout.acme_state)):
        data = _host(
            cfg, connector, ["sh", "-c", _TAR_DIR, "claudegate-backup", directory], f"reading {directory}"
        )
        if data:
            members[name] = data
    return members


def create_backup(
    cfg: DeployConfig,
    connector: Connector,
    out: Path,
    *,
    passphrase: Secret | None = None,
    force: bool = False,
    layout: HostLayout | None = None,
    state_connector: Connector | None = None,
) -> BackupResult:
    """Save the keystore, the pepper and the ACME state of the deployed gateway to ``out``.

    With ``state.host`` in ``cfg``, ``state_connector`` (reaching that host) adds its PostgreSQL dump.
    """
    members = host_members(cfg, connector, layout)
    return write_backup(cfg, members, out, source=connector.target, passphrase=passphrase, force=force,
                        state_connector=state_connector)  # fmt: skip


def export_state_rows(cfg: DeployConfig, connector: Connector, layout: HostLayout | None = None) -> bytes:
    """state.postgres's rows (``claudegate-gateway state export``), read by this host's serving gateway."""
    from claudegate.deploy.gateway_cli import gateway_command

    container = serving_gateway_container(cfg, connector, layout)
    data = _host(cfg, connector, docker_cli.exec_in(container, gateway_command(["state", "export"])),
                 "exporting state.postgres's rows")  # fmt: skip
    check_state_rows(data, "the export")
    return data


def import_state_rows(cfg: DeployConfig, connector: Connector, data: bytes, layout: HostLayout | None = None) -> str:
    """Replace state.postgres's rows with ``data`` in one transaction (``state import``); the counts it says."""
    from claudegate.deploy.gateway_cli import gateway_command

    container = serving_gateway_container(cfg, connector, layout)
    argv = docker_cli.exec_in(container, gateway_command(["state", "import"]), stdin=True)
    return _host(cfg, connector, argv, "restoring state.postgres's rows", input=data).decode().strip()


def check_state_rows(data: bytes, what: str) -> dict[str, Any]:
    """The state document's shape (format, tables); a damaged one is refused before anything is changed."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise BackupError(f"{what}: state.json is not readable JSON; nothing was restored") from None
    if not isinstance(doc, dict) or doc.get("format") != "claudegate-state 1" or not isinstance(doc.get("tables"), dict):
        raise BackupError(f"{what}: state.json is not claudegate's state document; nothing was restored")
    return doc


def fleet_members(hosts: Sequence[tuple[int, str, dict[str, bytes]]]) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
    """One file's members for several hosts: the first host's at the top (what ``restore`` reads), every
    host's own files as ``host<N>.<name>`` (its pepper, TLS and ACME trees; the keystore is shared state).

    Returns the members, the manifest's ``hosts`` map (N -> host) and notes (hosts whose peppers differ:
    their key hashes cannot agree, so a key works on one and not the other).
    """
    first = hosts[0][2]
    members = dict(first)
    names: dict[str, str] = {}
    notes: list[str] = []
    for index, host, files in hosts:
        names[str(index)] = host
        members.update({f"host{index}.{name}": data for name, data in files.items() if name != "keystore.db"})
        if files.get("key_pepper") != first.get("key_pepper"):
            notes.append(f"WARNING: host {index} ({host}) holds another pepper than host {hosts[0][0]}")
    return members, names, notes


def write_backup(
    cfg: DeployConfig,
    members: dict[str, bytes],
    out: Path,
    *,
    source: str,
    passphrase: Secret | None = None,
    force: bool = False,
    state_connector: Connector | None = None,
    hosts: dict[str, str] | None = None,
    notes: Sequence[str] = (),
) -> BackupResult:
    """Add the state tier (once: ``state.host``'s PostgreSQL dump), seal and write ``members`` to ``out`` (0600)."""
    members = dict(members)
    notes = list(notes)
    if cfg.state is not None and cfg.state.host is not None:
        if state_connector is None:
            raise ConfigError("state.host is set: the backup needs a connection to it for the PostgreSQL dump")
        members[POSTGRES_DUMP] = dump_postgres(cfg, state_connector)
    elif STATE_ROWS in members:
        notes.append(
            "the keys, owned objects and usage of state.postgres are in the file (claudegate's rows, exported by "
            "a gateway at one moment); the database's own backups are still its operator's"
        )
    elif cfg.state is not None:
        # A PostgreSQL someone else runs (state.postgres.url): its data is theirs to back up.
        notes.append(
            "the keys, owned objects and usage live in the PostgreSQL at state.postgres.url, which this "
            "file does not hold: back it up with that service's snapshots or pg_dump"
        )
    clients = _client_count(members["keystore.db"]) if "keystore.db" in members else None
    manifest: dict[str, Any] = {
        "format": 1,
        "claudegate": __version__,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "domain": cfg.domain,
        "tls_mode": cfg.tls.mode,
        "source": source,
        "clients": clients,
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    if hosts is not None:
        manifest["hosts"] = hosts
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
        for name, data in members.items():
            _add(tar, name, data)
    sealed = seal(buffer.getvalue(), passphrase)
    _write_private(out, sealed, force=force)
    return BackupResult(out, passphrase is not None, clients, tuple(members), len(sealed), tuple(notes))


def _client_count(keystore: bytes) -> int:
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(keystore)
        return int(db.execute("SELECT count(*) FROM clients").fetchone()[0])
    except sqlite3.DatabaseError:
        raise BackupError("the keystore snapshot is not a readable SQLite database") from None
    finally:
        db.close()


def _read_bundle(source: Path, passphrase: Secret | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--from: cannot read {source}: {exc.strerror}") from None
    bundle = unseal(data, passphrase, source)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            for info in tar.getmembers():
                # Plain files with plain names only: nothing in a backup is a link or a path.
                if not info.isfile() or "/" in info.name or info.name.startswith("."):
                    raise BackupError(f"{source}: unexpected member {info.name!r}; nothing was restored")
                handle = tar.extractfile(info)
                assert handle is not None
                members[info.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError):
        raise BackupError(f"{source} is damaged (not a readable archive); nothing was restored") from None
    try:
        manifest = json.loads(members.pop("manifest.json"))
    except (KeyError, ValueError):
        raise BackupError(f"{source} has no readable manifest; nothing was restored") from None
    for name, digest in dict(manifest.get("sha256") or {}).items():
        if hashlib.sha256(members.get(name, b"")).hexdigest() != digest:
            raise BackupError(f"{source}: {name} does not match its checksum; nothing was restored")
    # A backup of several hosts (manifest "hosts") has no keystore: their clients are in PostgreSQL.
    for needed in ("key_pepper",) if "hosts" in manifest else ("keystore.db", "key_pepper"):
        if needed not in members:
            raise BackupError(f"{source} lacks {needed}; nothing was restored")
    if "keystore.db" in members:
        _client_count(members["keystore.db"])
    return manifest, members


def check_tree_tar(data: bytes, what: str) -> None:
    """Refuse a directory tar that could write outside its root when root extracts it.

    Only directories, regular files and symlinks whose target stays inside
    the tree (certbot's ``live/`` links point into ``../../archive/``); no
    absolute names, no ``..`` in names, nothing placed under a symlink.
    """
    import posixpath

    links: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar.getmembers():
                name = posixpath.normpath(info.name)
                parts = name.split("/")
                if info.name.startswith("/") or ".." in info.name.split("/") or name.startswith(".."):
                    raise BackupError(
                        f"{what}: member {info.name!r} leaves the directory; nothing was restored"
                    )
                if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
                    raise BackupError(
                        f"{what}: member {info.name!r} lies under a symlink; nothing was restored"
                    )
                if info.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
                    if info.linkname.startswith("/") or target == ".." or target.startswith("../"):
                        raise BackupError(f"{what}: link {info.name!r} points outside; nothing was restored")
                    links.add(name)
                elif not (info.isdir() or info.isfile()):
                    raise BackupError(f"{what}: member {info.name!r} is not a file; nothing was restored")
    except tarfile.TarError:
        raise BackupError(f"{what} is not a readable tar; nothing was restored") from None


def read_backup(source: Path, passphrase: Secret | None = None) -> Backup:
    """Read and check a backup file (decrypted with ``passphrase`` when it is sealed); nothing is restored."""
    manifest, members = _read_bundle(source, passphrase)
    return Backup(source, manifest, members)


def restore_backup(
    cfg: DeployConfig,
    connector: Connector,
    backup: Backup,
    *,
    layout: HostLayout | None = None,
    state_connector: Connector | None = None,
) -> RestoreResult:
    """Put a backup's keystore and pepper (and ACME state) onto the deployed host; old keys work there after.

    A backup with a PostgreSQL dump is loaded into ``state.host``'s database too
    (``state_connector`` reaches it), replacing what it holds.
    """
    source, manifest, members = backup.source, backup.manifest, backup.members
    if "keystore.db" not in members:
        raise BackupError(
            f"{source} is a backup of several hosts (hosts: {', '.join(dict(manifest.get('hosts') or {}).values())}): "
            "it holds their peppers and certificates, not a keystore; nothing was restored",
            hint="their clients are in the PostgreSQL of state.postgres: restore that with its own tools",
        )
    if cfg.tls.mode == "acme" and "letsencrypt.tar" in members:
        check_tree_tar(members["letsencrypt.tar"], f"{source}: letsencrypt.tar")
    layout = layout or HostLayout()
    sudo = uses_sudo(cfg, connector)
    serving = serving_gateway_container(cfg, connector, layout)  # a deploy must have set the host up
    connector.add_secret(Secret(members["key_pepper"].decode("utf-8", errors="replace").strip()))
    lock = RemoteLock(connector, layout.lock_dir, playbook="restore", sudo=sudo)
    lock.acquire()
    restored = ["keystore", "pepper"]
    try:
        names = _host(
            cfg, connector, docker_cli.container_list(layout.prefix, role="gateway"), "listing gateways"
        )
        running = [
            name
            for name in names.decode().split()
            if _host(cfg, connector, [docker_cli.DOCKER, "inspect", "--format", "{{.State.Running}}", name],
                     f"inspecting {name}").strip() == b"true"
        ]  # fmt: skip
        for name in running:
            _host(cfg, connector, docker_cli.container_stop(name), f"stopping {name}")
        owner = f"{GATEWAY_UID}:{GATEWAY_GID}"
        keystore = layout.keystore
        _host(
            cfg, connector, ["rm", "-f", "--", f"{keystore}-wal", f"{keystore}-shm"], "removing the old WAL"
        )
        # The data directory belongs to the gateway's uid, which a host account
        # could hold: root writes nothing in it by path (its temporary file
        # could be swapped for a symlink, and `mv` into a keys.db that is a
        # symlink to a directory would land there). The file is made in the
        # root-only state directory and renamed over keys.db with -T, which
        # replaces whatever entry is there instead of following it.
        staged = f"{layout.state}/keys.db.restore"
        connector.put_file(staged, members["keystore.db"], 0o600, owner, sudo=sudo)
        _host(cfg, connector, ["mv", "-fT", "--", staged, keystore], "placing the keystore")
        # Like the deploy's Secrets step: root's, readable through the secrets
        # group, never owned by the image's uid that a host account could hold.
        connector.put_file(layout.pepper_file, members["key_pepper"], SECRET_MODE, f"0:{layout.secrets_group}",
                           sudo=sudo)  # fmt: skip
        if cfg.tls.mode == "acme" and "letsencrypt.tar" in members:
            _host(cfg, connector, ["sh", "-c", _UNTAR_DIR, "claudegate-restore", layout.acme_state],
                  "restoring the ACME state", input=members["letsencrypt.tar"])  # fmt: skip
            restored.append("ACME account and certificates")
        for name in sorted(set(running) | {serving}, key=lambda n: n != serving):
            _host(cfg, connector, docker_cli.container_start(name), f"starting {name}")
        if POSTGRES_DUMP in members and cfg.state is not None and cfg.state.host is not None:
            if state_connector is None:
                raise ConfigError("the backup holds a PostgreSQL dump: restoring it needs a connection to state.host")
            restore_postgres(cfg, state_connector, members[POSTGRES_DUMP])
            restored.append("PostgreSQL (state host)")
        ctx = Context(cfg=cfg, connector=connector, layout=layout, options=RunOptions("restore"))
        wait_gateway_ready(ctx, serving)
    finally:
        lock.release()
    clients = tuple(c.name for c in list_clients(cfg, connector, layout=layout) if c.active)
    return RestoreResult(
        target=connector.target,
        clients=clients,
        restored=tuple(restored),
        created_at=str(manifest.get("created_at", "?")),
        source_domain=str(manifest.get("domain", "?")),
    )


@dataclass
class FleetHost:
    """One host of ``hosts:`` as a fleet restore meets it: its label, its config, its open connection."""

    label: str
    cfg: DeployConfig
    connector: Connector
    pepper: bytes = b""  # what it held before the restore


def check_fleet_backup(cfg: DeployConfig, backup: Backup) -> None:
    """A backup that may be put onto this fleet, checked before anything is asked or connected.

    Refused: a one-host backup (its keystore is SQLite), a backup of another
    domain (another deployment's pepper and keys), one without the shared
    state's rows, or a pepper that is not one line of text.
    """
    source, manifest, members = backup.source, backup.manifest, backup.members
    if "hosts" not in manifest:
        raise BackupError(
            f"{source} is a backup of one host (its keys are in a SQLite keystore); this config lists several "
            "hosts: nothing was restored",
            hint="restore it onto one host (a config with that host only), then copy its keys into state.postgres "
            "with claudegate-gateway migrate-state (docs/multihost.md)",
        )
    if manifest.get("domain") != cfg.domain:
        raise BackupError(
            f"{source} is a backup of {manifest.get('domain')!r}, and this config deploys {cfg.domain!r}: another "
            "deployment's pepper and keys would replace these; nothing was restored",
            hint="restore a backup of this deployment (claudegate backup wrote its domain in the file)",
        )
    if STATE_ROWS not in members:
        raise BackupError(
            f"{source} does not hold state.postgres's rows (a backup made before claudegate could export them): "
            "nothing was restored",
            hint="restore the PostgreSQL with its own tools; the hosts' pepper comes back with claudegate deploy",
        )
    check_state_rows(members[STATE_ROWS], str(source))
    pepper = members["key_pepper"].strip()
    if not pepper or b"\n" in pepper or not pepper.isascii() or not pepper.decode().isprintable():
        raise BackupError(f"{source}: key_pepper is not one line of text; nothing was restored")


def _repeppered(host: FleetHost, pepper: bytes, layout: HostLayout) -> None:
    """``pepper`` onto the host and its gateways restarted on it, under the host's deploy lock."""
    lock = RemoteLock(host.connector, layout.lock_dir, playbook="restore", sudo=uses_sudo(host.cfg, host.connector))
    lock.acquire()
    try:
        _put_pepper(host, pepper, layout)
        _restart_gateways(host, layout)
    finally:
        lock.release()


def _restart_gateways(host: FleetHost, layout: HostLayout) -> None:
    """Restart the host's gateway replicas one at a time (they read the pepper at start); wait for each."""
    cfg, connector = host.cfg, host.connector
    names = _host(cfg, connector, docker_cli.container_list(layout.prefix, role="gateway"), "listing gateways")
    ctx = Context(cfg=cfg, connector=connector, layout=layout, options=RunOptions("restore"))
    for name in names.decode().split():
        running = _host(cfg, connector, [docker_cli.DOCKER, "inspect", "--format", "{{.State.Running}}", name],
                        f"inspecting {name}").strip() == b"true"  # fmt: skip
        if not running:
            continue
        _host(cfg, connector, docker_cli.container_stop(name, timeout=10), f"stopping {name}")
        _host(cfg, connector, docker_cli.container_start(name), f"starting {name}")
        wait_gateway_ready(ctx, name)


def _put_pepper(host: FleetHost, pepper: bytes, layout: HostLayout) -> None:
    host.connector.put_file(layout.pepper_file, pepper, SECRET_MODE, f"0:{layout.secrets_group}",
                            sudo=uses_sudo(host.cfg, host.connector))  # fmt: skip


def restore_fleet(
    cfg: DeployConfig,
    hosts: Sequence[FleetHost],
    backup: Backup,
    *,
    safety_copy: Path,
    passphrase: Secret | None = None,
    layout: HostLayout | None = None,
    state_connector: Connector | None = None,
) -> RestoreResult:
    """Put a fleet backup back: state.postgres's rows, then the same pepper on every host; all or none.

    Every host must be reachable and set up (``hosts``, connected by the
    caller, under the fleet's lock). First the fleet as it is now (its rows
    and every host's pepper) is written to ``safety_copy``. Then the rows
    are replaced in one transaction (whole or not at all; every replica is
    told, so a key revoked since the backup works again at once and a key
    made since is refused at once). Then each host whose pepper is not the
    backup's gets it and its gateways are restarted, host by host. A host that fails there undoes the restore: the safety copy's
    rows go back and every host already changed gets its pepper back. If
    even that fails, the error says what is left and the one command that
    finishes the undo (``claudegate restore --from <safety copy>``).
    """
    layout = layout or HostLayout()
    check_fleet_backup(cfg, backup)
    first = hosts[0]
    pepper = backup.members["key_pepper"]
    first.connector.add_secret(Secret(pepper.decode().strip()))
    for host in hosts:  # every host is set up and says its pepper before anything changes
        serving_gateway_container(host.cfg, host.connector, layout)
        host.pepper = host.connector.get_file(layout.pepper_file, sudo=uses_sudo(host.cfg, host.connector)) or b""
        if host.pepper:
            host.connector.add_secret(Secret(host.pepper.decode(errors="replace").strip()))
    now_rows = export_state_rows(first.cfg, first.connector, layout)
    members, names, _ = fleet_members(
        [(i, h.cfg.target.host, {"key_pepper": h.pepper}) for i, h in enumerate(hosts, 1)]
    )
    members[STATE_ROWS] = now_rows
    write_backup(cfg, members, safety_copy, source=first.connector.target, passphrase=passphrase,
                 state_connector=state_connector, hosts=names)  # fmt: skip
    try:
        import_state_rows(first.cfg, first.connector, backup.members[STATE_ROWS], layout)
    except ClaudegateError as exc:
        exc.message += f"\nnothing was restored (the rows are replaced in one transaction); the fleet as it was: {safety_copy}"
        raise
    restored = ["state.postgres (keys, owned objects, usage ledger)"]
    changed: list[FleetHost] = []
    differ = [h for h in hosts if h.pepper.strip() != pepper.strip()]
    if differ:
        try:
            for host in differ:
                changed.append(host)
                _repeppered(host, pepper, layout)
        except ClaudegateError as exc:
            _undo_fleet(hosts, changed, now_rows, exc, safety_copy, layout)
            raise
        restored.append(f"the backup's pepper on {', '.join(h.label for h in differ)} (gateways restarted)")
    else:
        restored.append(f"the pepper ({len(hosts)} hosts already held the backup's)")
    write_private(Path(cfg.state_dir) / "key_pepper", pepper.strip() + b"\n")  # what the next deploy hands out
    clients = tuple(c.name for c in list_clients(first.cfg, first.connector, layout=layout) if c.active)
    return RestoreResult(
        target=", ".join(h.label for h in hosts),
        clients=clients,
        restored=tuple(restored),
        created_at=str(backup.manifest.get("created_at", "?")),
        source_domain=str(backup.manifest.get("domain", "?")),
    )


def _undo_fleet(
    hosts: Sequence[FleetHost], changed: Sequence[FleetHost], rows: bytes, error: ClaudegateError, safety_copy: Path,
    layout: HostLayout,
) -> None:
    """Put back what a failed fleet restore changed; say on ``error`` what was undone and what is left."""
    failed = changed[-1]
    left: list[str] = []
    try:
        import_state_rows(hosts[0].cfg, hosts[0].connector, rows, layout)
    except ClaudegateError as exc:
        left.append(f"state.postgres holds the backup's rows ({exc})")
    for host in changed:
        try:
            _repeppered(host, host.pepper, layout)
        except ClaudegateError as exc:
            left.append(f"{host.label} holds the backup's pepper ({exc})")
    error.message = f"restore failed on {failed.label}: {error.message}\n"
    if not left:
        error.message += (
            "undone: state.postgres's rows and every host's pepper are as before the restore "
            f"(the fleet as it was is also in {safety_copy})"
        )
        error.hint = f"fix {failed.label} (claudegate status), then run the restore again"
    else:
        error.message += "NOT undone: " + "; ".join(left)
        error.hint = (
            f"once the hosts answer, put the fleet back as it was with: claudegate restore --from {safety_copy}"
        )
