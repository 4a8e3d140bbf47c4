"""The typer front end: exit codes, messages on stderr, data on stdout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claudegate.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    return path


def test_help_teaches() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for word in ("deploy", "plan", "smoke-test", "rollback", "keys", "Exit codes", "examples/local.yaml"):
        assert word in r.output
    r = runner.invoke(app, ["deploy", "--help"])
    assert r.exit_code == 0 and "--dry-run" in r.output and "--accept-host-key" in r.output


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from claudegate.cli import app\n"
        "heavy = [m for m in ('paramiko', 'textual', 'jinja2', 'claudegate.deploy') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_config_exit_2_names_file_line_and_fix(tmp_path: Path) -> None:
    cfg = write(tmp_path, "target:\n  host: local\ndomain: gw.example.com\ntls:\n  mode: internal-ca\n  profil: modern\n"
                          "upstream:\n  api_key_env: ANTHROPIC_API_KEY\n")
    r = runner.invoke(app, ["plan", "--config", str(cfg)])
    assert r.exit_code == 2
    assert f"{cfg}:6:3: tls.profil" in r.stderr and "did you mean" in r.stderr
    assert r.stdout == ""


def test_inline_key_refused_without_echo(tmp_path: Path) -> None:
    secret = "sk-ant-api03-" + "x" * 60
    cfg = write(tmp_path, f"target: {{host: local}}\ndomain: gw.example.com\ntls: {{mode: internal-ca}}\n"
                          f"upstream:\n  api_key: {secret}\n")
    r = runner.invoke(app, ["deploy", "--config", str(cfg), "--yes"])
    assert r.exit_code == 2 and "api_key" in r.stderr and secret not in r.output + r.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["status", "--config", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "nope.yaml" in r.stderr and "fix:" in r.stderr


def test_unreachable_host_is_exit_3(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not a key")
    key.chmod(0o600)
    cfg = write(tmp_path, f"target:\n  host: 127.0.0.1\n  port: 1\n  user: deploy\n  ssh_key: {key}\n"
                          f"  known_hosts: {tmp_path}/kh\ndomain: gw.example.com\ntls: {{mode: internal-ca}}\n"
                          "upstream: {api_key_env: ANTHROPIC_API_KEY}\n")
    r = runner.invoke(app, ["status", "--config", str(cfg)])
    assert r.exit_code == 3, r.output + r.stderr
    assert "127.0.0.1" in r.stderr


def test_render_writes_every_file_but_no_secret(tmp_path: Path) -> None:
    out = tmp_path / "out"
    secret = "sk-ant-api03-" + "z" * 40
    r = runner.invoke(app, ["render", "--config", str(REPO / "examples/local.yaml"), "--out", str(out)],
                      env={"ANTHROPIC_API_KEY": secret})
    assert r.exit_code == 0, r.output + r.stderr
    files = [Path(line) for line in r.stdout.split()]
    assert files and all(f.exists() for f in files)
    names = {f.name for f in files}
    assert "gateway.yaml" in names and any(n.endswith(".conf") for n in names)
    blob = b"".join(f.read_bytes() for f in files)
    assert secret.encode() not in blob
    # The gateway's source ships too (and names PEM markers); no actual key material does.
    assert re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/]{40}", blob) is None
    assert "not written" in r.stderr


def test_init_without_a_terminal_says_what_to_do_instead() -> None:
    r = runner.invoke(app, ["init"])  # CliRunner's stdin is not a terminal: no wizard
    assert r.exit_code == 1 and "needs a terminal" in r.stderr and "init --example remote" in r.stderr


@pytest.mark.parametrize(
    "args", [["keys", "--help"], ["keys", "create", "--help"], ["smoke-test", "--help"], ["renew", "--help"]]
)
def test_subcommand_help(args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 0


def test_every_host_of_hosts_is_tried_and_each_failure_named(tmp_path: Path) -> None:
    """``hosts:``: a day-2 command goes on after a host that fails, names each, exits with the failure's code."""
    key = tmp_path / "id"
    key.write_text("not a key")
    key.chmod(0o600)
    pw = tmp_path / "pw"
    pw.write_text("state-password")
    pw.chmod(0o600)
    entry = f"{{host: 127.0.0.1, port: %d, user: deploy, ssh_key: {key}, known_hosts: {tmp_path}/kh}}"
    cfg = write(tmp_path, f"hosts:\n  - {entry % 1}\n  - {entry % 2}\ndomain: gw.example.com\n"
                          "tls: {mode: internal-ca}\nupstream: {api_key_env: ANTHROPIC_API_KEY}\n"
                          f"state:\n  redis: {{url: 'redis://10.0.0.5:6379/0', password_file: {pw}}}\n"
                          f"  postgres: {{url: 'postgresql://cg@10.0.0.5/cg', password_file: {pw}, tls: disable}}\n")
    for command in (["status"], ["logs", "nginx"], ["rollback"], ["renew"], ["check"]):
        r = runner.invoke(app, [*command, "--config", str(cfg)])
        assert r.exit_code == 3, (command, r.output)
        # Host 2 was tried after host 1 failed; each is named in the error (and in its section of the output;
        # rollback stops at its dry run on every host, before it prints anything).
        # rollback takes the fleet's lock first, in the state tier through a host: no host, no lock.
        what = "fleet lock" if command[0] == "rollback" else command[0]
        assert f"{what} failed on 2 of 2 hosts" in r.stderr, (command, r.stderr)
        assert "host 1/2 (127.0.0.1:1): FAILED: cannot connect" in r.stderr, r.stderr
        assert "host 2/2 (127.0.0.1:2): FAILED: cannot connect" in r.stderr, r.stderr
        if command[0] == "rollback":
            assert "no host got a connection through: nothing was changed" in r.stderr and r.stdout == "", r.output
        else:
            assert "[host 1/2 (127.0.0.1:1)] FAILED:" in r.stdout and "[host 2/2 (127.0.0.1:2)] FAILED:" in r.stdout, r.stdout
    # --json: one document, every host with its error.
    r = runner.invoke(app, ["status", "--json", "--config", str(cfg)])
    doc = json.loads(r.stdout)
    assert r.exit_code == 3 and doc["ok"] is False
    assert [(h["host"], h["ok"]) for h in doc["hosts"]] == [("127.0.0.1:1", False), ("127.0.0.1:2", False)]
    # One key for several hosts is refused before any host is tried.
    r = runner.invoke(app, ["status", "--accept-host-key", "SHA256:x", "--config", str(cfg)])
    assert r.exit_code == 2 and "names one host's key" in r.stderr, r.output


