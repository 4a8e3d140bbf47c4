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


class _Host:
    """One fleet host for the restore's decisions: its pepper file, and what was done to it, in order."""

    def __init__(self, name: str, pepper: bytes, log: list[str]) -> None:
        from claudegate.connectors.local import LocalConnector

        host, self.log = self, log

        class Conn(LocalConnector):
            target = name

            def get_file(self, path: str, **_: Any) -> bytes | None:
                return host.pepper

            def put_file(self, path: str, data: bytes, mode: int, owner: str | None = None, **_: Any) -> None:
                host.pepper = data
                host.log.append(f"{name}: pepper {data.decode().strip()}")

        self.name, self.pepper, self.connector = name, pepper, Conn()


def _fleet_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, peppers: list[bytes], *, restart_fails: set[str] = frozenset(),  # type: ignore[assignment]
    import_fails_after: int | None = None,
) -> tuple[list[_Host], list[str], Any]:
    """restore_fleet on recorded hosts: the gateway's export/import, the restarts and the locks recorded,
    not run (the real ones run end to end in test_e2e_multihost.py); the decisions are the real code's."""
    import json

    import claudegate.backup as backup_mod
    from claudegate.backup import STATE_ROWS, FleetHost, read_backup, restore_fleet, write_backup
    from tests.deploy.test_fleet_roll import _cfg

    cfg = _cfg(tmp_path, len(peppers))
    log: list[str] = []
    hosts = [_Host(f"10.0.0.{11 + i}", p, log) for i, p in enumerate(peppers)]
    rows = {"format": "claudegate-state 1", "schema": [1, 2, 3], "tables": {}}
    write_backup(cfg, {"key_pepper": b"backup-pepper\n", STATE_ROWS: json.dumps({**rows, "at": "backup"}).encode()},
                 tmp_path / "fleet.cgbackup", source="10.0.0.11", hosts={"1": "10.0.0.11"})  # fmt: skip
    imports: list[str] = []

    def import_rows(cfg: Any, connector: Any, data: bytes, layout: Any = None) -> str:
        imports.append(json.loads(data)["at"])
        if import_fails_after is not None and len(imports) > import_fails_after:
            raise backup_mod.BackupError("PostgreSQL went away")
        log.append(f"rows {imports[-1]}")
        return "{}"

    def restart(host: Any, layout: Any) -> None:
        if host.connector.target in restart_fails:
            raise backup_mod.BackupError(f"the gateway on {host.connector.target} did not start")
        log.append(f"{host.connector.target}: restarted")

    class Lock:
        def __init__(self, connector: Any, *a: Any, **kw: Any) -> None:
            self.name = connector.target

        def acquire(self) -> None:
            log.append(f"{self.name}: locked")

        def release(self) -> None:
            log.append(f"{self.name}: unlocked")

    monkeypatch.setattr(backup_mod, "serving_gateway_container", lambda *a, **k: "claudegate-gateway-x")
    monkeypatch.setattr(backup_mod, "export_state_rows", lambda *a, **k: json.dumps({**rows, "at": "before"}).encode())
    monkeypatch.setattr(backup_mod, "import_state_rows", import_rows)
    monkeypatch.setattr(backup_mod, "_restart_gateways", restart)
    monkeypatch.setattr(backup_mod, "RemoteLock", Lock)
    monkeypatch.setattr(backup_mod, "list_clients", lambda *a, **k: [])
    fleet = [FleetHost(f"host {i}/{len(hosts)} ({h.name})", cfg.for_host(cfg.fleet[i - 1]), h.connector)
             for i, h in enumerate(hosts, 1)]  # fmt: skip
    try:
        result: Any = restore_fleet(cfg, fleet, read_backup(tmp_path / "fleet.cgbackup"),
                                    safety_copy=tmp_path / "before.cgbackup")  # fmt: skip
    except backup_mod.ClaudegateError as exc:
        result = exc
    return hosts, log, result


def test_a_fleet_restore_changes_only_the_hosts_whose_pepper_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hosts, log, result = _fleet_restore(tmp_path, monkeypatch, [b"backup-pepper\n", b"drifted\n", b"backup-pepper\n"])
    assert log == ["rows backup", "10.0.0.12: locked", "10.0.0.12: pepper backup-pepper", "10.0.0.12: restarted",
                   "10.0.0.12: unlocked"], log  # fmt: skip
    assert "the backup's pepper on host 2/3 (10.0.0.12) (gateways restarted)" in result.text()
    assert (tmp_path / "state" / "key_pepper").read_text() == "backup-pepper\n"  # the next deploy hands this out
    safety = read_backup(tmp_path / "before.cgbackup")  # the fleet as it was, to undo by hand
    assert safety.members["host2.key_pepper"] == b"drifted\n" and b'"before"' in safety.members["state.json"]


def test_a_host_failing_half_way_undoes_the_fleet_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = [b"old-pepper\n", b"old-pepper\n", b"old-pepper\n"]
    hosts, log, error = _fleet_restore(tmp_path, monkeypatch, old, restart_fails={"10.0.0.12"})
    assert isinstance(error, BackupError), error
    # Host 1 restarted on the backup's pepper, host 2 failed: the rows go back, and both get their pepper back.
    assert log[:4] == ["rows backup", "10.0.0.11: locked", "10.0.0.11: pepper backup-pepper", "10.0.0.11: restarted"]
    assert "rows before" in log and [h.pepper for h in hosts[:2]] == old[:2]
    assert hosts[2].pepper == old[2] and not any("10.0.0.13" in line for line in log)  # host 3 never touched
    text = str(error)
    assert "restore failed on host 2/3 (10.0.0.12)" in text and "undone:" in text, text
    assert not (tmp_path / "state" / "key_pepper").exists()
    # When even the undo fails: said plainly, with the one command that finishes it.
    again = tmp_path / "again"
    again.mkdir()
    _hosts, log, error = _fleet_restore(again, monkeypatch, old, restart_fails={"10.0.0.12"}, import_fails_after=1)
    text = str(error)
    assert "NOT undone: state.postgres holds the backup's rows (PostgreSQL went away)" in text, text
    assert f"claudegate restore --from {again / 'before.cgbackup'}" in (error.hint or ""), error.hint
