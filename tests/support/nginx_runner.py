"""Run a real nginx on loopback from a rendered edge configuration.

The process runs in the foreground (``-g 'daemon off;'``) with its own prefix,
configuration directory, pid file, temp paths and logs, all under one work
directory, so several can run side by side and nothing touches /etc/nginx.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudegate.edge.render import render_edge, write_edge
from claudegate.edge.settings import EdgeSettings
from tests.support.ports import free_port

NGINX = "/usr/sbin/nginx"




def local_settings(workdir: Path, **overrides: Any) -> EdgeSettings:
    """Settings for a throwaway nginx under ``workdir``: high ports, paths inside it.

    Workers run as root here: pytest's temp tree is private to root, and
    workers must read the ACME webroot and write body temp files inside it.
    """
    values: dict[str, Any] = {
        "domain": "gw.test",
        "listen_addresses": ["127.0.0.1", "::1"],
        "http_port": free_port(),
        "https_port": free_port(),
        "acme_webroot": str(workdir / "acme"),
        "access_log_path": str(workdir / "logs" / "access.jsonl"),
        "error_log_path": str(workdir / "logs" / "error.log"),
        "error_log_level": "info",
        "pid_path": str(workdir / "nginx.pid"),
        "temp_dir": str(workdir / "temp"),
        "user": "root",
        "worker_processes": 1,
    }
    values.update(overrides)
    return EdgeSettings.model_validate(values)


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a rendered tree; the result carries stderr for messages."""
    return subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclass
class NginxProcess:
    settings: EdgeSettings
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def conf_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def conf(self) -> Path:
        return self.conf_dir / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return Path(self.settings.access_log_path)

    @property
    def error_log(self) -> Path:
        return Path(self.settings.error_log_path)

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def prepare(self) -> None:
        for sub in ("acme/.well-known/acme-challenge", "logs", "temp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.files = render_edge(self.settings)
        write_edge(self.files, self.conf_dir)

    def test_config(self) -> subprocess.CompletedProcess[str]:
        return nginx_test(self.conf, self.workdir)

    def start(self, timeout: float = 10.0) -> NginxProcess:
        self.prepare()
        checked = self.test_config()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        err = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=err,
            stderr=err,
        )
        ports = [self.settings.http_port, self.settings.https_port]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {self.logs()}")
            if all(_accepts("127.0.0.1", port) for port in ports):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen in {timeout}s: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in (self.stderr_path, self.error_log):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: lets access log lines land
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def access_records(self) -> list[dict[str, Any]]:
        import json

        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def running_nginx(settings: EdgeSettings, workdir: Path) -> Iterator[NginxProcess]:
    proc = NginxProcess(settings, workdir)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