def test_accept_host_key_per_host_is_parsed_and_checked_against_the_hosts(tmp_path: Path) -> None:
    from claudegate.cli.options import host_keys
    from claudegate.errors import ConfigError

    fp1, fp2 = "SHA256:" + "a" * 43, "SHA256:" + "b" * 43
    assert host_keys(None) == (None, {})
    assert host_keys([fp1]) == (fp1, {})
    assert host_keys([f"10.0.0.11={fp1}", f"10.0.0.12:2222={fp2}"]) == (None, {"10.0.0.11": fp1, "10.0.0.12:2222": fp2})
    for bad in ([fp1, fp2], [fp1, f"h={fp2}"], [f"h={fp1}", f"h={fp2}"], ["=x"], ["h="]):
        with pytest.raises(ConfigError):
            host_keys(bad)
    key = tmp_path / "id"
    key.write_text("not a key")
    key.chmod(0o600)
    pw = tmp_path / "pw"
    pw.write_text("state-password")
    pw.chmod(0o600)
    entry = f"{{host: 127.0.0.1, port: %d, user: deploy, ssh_key: {key}, known_hosts: {tmp_path}/kh}}"
    cfg = write(tmp_path, f"hosts:\n  - {entry % 1}\n  - {entry % 2}\ndomain: gw.example.com\n"
                          "tls: {mode: internal-ca}\nupstream: {api_key_env: ANTHROPIC_API_KEY}\n"
                          f"state:\n  redis: {{url: 'redis://10.0.0.5:6379/0', password_file: {pw}}}\n"
                          f"  postgres: {{url: 'postgresql://cg@10.0.0.5/cg', password_file: {pw}, tls: disable}}\n")
    # One key per host: accepted, each host is tried (here: nobody listens, exit 3 for the connection).
    r = runner.invoke(app, ["status", "--accept-host-key", f"127.0.0.1:1={fp1}", "--accept-host-key",
                            f"127.0.0.1:2={fp2}", "--config", str(cfg)])  # fmt: skip
    assert r.exit_code == 3 and "failed on 2 of 2 hosts" in r.stderr, r.output
    # A host the config does not list: refused before anything connects.
    r = runner.invoke(app, ["status", "--accept-host-key", f"10.9.9.9={fp1}", "--config", str(cfg)])
    assert r.exit_code == 2 and "names 10.9.9.9, not a host of this config" in r.stderr, r.output
    # One unnamed key for several hosts: still refused, and the hint says how to name them.
    r = runner.invoke(app, ["status", "--accept-host-key", fp1, "--config", str(cfg)])
    assert r.exit_code == 2 and "HOST=SHA256:" in r.stderr, r.output
