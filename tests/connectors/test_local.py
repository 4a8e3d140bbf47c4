"""The local connector (subprocess), and the pure builders shared by all connectors."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claudegate.connectors import LocalConnector, get_file_argv, put_file_argv, sudo_argv
from claudegate.errors import ClaudegateError, CommandFailed, CommandTimedOut, ConfigError
from claudegate.redact import Secret


@pytest.fixture
def local() -> LocalConnector:
    return LocalConnector()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


# -- builders (exact commands, no execution) -------------------------------------


def test_sudo_argv() -> None:
    assert sudo_argv(["docker", "ps"], sudo=True, is_root=False) == ["sudo", "-n", "--", "docker", "ps"]
    assert sudo_argv(["docker", "ps"], sudo=True, is_root=True) == ["docker", "ps"]
    assert sudo_argv(["docker", "ps"], sudo=False, is_root=False) == ["docker", "ps"]
    with pytest.raises(ValueError):
        sudo_argv([], sudo=True, is_root=False)


def test_put_file_argv_passes_values_as_arguments() -> None:
    argv = put_file_argv("/etc/claudegate/it's here.key", 0o600, "root:docker")
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    assert argv[3:] == [
        "claudegate-put-file",
        "/etc/claudegate/it's here.key",
        "/etc/claudegate",
        "it's here.key",
        "0600",
        "0600",
        "root:docker",
    ]
    # Nothing is spliced into the script; mode before content; rename last.
    assert "claudegate/" not in script and "it's" not in script
    assert script.index("chmod") < script.index("cat >") < script.index("mv -f")
    assert script.index("chown") < script.index("cat >")
    assert put_file_argv("f", 0o400)[4:] == ["f", ".", "f", "0600", "0400", ""]


def test_put_file_argv_validates() -> None:
    with pytest.raises(ConfigError):
        put_file_argv("/x", 0o20000)
    with pytest.raises(ConfigError):
        put_file_argv("/x", 0o600, "root;id")
    with pytest.raises(ConfigError):
        put_file_argv("/dir/", 0o600)


def test_get_file_argv() -> None:
    argv = get_file_argv("/etc/x y")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["claudegate-get-file", "/etc/x y"]


# -- run ---------------------------------------------------------------------------


def test_run_exit_status_and_output(local: LocalConnector) -> None:
    result = local.run(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False)
    assert (result.exit_status, result.stdout, result.stderr, result.ok) == (4, b"out\n", b"err\n", False)
    with pytest.raises(CommandFailed) as info:
        local.run(["sh", "-c", "echo boom >&2; exit 4"])
    assert info.value.exit_status == 4 and "boom" in info.value.stderr_tail
    assert "local" in str(info.value)


def test_run_stdin(local: LocalConnector) -> None:
    assert local.run(["cat"], input=b"hi").stdout == b"hi"
    assert local.run(["cat"]).stdout == b""  # no input: EOF, not a hang
    blob = os.urandom(2 << 20)
    assert local.run(["cat"], input=blob).stdout == blob
    assert local.run(["wc", "-c"], input=io.BytesIO(blob)).text.strip() == str(len(blob))


def test_run_missing_command(local: LocalConnector) -> None:
    result = local.run(["no-such-command-here"], check=False)
    assert result.exit_status == 127
    with pytest.raises(CommandFailed):
        local.run(["no-such-command-here"])


def test_run_timeout_kills_the_process_group(local: LocalConnector, work: Path) -> None:
    marker = work / "survivor"
    start = time.monotonic()
    with pytest.raises(CommandTimedOut) as info:
        local.run(["sh", "-c", f"(sleep 1; touch {marker}) & sleep 30"], timeout=0.3)
    assert time.monotonic() - start < 3
    assert info.value.exit_status is None
    time.sleep(1.3)
    assert not marker.exists(), "the background child was killed with its group"


def test_default_timeout() -> None:
    with pytest.raises(CommandTimedOut):
        LocalConnector(default_timeout=0.2).run(["sleep", "5"])


def test_secret_never_in_argv_and_redacted_in_errors(local: LocalConnector) -> None:
    secret = Secret("sk-ant-local-canary")
    local.add_secret(secret)
    with pytest.raises(ValueError):
        local.run(["echo", secret.reveal()])
    with pytest.raises(CommandFailed) as info:
        local.run(["sh", "-c", "cat >&2; exit 1"], input=secret.reveal_bytes())
    assert "sk-ant-local-canary" not in str(info.value)
    assert "********" in str(info.value)


def test_sudo_as_root(local: LocalConnector, work: Path) -> None:
    assert local.is_root, "CI runs the tests as root"
    assert local.run(["id", "-u"], sudo=True).text == "0\n"
    local.put_file(str(work / "f"), b"x", 0o600, owner="nobody", sudo=True)
    assert (work / "f").stat().st_uid != 0
    assert local.get_file(str(work / "f"), sudo=True) == b"x"


# -- files -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o400, 0o750])
def test_put_file_modes(local: LocalConnector, work: Path, mode: int) -> None:
    path = work / "f"
    local.put_file(str(path), b"data", mode)
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert os.listdir(work) == ["f"]


def test_put_file_mode_is_set_before_content(
    local: LocalConnector, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment the data is flushed to disk, the temp file already has its final mode."""
    seen: list[tuple[str, int, int]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        temps = [name for name in os.listdir(work) if name.startswith(".secret.cg-")]
        seen.append((temps[0], stat.S_IMODE(st.st_mode), st.st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    (work / "secret").write_bytes(b"old")
    local.put_file(str(work / "secret"), b"sk-ant-xyz", 0o600)
    assert len(seen) == 1
    assert seen[0][1:] == (0o600, len(b"sk-ant-xyz"))
    assert (work / "secret").read_bytes() == b"sk-ant-xyz"


def test_put_file_atomic_replace(local: LocalConnector, work: Path) -> None:
    path = work / "conf"
    path.write_bytes(b"old")
    inode = path.stat().st_ino
    with path.open("rb") as reader:
        local.put_file(str(path), b"new", 0o644)
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new" and path.stat().st_ino != inode


def test_put_file_failure_leaves_nothing(local: LocalConnector, work: Path) -> None:
    with pytest.raises(ClaudegateError):
        local.put_file(str(work / "f"), b"x", 0o600, owner="no-such-user-zz")
    assert os.listdir(work) == []
    with pytest.raises(ClaudegateError, match="cannot write"):
        local.put_file(str(work / "missing-dir" / "f"), b"x", 0o600)


def test_shell_put_file_script_locally(local: LocalConnector, work: Path) -> None:
    """The script the SSH connector (and local sudo) uses, run here: modes, owner, rename."""
    path = work / "via script"
    local.run(put_file_argv(str(path), 0o400, "nobody"), input=b"secret")
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert os.listdir(work) == ["via script"]
    # Replacing a read-only file works too.
    local.run(put_file_argv(str(path), 0o400), input=b"again")
    assert path.read_bytes() == b"again"


def test_get_file(local: LocalConnector, work: Path) -> None:
    (work / "f").write_bytes(b"abc")
    assert local.get_file(str(work / "f")) == b"abc"
    assert local.get_file(str(work / "nope")) is None
    with pytest.raises(ClaudegateError):
        local.get_file(str(work))
    # The shell variant used over SSH agrees.
    assert local.run(get_file_argv(str(work / "nope")), check=False).exit_status == 100


def test_context_manager(work: Path) -> None:
    with LocalConnector() as conn:
        assert conn.run(["echo", "ok"]).text == "ok\n"
    assert repr(conn) == "<LocalConnector local>"


def test_core_modules_do_not_import_ui_libraries() -> None:
    code = (
        "import sys\n"
        "import claudegate.connectors, claudegate.connectors.ssh, claudegate.connectors.local\n"
        "import claudegate.errors, claudegate.redact\n"
        "bad = [m for m in ('textual', 'typer', 'rich') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
