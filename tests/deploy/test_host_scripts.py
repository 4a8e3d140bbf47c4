"""The host shell scripts and their fact parsers, run for real on this machine (POSIX sh)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from claudegate.connectors import LocalConnector
from claudegate.deploy import host_cli
from claudegate.deploy.build_contexts import tar_bytes
from claudegate.deploy.facts import parse_file_stats, parse_links, parse_sha256
from claudegate.deploy.layout import DirSpec

local = LocalConnector(default_timeout=30)


def test_ensure_dir_creates_and_repairs_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "a dir" / "inner"
    local.run(host_cli.ensure_dir(DirSpec(str(target), 0o750, os.getuid(), os.getgid())))
    assert target.is_dir() and target.stat().st_mode & 0o777 == 0o750
    target.chmod(0o777)
    local.run(host_cli.ensure_dir(DirSpec(str(target), 0o700, 10001, 10001)))
    st = target.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o700, 10001, 10001)


def test_file_stats_and_hashes_report_only_what_exists(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    (tmp_path / "f").chmod(0o640)
    (tmp_path / "l").symlink_to("f")
    paths = [str(tmp_path / n) for n in ("f", "missing", "l")] + [str(tmp_path)]
    stats = parse_file_stats(local.run(host_cli.file_stats(paths)).text)
    assert set(stats) == {str(tmp_path / "f"), str(tmp_path / "l"), str(tmp_path)}
    assert stats[str(tmp_path / "f")].mode == 0o640 and stats[str(tmp_path / "f")].kind == "regular file"
    assert stats[str(tmp_path)].kind == "directory"
    assert stats[str(tmp_path / "l")].kind == "symbolic link"
    digests = parse_sha256(local.run(host_cli.file_sha256(paths)).text)
    assert digests == {
        str(tmp_path / "f"): hashlib.sha256(b"hello").hexdigest(),
        str(tmp_path / "l"): hashlib.sha256(b"hello").hexdigest(),  # -f follows the link
    }


def test_symlinks_are_replaced_atomically_and_read_back(tmp_path: Path) -> None:
    link = str(tmp_path / "current")
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    local.run(host_cli.set_symlink(link, "r1"))
    local.run(host_cli.set_symlink(link, "r2"))
    assert os.readlink(link) == "r2"
    assert not (tmp_path / "current.tmp").exists()
    links = parse_links(local.run(host_cli.read_links([link, str(tmp_path / "nope")])).text)
    assert links == {link: "r2"}


def test_extract_tar_replaces_a_directory_whole(tmp_path: Path) -> None:
    dest = tmp_path / "releases" / "abc"
    dest.parent.mkdir()
    local.run(
        host_cli.extract_tar(str(dest)), input=tar_bytes({"nginx/nginx.conf": b"one", "release.json": b"{}"})
    )
    assert (dest / "nginx" / "nginx.conf").read_bytes() == b"one"
    local.run(host_cli.extract_tar(str(dest)), input=tar_bytes({"release.json": b"{}"}))
    assert sorted(p.name for p in dest.iterdir()) == ["release.json"]
    assert [p.name for p in dest.parent.iterdir()] == ["abc"]  # no temporary directory left
    assert dest.stat().st_mode & 0o777 == 0o755


def test_tar_bytes_are_deterministic() -> None:
    files = {"b/c.txt": b"x", "a.txt": b"y"}
    assert tar_bytes(files) == tar_bytes(dict(reversed(list(files.items()))))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(files))) as tar:
        assert [m.name for m in tar.getmembers()] == ["a.txt", "b", "b/c.txt"]
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_list_dir_and_remove(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / ".hidden").write_text("")
    assert sorted(local.run(host_cli.list_dir(str(tmp_path))).text.split()) == [".hidden", "x"]
    local.run(host_cli.remove_paths(str(tmp_path / "x"), str(tmp_path / ".hidden")))
    assert list(tmp_path.iterdir()) == []


def test_acme_copy_follows_certbots_links_and_makes_the_key_private(tmp_path: Path) -> None:
    from claudegate.deploy.steps.acme import copy_live_argv

    archive, live, tls = tmp_path / "archive", tmp_path / "live", tmp_path / "tls"
    for directory in (archive, live, tls):
        directory.mkdir()
    for name in ("fullchain", "chain", "privkey"):
        (archive / f"{name}1.pem").write_text(name)
        (live / f"{name}.pem").symlink_to(f"../archive/{name}1.pem")
    local.run(copy_live_argv(str(live), str(tls)))
    assert sorted(p.name for p in tls.iterdir()) == ["chain.pem", "fullchain.pem", "privkey.pem"]
    assert not (tls / "privkey.pem").is_symlink() and (tls / "privkey.pem").read_text() == "privkey"
    assert (tls / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert (tls / "fullchain.pem").stat().st_mode & 0o777 == 0o644


# --- symlink attacks: a root-run step never follows a link planted for it ----------------


def test_ensure_dir_refuses_a_planted_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    os.chown(victim, 0, 0)
    planted = tmp_path / "secrets"
    planted.symlink_to(victim)
    result = local.run(host_cli.ensure_dir(DirSpec(str(planted), 0o750, 10001, 10001)), check=False)
    assert result.exit_status != 0 and b"symlink" in result.stderr
    st = victim.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o700, 0, 0)
    # A dangling link is not followed either (mkdir -p would create its target).
    dangling = tmp_path / "data"
    dangling.symlink_to(tmp_path / "made-by-link")
    assert not local.run(host_cli.ensure_dir(DirSpec(str(dangling), 0o700)), check=False).ok
    assert not (tmp_path / "made-by-link").exists()


def test_put_file_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    from claudegate.connectors.base import put_file_argv

    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    victim.chmod(0o644)
    target = tmp_path / "anthropic_api_key"
    target.symlink_to(victim)
    # The portable script the SSH connector runs (as root, through sudo).
    local.run(put_file_argv(str(target), 0o640, "0:0"), input=b"sk-ant-secret")
    assert victim.read_bytes() == b"do not touch" and victim.stat().st_mode & 0o777 == 0o644
    assert not target.is_symlink() and target.read_bytes() == b"sk-ant-secret"
    st = target.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, 0)


def test_every_chown_in_host_scripts_keeps_off_symlinks() -> None:
    """chown without -h follows a symlink: every host script uses -h."""
    import re

    from claudegate.connectors import base
    from claudegate.deploy import lock
    from claudegate.deploy.steps import acme, files

    scripts = [
        text
        for module in (host_cli, base, lock, acme, files)
        for text in (v for v in vars(module).values() if isinstance(v, str))
    ]
    import inspect

    scripts += [inspect.getsource(files)]
    found = 0
    for text in scripts:
        for match in re.finditer(r"\bchown\b([^\n;&|]*)", text):
            found += 1
            assert match.group(1).lstrip().startswith("-h"), match.group(0)
    assert found >= 3  # the layout, put-file and pepper-fix scripts were seen
