"""Backup files without a server: sealing, tampering, hostile archives, file modes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from claudegate.backup import (
    MAGIC_PLAIN,
    BackupError,
    _write_private,
    read_backup,
    read_passphrase,
    seal,
    unseal,
)
from claudegate.errors import ConfigError
from claudegate.redact import Secret
from tests.support.backup_files import bundle, keystore

PASS = Secret("correct horse battery staple")


def test_sealed_backup_round_trips_and_refuses_a_wrong_passphrase_or_a_changed_byte(tmp_path: Path) -> None:
    plain = bundle({"keystore.db": keystore(), "key_pepper": b"pepper\n"})
    sealed = seal(plain, PASS)
    assert b"pepper" not in sealed and b"team-a" not in sealed
    src = tmp_path / "b"
    assert unseal(sealed, PASS, src) == plain
    with pytest.raises(BackupError, match="wrong passphrase"):
        unseal(sealed, Secret("another passphrase!"), src)
    flipped = bytearray(sealed)
    flipped[-20] ^= 1
    with pytest.raises(BackupError, match="wrong passphrase, or the file was changed"):
        unseal(bytes(flipped), PASS, src)
    with pytest.raises(ConfigError, match="encrypted"):
        unseal(sealed, None, src)
    with pytest.raises(BackupError, match="not a claudegate backup"):
        unseal(b"PK\x03\x04 some zip", PASS, src)


def test_restore_reads_only_plain_checked_members(tmp_path: Path) -> None:
    good = {"keystore.db": keystore(), "key_pepper": b"pepper\n"}
    path = tmp_path / "ok.cgbackup"
    path.write_bytes(seal(bundle(good), None))
    backup = read_backup(path)
    assert backup.members == good and backup.manifest["format"] == 1
    # A link, a path, a changed member, a missing pepper: each refused before anything is restored.
    for bad, match in (
        (bundle(good, links=("key_pepper2",)), "unexpected member"),
        (bundle({**good, "../etc/cron.d/x": b"x"}), "unexpected member"),
        (bundle({"keystore.db": good["keystore.db"]}), "lacks key_pepper"),
        (bundle({**good, "keystore.db": b"not sqlite" * 100}), "not a readable SQLite"),
    ):
        path.write_bytes(MAGIC_PLAIN + bad)
        with pytest.raises(BackupError, match=match):
            read_backup(path)
    # A member changed after the manifest was written: refused by its checksum.
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle(good)), mode="r:gz") as src,
        tarfile.open(fileobj=buffer, mode="w:gz") as dst,
    ):
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "key_pepper":
                data = b"attacker's pepper\n"
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    path.write_bytes(MAGIC_PLAIN + buffer.getvalue())
    with pytest.raises(BackupError, match="key_pepper does not match its checksum"):
        read_backup(path)


def test_backup_file_is_0600_from_the_start_and_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "b.cgbackup"
    _write_private(out, b"data", force=False)
    assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="exists"):
        _write_private(out, b"other", force=False)
    assert out.read_bytes() == b"data"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="exists"):
        _write_private(link, b"x", force=False)  # a planted link counts as an existing file
    # --force replaces the link itself (claudegate.private_files): never written through it.
    _write_private(link, b"x", force=True)
    assert not (tmp_path / "elsewhere").exists()
    assert not link.is_symlink() and link.read_bytes() == b"x" and link.stat().st_mode & 0o777 == 0o600


def test_passphrases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_passphrase() is None
    f = tmp_path / "pass"
    f.write_text("a long enough passphrase\nignored\n")
    assert read_passphrase(file=f) == Secret("a long enough passphrase")
    monkeypatch.setenv("CG_PASS", "short")
    with pytest.raises(ConfigError, match="shorter than 12"):
        read_passphrase(env="CG_PASS")
    with pytest.raises(ConfigError, match="one of them"):
        read_passphrase(file=f, env="CG_PASS")
    with pytest.raises(ConfigError, match="cannot read"):
        read_passphrase(file=tmp_path / "missing")


def _tree(*entries: tuple[str, str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, target in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, target
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    return buffer.getvalue()


def test_the_acme_tree_cannot_write_outside_its_directory_when_root_extracts_it() -> None:
    from claudegate.backup import check_tree_tar

    # certbot's own shape passes: live/ links into ../../archive/.
    check_tree_tar(
        _tree(("./archive", "dir", ""), ("./archive/gw/cert1.pem", "file", ""), ("./live", "dir", ""),
              ("./live/gw", "dir", ""), ("./live/gw/cert.pem", "link", "../../archive/gw/cert1.pem")),
        "t",
    )  # fmt: skip
    for bad in (
        _tree(("../etc/cron.d/x", "file", "")),
        _tree(("/etc/passwd", "file", "")),
        _tree(("./a/../../x", "file", "")),
        _tree(("./l", "link", "/etc"), ("./l/cron.d/x", "file", "")),
        _tree(("./l", "link", "../../etc")),
        _tree(("./h", "hard", "/etc/shadow")),
    ):
        with pytest.raises(BackupError, match="nothing was restored"):
            check_tree_tar(bad, "t")


def test_a_backup_of_several_hosts_holds_each_hosts_files_and_no_keystore(tmp_path: Path) -> None:
    from claudegate.backup import fleet_members, restore_backup, write_backup
    from claudegate.connectors.local import LocalConnector
    from tests.deploy.test_fleet_roll import _cfg

    cfg = _cfg(tmp_path, 2)
    hosts = [(1, "10.0.0.11", {"key_pepper": b"fleet-pepper\n", "tls.tar": b"tls-1"}),
             (2, "10.0.0.12", {"key_pepper": b"another-pepper\n", "tls.tar": b"tls-2"})]  # fmt: skip
    members, names, notes = fleet_members(hosts)
    # The first host's files where a one-host reader looks; every host's own beside them.
    assert members == {"key_pepper": b"fleet-pepper\n", "tls.tar": b"tls-1",
                       "host1.key_pepper": b"fleet-pepper\n", "host1.tls.tar": b"tls-1",
                       "host2.key_pepper": b"another-pepper\n", "host2.tls.tar": b"tls-2"}  # fmt: skip
    assert names == {"1": "10.0.0.11", "2": "10.0.0.12"}
    assert notes == ["WARNING: host 2 (10.0.0.12) holds another pepper than host 1"]
    out = tmp_path / "fleet.cgbackup"
    result = write_backup(cfg, members, out, source="10.0.0.11", passphrase=PASS, hosts=names, notes=notes)
    assert result.clients is None and "clients" not in result.text().split("\n")[0]
    # The state tier is not in the file, and the text says so.
    assert "state.postgres.url" in result.text() and "another pepper" in result.text()
    assert out.stat().st_mode & 0o777 == 0o600
    read = read_backup(out, PASS)
    assert read.manifest["hosts"] == names and "keystore.db" not in read.members
    assert "clients in PostgreSQL" in read.summary()
    # It cannot be restored onto one host as if it were a one-host backup: refused before any connection use.
    with pytest.raises(BackupError, match="a backup of several hosts"):
        restore_backup(cfg, LocalConnector(), read)
    # A one-host backup still needs its keystore.
    (tmp_path / "one.cgbackup").write_bytes(MAGIC_PLAIN + bundle({"key_pepper": b"pepper\n"}))
    with pytest.raises(BackupError, match=r"lacks keystore\.db"):
        read_backup(tmp_path / "one.cgbackup")


def test_a_fleet_restore_refuses_a_file_that_does_not_fit_this_fleet_before_anything_is_asked(tmp_path: Path) -> None:
    """One host's backup, another domain's, no shared rows, damaged rows, a pepper that is not one line."""
    import json

    from claudegate.backup import STATE_ROWS, check_fleet_backup, write_backup
    from tests.deploy.test_fleet_roll import _cfg

    cfg = _cfg(tmp_path, 2)
    rows = json.dumps({"format": "claudegate-state 1", "schema": [1, 2, 3], "tables": {}}).encode()
    hosts = {"1": "10.0.0.11", "2": "10.0.0.12"}

    def made(name: str, members: dict[str, bytes], *, domain: str | None = None, fleet: bool = True) -> Any:
        other = cfg.model_copy(update={"domain": domain}) if domain else cfg
        write_backup(other, members, tmp_path / name, source="10.0.0.11", hosts=hosts if fleet else None)
        return read_backup(tmp_path / name)

    good = made("good", {"key_pepper": b"pepper\n", STATE_ROWS: rows})
    check_fleet_backup(cfg, good)  # fits
    for backup, match in (
        (made("one", {"keystore.db": keystore(), "key_pepper": b"p\n"}, fleet=False), "a backup of one host"),
        (made("other", {"key_pepper": b"pepper\n", STATE_ROWS: rows}, domain="gw.elsewhere.test"),
         "another deployment's pepper"),
        (made("norows", {"key_pepper": b"pepper\n"}), "does not hold state.postgres's rows"),
        (made("badrows", {"key_pepper": b"pepper\n", STATE_ROWS: b'{"format": "x"'}), "not readable JSON"),
        (made("notours", {"key_pepper": b"pepper\n", STATE_ROWS: b'{"format": "x"}'}), "not claudegate's state"),
        (made("pepper", {"key_pepper": b"two\nlines\n", STATE_ROWS: rows}), "not one line"),
    ):
        with pytest.raises(BackupError, match=match):
            check_fleet_backup(cfg, backup)
