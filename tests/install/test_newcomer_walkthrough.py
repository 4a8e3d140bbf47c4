"""The newcomer's quick start, as the README gives it (issue 14): from a fresh ``git clone``,
``bash install.sh --demo`` in a real pseudo-terminal installs claudegate, deploys the local
stack in front of the labelled demo echo upstream and prints a key; the official ``anthropic``
SDK gets a 200 through nginx and the gateway with it; ``claudegate try --stop`` leaves nothing
behind (no container, network, host directory or config of the demo).

It runs with a fresh HOME, so pip's and claudegate's caches start empty: the times it prints
(first line on the screen, first 200) are cold for the install, warm for Docker's image layers
when an earlier run left them. Docker work: run under the docker lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx2
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
DEMO_PREFIX = "claudegate-demo"
PASSED_ENV = ("PIP_", "SSL_CERT_", "REQUESTS_CA", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "no_proxy", "NO_PROXY")  # fmt: skip
#: The pinned npm clients .ci/run installs (Claude Code among them), as tests/gateway/test_node_clients.py.
NODE_CLIENTS = Path(os.environ.get("CLAUDEGATE_NODE_CLIENTS", REPO / ".venv-tools" / "node"))
KEY = re.compile(rb"demo client key \(shown once[^)]*\): (cgk_[A-Za-z0-9_-]+)")


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


def _demo_leftovers() -> list[str]:
    containers = _docker("ps", "-a", "--format", "{{.Names}}").split()
    networks = _docker("network", "ls", "--format", "{{.Name}}").split()
    found = [n for n in containers + networks if n.startswith(DEMO_PREFIX)]
    if Path("/opt/claudegate-demo").exists():
        found.append("/opt/claudegate-demo")
    return found


class Pty:
    """A command on a pseudo-terminal of 120x40, its screen bytes kept with the time each arrived."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.started = time.monotonic()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)  # noqa: S606 - the walk-through runs the README's line
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.seen = b""
        self.first_output: float | None = None
        self.status: int | None = None

    def read_until(self, pattern: re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = pattern.search(self.seen)
            if found:
                return found
            if not self._read(0.5):
                break
        found = pattern.search(self.seen)
        assert found, f"{pattern.pattern!r} never appeared; the screen:\n{self.seen.decode(errors='replace')[-4000:]}"
        return found

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], wait)
        if not ready:
            return self.status is None and not self._exited()
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        if self.first_output is None:
            self.first_output = time.monotonic() - self.started
        self.seen += chunk
        return True

    def _exited(self) -> bool:
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.status = os.waitstatus_to_exitcode(status)
        return bool(done)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            self._read(0.2)
            self._exited()
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise AssertionError(f"still running after {timeout} s:\n{self.seen.decode(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            os.close(self.fd)
        return self.status


def _sdk(ca_file: Path, key: str) -> anthropic.Anthropic:
    http = httpx2.Client(verify=ssl.create_default_context(cafile=str(ca_file)), timeout=30, trust_env=False)
    # The SDK's default retries: right after the deploy the smoke test's burst may still fill the
    # per-address bucket, and a 429 with Retry-After is what a newcomer's SDK waits out too.
    return anthropic.Anthropic(api_key=key, base_url="https://localhost:8443", http_client=http, max_retries=2)


def test_fresh_clone_install_demo_reaches_a_200_and_stop_leaves_nothing(tmp_path: Path) -> None:
    assert not _demo_leftovers(), "a demo is already deployed on this machine's Docker"
    clone = tmp_path / "claudegate"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    # The machine's own ways to reach packages (pip's and TLS's settings) pass through; nothing of claudegate.
    passed = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    env = {
        **passed,
        "PATH": f"{home / '.local' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(home),  # a newcomer's: empty caches, nothing of claudegate
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
    }
    try:
        _walk(clone, home, env, tmp_path)
    finally:
        if _demo_leftovers():  # a failed walk must not leave the demo behind for the next run
            subprocess.run([str(home / ".local" / "bin" / "claudegate"), "try", "--stop", "--yes"],
                           env=env, capture_output=True, timeout=300, check=False)  # fmt: skip


def _walk(clone: Path, home: Path, env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Pty(["bash", str(clone / "install.sh"), "--demo"], env, tmp_path)
    shell.read_until(re.compile(rb"installed: claudegate \d"), timeout=900)
    installed = time.monotonic() - started
    found = shell.read_until(KEY, timeout=1500)
    key_shown = time.monotonic() - started
    key = found.group(1).decode()
    shell.read_until(re.compile(rb"claudegate try --stop"), timeout=30)
    assert shell.wait(60) == 0
    screen = shell.seen.decode(errors="replace")
    demo_dir = home / ".config" / "claudegate" / "demo"
    ca_file = demo_dir / "state" / "ca.pem"
    # The snippets name what works: the URL, the CA, the key; the upstream is labelled a demo.
    assert f"curl -sS --cacert {ca_file}" in screen and "https://localhost:8443/v1/messages" in screen
    assert "ANTHROPIC_BASE_URL=https://localhost:8443" in screen and "not from Claude" in screen

    reply = _sdk(ca_file, key).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Hello from a newcomer"}]
    )
    first_200 = time.monotonic() - started
    assert reply.content[0].type == "text" and reply.content[0].text == "echo: Hello from a newcomer"

    # The printed snippets work as printed (curl, and the Python one with this test's interpreter).
    text = screen.replace("\r\n", "\n")
    curl = text.split("curl:\n", 1)[1].split("\n\n", 1)[0]
    time.sleep(2)  # the smoke test's burst drains from the per-address bucket
    done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(done.stdout)["content"] == [{"type": "text", "text": "echo: Hello"}], (curl, done.stderr)
    python = text.split("Python (pip install anthropic):\n", 1)[1].split("\n\n", 1)[0]
    python = python.replace("python3 -c", f"{sys.executable} -c")
    done = subprocess.run(["bash", "-c", python], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip() == "echo: Hello", (python, done.stdout, done.stderr)

    # ... and the Claude Code one: its variables as printed, then Claude Code itself in print mode
    # (the launcher of the pinned install; `claude` on a user's PATH is the same program).
    claude_line = text.split("Claude Code:\n", 1)[1].split("\n", 1)[0].strip()
    assert claude_line.endswith(" claude"), claude_line
    assignments = dict(item.split("=", 1) for item in claude_line.removesuffix(" claude").split())
    assert set(assignments) == {"ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "NODE_EXTRA_CA_CERTS"}, assignments
    cc_home = tmp_path / "claude-code-home"
    cc_home.mkdir()
    cc_env = {
        "PATH": env["PATH"], "HOME": str(cc_home), "TERM": "dumb", **assignments,
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    }  # fmt: skip
    launcher = NODE_CLIENTS / "node_modules" / "@anthropic-ai" / "claude-code" / "cli-wrapper.cjs"
    assert launcher.is_file(), f"{launcher}: .ci/run installs the npm clients (or set CLAUDEGATE_NODE_CLIENTS)"
    done = subprocess.run(["node", str(launcher), "-p", "Hello from Claude Code", "--model", "claude-sonnet-4-6"],
                          env=cc_env, capture_output=True, text=True, timeout=180, cwd=cc_home, check=False)  # fmt: skip
    assert done.returncode == 0 and "echo:" in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Hello from Claude Code" in done.stdout

    with _sdk(ca_file, key).messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "one two three four"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: one two three four"
    # A wrong key never reaches the echo.
    with pytest.raises(anthropic.AuthenticationError):
        _sdk(ca_file, "cgk_" + "0" * 40).models.list()

    # The echo upstream is its own, labelled container; the gateway's config points at it.
    upstream = json.loads(_docker("inspect", "claudegate-demo-upstream"))[0]
    assert upstream["Config"]["Labels"].get("org.claudegate.demo") == "echo-upstream"
    assert "http://claudegate-demo-upstream:8080" in (demo_dir / "deploy.yaml").read_text()
    assert not upstream["HostConfig"]["PortBindings"]  # nothing published: only the gateway reaches it

    stopping = time.monotonic()
    stop = Pty([str(home / ".local" / "bin" / "claudegate"), "try", "--stop"], env, tmp_path)
    assert stop.wait(300) == 0, stop.seen.decode(errors="replace")
    stopped = time.monotonic() - stopping
    assert _demo_leftovers() == []
    assert not demo_dir.exists()
    print(
        f"\nwalk-through: first screen line after {shell.first_output:.1f} s; installed after {installed:.0f} s;"
        f" install.sh --demo to the key on the screen: {key_shown:.0f} s, to the first 200: {first_200:.0f} s;"
        f" try --stop {stopped:.0f} s"
    )
