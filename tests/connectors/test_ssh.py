"""The SSH connector against a real sshd on 127.0.0.1."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from claudegate.connectors import SSHConnector, put_file_argv
from claudegate.connectors.known_hosts import KnownHostsFile
from claudegate.errors import (
    CommandFailed,
    CommandTimedOut,
    ConfigError,
    ConnectionFailed,
    HostKeyChanged,
    HostKeyUnknown,
)
from claudegate.redact import Secret
from tests.connectors.conftest import Sshd, make_ssh
from tests.support.fresh_server import generate_ed25519


def ssh_keygen_fingerprint(pub: Path) -> str:
    """What OpenSSH itself says the fingerprint is (``256 SHA256:... comment (ED25519)``)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


# -- commands -------------------------------------------------------------------


def test_run_exit_status_stdout_stderr(trusted: SSHConnector) -> None:
    result = trusted.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert trusted.run(["true"]).exit_status == 0


def test_run_check_raises_with_redacted_stderr_tail(trusted: SSHConnector) -> None:
    trusted.add_secret(Secret("sk-ant-canary-123"))
    with pytest.raises(CommandFailed) as info:
        trusted.run(["sh", "-c", "cat >&2; exit 7"], input=b"leaked sk-ant-canary-123 here\n")
    error = info.value
    assert error.exit_status == 7
    assert error.argv == ["sh", "-c", "cat >&2; exit 7"]
    assert "sk-ant-canary-123" not in str(error)
    assert "leaked ******** here" in error.stderr_tail
    assert trusted.target in str(error) and "exit status 7" in str(error)


def test_argv_is_quoted_for_the_remote_shell(trusted: SSHConnector) -> None:
    args = ["a b", "it's", '"dq"', "$HOME", "`id`", "semi;colon", "new\nline", "*", ""]
    result = trusted.run(["printf", "%s\\0", *args])
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in args]


def test_stdin_bytes_and_stream_both_large(trusted: SSHConnector) -> None:
    assert trusted.run(["cat"], input=b"hello").stdout == b"hello"
    # Both directions at once, bigger than any window/pipe buffer: no deadlock.
    blob = os.urandom(3 << 20)
    assert trusted.run(["cat"], input=blob, timeout=60).stdout == blob
    assert trusted.run(["wc", "-c"], input=io.BytesIO(blob), timeout=60).text.strip() == str(len(blob))


def test_stdin_is_empty_without_input(trusted: SSHConnector) -> None:
    # Without input= the command sees EOF at once instead of hanging.
    assert trusted.run(["cat"], timeout=10).stdout == b""


def test_output_after_exit_is_collected(trusted: SSHConnector) -> None:
    # A background child keeps the output pipe open after the shell exits.
    result = trusted.run(["sh", "-c", "(sleep 0.3; echo late) & echo early"], timeout=10)
    assert result.stdout == b"early\nlate\n"


def test_secret_in_argv_is_refused(trusted: SSHConnector) -> None:
    trusted.add_secret(Secret("sk-ant-never-in-argv"))
    with pytest.raises(ValueError, match="input="):
        trusted.run(["echo", "key=sk-ant-never-in-argv"])


def test_timeout_raises_quickly_and_connection_survives(trusted: SSHConnector) -> None:
    start = time.monotonic()
    with pytest.raises(CommandTimedOut) as info:
        trusted.run(["sh", "-c", "echo partial >&2; sleep 30"], timeout=0.5)
    assert time.monotonic() - start < 3
    assert info.value.exit_status is None
    assert "timed out after 0.5s" in str(info.value)
    assert trusted.run(["echo", "still here"]).text == "still here\n"


