"""The one writer of the operator's secret files: 0600 from the first byte, atomic, never through a symlink."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from claudegate.private_files import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_new_file_is_0600_in_a_new_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private(tmp_path / "state" / "keys" / "team-a.key", b"cgk_secret\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"cgk_secret\n"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["team-a.key"]  # no temporary left


def test_an_existing_wide_open_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "anthropic_api_key"
    path.write_bytes(b"old")
    path.chmod(0o666)
    write_private(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o600


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    link = tmp_path / "ca.key"
    link.symlink_to(victim)
    write_private(link, b"private key")
    assert victim.read_bytes() == b"do not touch"
    assert not link.is_symlink() and link.read_bytes() == b"private key" and _mode(link) == 0o600


@pytest.mark.parametrize("existing", ["file", "dangling symlink"])
def test_exclusive_refuses_any_existing_entry_and_leaves_it(tmp_path: Path, existing: str) -> None:
    path = tmp_path / "backup.cgbak"
    if existing == "file":
        path.write_bytes(b"earlier backup")
    else:
        path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_private(path, b"new backup", exclusive=True)
    assert not (tmp_path / "elsewhere").exists()
    if existing == "file":
        assert path.read_bytes() == b"earlier backup"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.cgbak"]  # no temporary left


def test_exclusive_writes_a_new_file(tmp_path: Path) -> None:
    path = write_private(tmp_path / "backup.cgbak", b"data", exclusive=True)
    assert path.read_bytes() == b"data" and _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["backup.cgbak"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_private(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "draft.json"
    big = [bytes([65 + n]) * 4_000_000 for n in range(4)]
    write_private(path, big[0])
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            seen.add(len(set(data)) if len(data) == 4_000_000 else -len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for data in big[1:] * 3:
            write_private(path, data)
    finally:
        stop.set()
        reader.join()
    assert seen == {1}  # always one whole file, of one letter


def test_every_operator_side_secret_writer_uses_it() -> None:
    """No writer of the old kinds is left: os.open with O_CREAT or fchmod appear only in the helper."""
    root = Path(__file__).resolve().parents[2] / "installer" / "claudegate"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        # local.py: the target's put_file (its own owner and mode); known_hosts.py: appends public
        # host keys under a lock, never rewrites the file
        if p.name not in ("private_files.py", "local.py", "known_hosts.py")
        and ("os.fchmod" in p.read_text() or "os.O_CREAT" in p.read_text())
    ]
    assert offenders == []