def test_default_timeout_applies(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    with make_ssh(sshd, default_timeout=0.3) as conn, pytest.raises(CommandTimedOut):
        conn.run(["sleep", "10"])


def test_sudo_as_root_runs_without_sudo_prefix(trusted: SSHConnector) -> None:
    # Logged in as root (CI): sudo=True must still work, and needs no sudo binary.
    assert trusted.user == "root", "the connector tests run as root"
    assert trusted.is_root
    assert trusted.run(["id", "-u"], sudo=True).text == "0\n"
    assert trusted.prepare_argv(["id", "-u"], sudo=True) == ["id", "-u"]


def test_sudo_argv_for_a_normal_user() -> None:
    conn = SSHConnector("192.0.2.1", user="deploy")
    assert not conn.is_root
    assert conn.prepare_argv(["systemctl", "start", "docker"], sudo=True) == [
        "sudo",
        "-n",
        "--",
        "systemctl",
        "start",
        "docker",
    ]
    assert conn.prepare_argv(["id"], sudo=False) == ["id"]
    assert conn.target == "deploy@192.0.2.1:22"


# -- files ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o400, 0o755])
def test_put_file_sets_mode(trusted: SSHConnector, tmp_path: Path, mode: int) -> None:
    path = tmp_path / "out" / "file.conf"
    path.parent.mkdir()
    trusted.put_file(str(path), b"content\n", mode)
    assert path.read_bytes() == b"content\n"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert os.listdir(path.parent) == ["file.conf"], "no temporary file left behind"


def test_put_file_replaces_atomically(trusted: SSHConnector, tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    old_inode = path.stat().st_ino
    with path.open("rb") as reader:  # a reader of the old file keeps the old content
        trusted.put_file(str(path), b"new", 0o600)
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"
    assert path.stat().st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_put_file_content_never_in_a_wider_file(trusted: SSHConnector, tmp_path: Path) -> None:
    """Pause the upload half-way and look at the temporary file: already 0600, target untouched."""
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    path = tmp_path / "upstream.key"
    path.write_bytes(b"previous")
    path.chmod(0o600)
    half_sent = threading.Event()
    release = threading.Event()

    class SlowSource(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks = [b"sk-ant-first-half-", b"second-half"]

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if not self.chunks:
                return b""
            if len(self.chunks) == 1:
                half_sent.set()
                release.wait(10)
            return self.chunks.pop(0)

    box: dict[str, object] = {}

    def upload() -> None:
        try:
            trusted.run(put_file_argv(str(path), 0o600), input=SlowSource(), timeout=20)  # type: ignore[arg-type]
        except Exception as exc:  # pragma: no cover - reported below
            box["error"] = exc

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        assert half_sent.wait(10)
        deadline = time.monotonic() + 5
        temps: list[Path] = []
        while time.monotonic() < deadline and not temps:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".upstream.key.cg-")]
            time.sleep(0.01)
        assert len(temps) == 1, "the temporary file is in the target's directory"
        assert stat.S_IMODE(temps[0].stat().st_mode) == 0o600
        assert path.read_bytes() == b"previous", "the target is untouched until the rename"
    finally:
        release.set()
        worker.join(20)
    assert "error" not in box, box
    assert path.read_bytes() == b"sk-ant-first-half-second-half"
    assert [p.name for p in tmp_path.iterdir()] == ["upstream.key"]


def test_put_file_owner_and_failure_cleanup(trusted: SSHConnector, tmp_path: Path) -> None:
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    path = tmp_path / "owned"
    trusted.put_file(str(path), b"x", 0o640, owner="nobody:nogroup", sudo=True)
    st = path.stat()
    assert (st.st_uid, st.st_gid) != (0, 0)
    import grp
    import pwd

    assert pwd.getpwuid(st.st_uid).pw_name == "nobody"
    assert grp.getgrgid(st.st_gid).gr_name == "nogroup"
    with pytest.raises(CommandFailed):
        trusted.put_file(str(tmp_path / "bad"), b"x", 0o600, owner="no-such-user-here")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owned"], "temporary file removed on failure"


def test_put_file_rejects_bad_mode_and_owner(trusted: SSHConnector, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        trusted.put_file(str(tmp_path / "f"), b"", 0o10000)
    with pytest.raises(ConfigError):
        trusted.put_file(str(tmp_path / "f"), b"", 0o600, owner="root; rm -rf /")


def test_put_file_to_missing_directory_fails(trusted: SSHConnector, tmp_path: Path) -> None:
    with pytest.raises(CommandFailed):
        trusted.put_file(str(tmp_path / "nope" / "f"), b"x", 0o600)


def test_get_file(trusted: SSHConnector, tmp_path: Path) -> None:
    path = tmp_path / "with space's"
    path.write_bytes(b"\x00binary\xff")
    assert trusted.get_file(str(path)) == b"\x00binary\xff"
    assert trusted.get_file(str(tmp_path / "missing")) is None
    assert trusted.get_file(str(tmp_path / "missing"), sudo=True) is None
    with pytest.raises(CommandFailed):
        trusted.get_file(str(tmp_path))  # a directory is an error, not "missing"


# -- connecting and authenticating --------------------------------------------------


def test_closed_port_fails_fast_naming_host_and_port(sshd: Sshd) -> None:
    port = sshd.port
    sshd.stop()
    start = time.monotonic()
    with pytest.raises(ConnectionFailed) as info:
        make_ssh(sshd).connect()
    assert time.monotonic() - start < 2
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.exit_code == 3


def test_not_an_ssh_server(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
            SSHConnector(
                "127.0.0.1", port=port, user="x", connect_timeout=3, known_hosts=tmp_path / "kh"
            ).connect()
    finally:
        listener.close()


def test_wrong_client_key_is_an_auth_failure(sshd: Sshd, tmp_path: Path) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    other = tmp_path / "other_key"
    other.write_bytes(generate_ed25519("stranger").private_openssh)
    other.chmod(0o600)
    with pytest.raises(ConnectionFailed) as info:
        make_ssh(sshd, key_filename=other).connect()
    message = str(info.value)
    assert "authentication" in message and f"as {sshd.user}" in message and str(other) in message
    assert info.value.hint and "authorized_keys" in info.value.hint


def test_missing_key_file_is_a_config_error(sshd: Sshd, tmp_path: Path) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    with pytest.raises(ConfigError, match="does not exist"):
        make_ssh(sshd, key_filename=tmp_path / "nope").connect()


def test_encrypted_key_needs_its_passphrase(sshd: Sshd, tmp_path: Path) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    key = tmp_path / "enc_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f", str(key)], check=True)
    with (sshd.dir / "authorized_keys").open("a") as fh:
        fh.write((tmp_path / "enc_key.pub").read_text())
    with pytest.raises(ConfigError, match="encrypted"):
        make_ssh(sshd, key_filename=key).connect()
    with make_ssh(sshd, key_filename=key, passphrase=Secret("correct horse")) as conn:
        assert conn.run(["echo", "ok"]).text == "ok\n"


def test_default_key_files_are_used(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "id_ed25519").write_bytes(sshd.client_key_path.read_bytes())
    (ssh_dir / "id_ed25519").chmod(0o600)
    with make_ssh(sshd, key_filename=None, look_for_keys=True) as conn:
        assert conn.run(["echo", "ok"]).text == "ok\n"


# -- host keys -----------------------------------------------------------------------


def test_unknown_host_key_strict(sshd: Sshd) -> None:
    with pytest.raises(HostKeyUnknown) as info:
        make_ssh(sshd).connect()
    error = info.value
    assert error.fingerprint == ssh_keygen_fingerprint(sshd.host_key_pub_path)
    assert error.fingerprint == sshd.host_key.fingerprint
    assert error.key_type == "ssh-ed25519"
    assert error.fingerprint in str(error) and f"[127.0.0.1]:{sshd.port}" in str(error)
    assert error.hint and f"--accept-host-key {error.fingerprint}" in error.hint
    assert error.exit_code == 4
    assert not sshd.known_hosts.exists(), "strict never writes"


def test_accept_new_appends_exactly_one_line_then_strict_is_ok(sshd: Sshd) -> None:
    with make_ssh(sshd, host_key_policy="accept-new") as conn:
        assert conn.host_key_fingerprint == sshd.host_key.fingerprint
        conn.run(["true"])
    assert sshd.known_hosts.read_text() == sshd.known_hosts_line()
    assert stat.S_IMODE(sshd.known_hosts.stat().st_mode) == 0o600
    before = sshd.known_hosts.read_bytes()
    with make_ssh(sshd) as conn:  # strict now succeeds
        conn.run(["true"])
    with make_ssh(sshd, host_key_policy="accept-new") as conn:  # and nothing more is added
        conn.run(["true"])
    assert sshd.known_hosts.read_bytes() == before


def test_our_line_is_valid_for_openssh(sshd: Sshd) -> None:
    """OpenSSH's own client accepts the host by the line we wrote, strictly."""
    make_ssh(sshd, host_key_policy="accept-new").connect().close()
    result = subprocess.run(
        [
            "ssh", "-p", str(sshd.port), "-i", str(sshd.client_key_path),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            f"{sshd.user}@127.0.0.1", "echo", "openssh-ok",
        ],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.stdout == "openssh-ok\n", result.stderr


def test_expected_fingerprint_match_is_recorded(sshd: Sshd) -> None:
    with make_ssh(sshd, expected_fingerprint=sshd.host_key.fingerprint) as conn:
        conn.run(["true"])
    assert sshd.known_hosts.read_text() == sshd.known_hosts_line()


def test_expected_fingerprint_mismatch(sshd: Sshd) -> None:
    wrong = generate_ed25519("impostor").fingerprint
    with pytest.raises(HostKeyChanged) as info:
        make_ssh(sshd, expected_fingerprint=wrong).connect()
    error = info.value
    assert (error.expected_fingerprint, error.offered_fingerprint) == (wrong, sshd.host_key.fingerprint)
    assert error.known_hosts is None and error.line is None
    assert not sshd.known_hosts.exists()


def test_malformed_expected_fingerprint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SHA256"):
        SSHConnector("192.0.2.1", expected_fingerprint="MD5:aa:bb")


def test_changed_host_key_names_file_and_line(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    other = generate_ed25519("other-host")
    sshd.known_hosts.write_text(
        "# claudegate known hosts\n"
        "\n"
        f"10.9.9.9 {' '.join(other.public_line.split()[:2])}\n" + sshd.known_hosts_line()
    )
    before = sshd.known_hosts.read_bytes()
    old = sshd.host_key
    new = generate_ed25519("reinstalled")
    sshd.restart([new])
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostKeyChanged) as info:
            make_ssh(sshd, host_key_policy=policy).connect()
        error = info.value
        assert error.known_hosts == sshd.known_hosts and error.line == 4
        assert error.expected_fingerprint == old.fingerprint
        assert error.offered_fingerprint == new.fingerprint
        message = str(error)
        assert f"{sshd.known_hosts} line 4" in message and new.fingerprint in message
        assert error.hint and "line 4" in error.hint
    # Even a matching --accept-host-key does not override a recorded key.
    with pytest.raises(HostKeyChanged):
        make_ssh(sshd, expected_fingerprint=new.fingerprint).connect()
    assert sshd.known_hosts.read_bytes() == before


def test_known_hosts_is_appended_never_rewritten(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    unrelated = generate_ed25519("x")
    blob = " ".join(unrelated.public_line.split()[:2])
    original = (
        "# my notes, keep me   \n"
        f"example.com,192.0.2.7 {blob} comment with  spaces\n"
        "@cert-authority *.example.com " + blob + "\n"
        "garbage line that is not a key\n"
        "\n"
        "\t# indented comment\r\n"
        f"|1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|bm90LWEtcmVhbC1oYXNoLWF0LWFsbA== {blob}"  # no final newline
    ).encode()
    sshd.known_hosts.write_bytes(original)
    make_ssh(sshd, host_key_policy="accept-new").connect().close()
    after = sshd.known_hosts.read_bytes()
    assert after.startswith(original)
    assert after[len(original) :] == b"\n" + sshd.known_hosts_line().encode()


def test_hashed_entries_are_honoured(sshd: Sshd) -> None:
    kh = KnownHostsFile(sshd.known_hosts)
    key_type, blob = sshd.host_key.public_line.split()[:2]
    kh.append(sshd.host, sshd.port, key_type, blob, hashed=True)
    text = sshd.known_hosts.read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text
    # OpenSSH finds it too.
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(sshd.known_hosts)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.returncode == 0 and "Host [127.0.0.1]" in found.stdout
    with make_ssh(sshd) as conn:
        conn.run(["true"])
    # A hashed entry for a different key is a changed key, with its line.
    sshd.restart([generate_ed25519("new")])
    with pytest.raises(HostKeyChanged) as info:
        make_ssh(sshd).connect()
    assert info.value.line == 1


def test_hashed_entry_written_by_ssh_keygen(sshd: Sshd, tmp_path: Path) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    subprocess.run(["ssh-keygen", "-H", "-f", str(sshd.known_hosts)], check=True, capture_output=True)
    assert sshd.known_hosts.read_text().startswith("|1|")
    with make_ssh(sshd) as conn:
        conn.run(["true"])


def test_wildcard_and_negated_patterns(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    key = " ".join(sshd.host_key.public_line.split()[:2])
    sshd.known_hosts.write_text(f"[127.0.0.*]:{sshd.port} {key}\n")
    with make_ssh(sshd) as conn:
        conn.run(["true"])
    sshd.known_hosts.write_text(f"[127.0.0.*]:{sshd.port},![127.0.0.1]:{sshd.port} {key}\n")
    with pytest.raises(HostKeyUnknown):
        make_ssh(sshd).connect()


def test_recorded_key_type_is_preferred(sshd: Sshd) -> None:
    """A server with several host keys: we ask for the type on record (no false 'changed')."""
    ecdsa_dir = sshd.dir / "ecdsa"
    ecdsa_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa_dir / "k")], check=True)
    from tests.support.fresh_server import KeyPair

    ecdsa = KeyPair((ecdsa_dir / "k").read_bytes(), (ecdsa_dir / "k.pub").read_text().strip())
    sshd.restart([sshd.host_key, ecdsa])  # ed25519 first: paramiko's default choice
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line(ecdsa))
    with make_ssh(sshd) as conn:
        assert conn.host_key_fingerprint == ecdsa.fingerprint
    # Without a record, the fingerprint shown is the ed25519 one (as OpenSSH shows first).
    sshd.known_hosts.unlink()
    with pytest.raises(HostKeyUnknown) as info:
        make_ssh(sshd).connect()
    assert info.value.fingerprint == sshd.host_key.fingerprint


def test_revoked_key_is_refused(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    key = " ".join(sshd.host_key.public_line.split()[:2])
    sshd.known_hosts.write_text(f"@revoked * {key}\n")
    from claudegate.errors import HostKeyError

    with pytest.raises(HostKeyError, match="revoked"):
        make_ssh(sshd, host_key_policy="accept-new").connect()


def test_connection_dropped_mid_command(trusted: SSHConnector, sshd: Sshd) -> None:
    trusted.run(["true"])
    box: dict[str, BaseException] = {}

    def long_command() -> None:
        try:
            trusted.run(["sleep", "30"], timeout=20)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=long_command)
    worker.start()
    time.sleep(0.3)
    assert trusted._transport is not None
    trusted._transport.sock.close()  # the network goes away
    worker.join(10)
    assert isinstance(box.get("error"), ConnectionFailed), box
    # The next command reconnects (same verified host key).
    assert trusted.run(["echo", "back"]).text == "back\n"


def test_context_manager_and_close_twice(sshd: Sshd) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    conn = make_ssh(sshd)
    assert not conn.connected
    with conn:
        assert conn.connected
    assert not conn.connected
    conn.close()
    # Lazy connect on first use.
    assert conn.run(["echo", "lazy"]).text == "lazy\n"
    conn.close()


def test_agent_authentication(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sshd.known_hosts.parent.mkdir(parents=True)
    sshd.known_hosts.write_text(sshd.known_hosts_line())
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key_path)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with make_ssh(sshd, key_filename=None, use_agent=True) as conn:
            assert conn.run(["echo", "agent"]).text == "agent\n"
        # Without the agent there is nothing to try: a clear error, not a hang.
        with pytest.raises(ConnectionFailed, match="no SSH key"):
            make_ssh(sshd, key_filename=None, use_agent=False).connect()
    finally:
        agent.terminate()
        agent.wait(5)
