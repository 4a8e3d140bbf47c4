"""Run the real gateway as a subprocess, the way the container does."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port

GATEWAY = [sys.executable, "-m", "claudegate_gateway"]




def write_secret(path: Path, value: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return path


def raw_headers(response: bytes) -> dict[str, str]:
    """The header fields of a raw HTTP/1.1 response read off a socket (names lower-cased)."""
    assert b"\r\n\r\n" in response, f"the response's head was not read whole: {response[:200]!r}"
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


@dataclass
class GatewayProc:
    workdir: Path
    config_path: Path
    port: int
    internal_port: int
    pepper: str
    upstream_key: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def audit_path(self) -> Path:
        return self.workdir / "audit.jsonl"

    @property
    def keystore_path(self) -> Path:
        return Path(yaml.safe_load(self.config_path.read_text())["keystore"])

    def audit(self, at_least: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """The audit records, once there are `at_least` (the last is written after the response ends).

        Only a count: to read one request's record, :meth:`record` finds it by its id.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.audit_path.read_text() if self.audit_path.exists() else ""
            lines = text.split("\n")[:-1]  # whole lines only: the last one may be half written
            if len(lines) >= at_least or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.02)

    def record(self, headers: Mapping[str, str], timeout: float = 10) -> dict[str, Any]:
        """The audit record of the request whose response carried `headers`, once it is written.

        Found by the gateway's request id (``x-claudegate-request-id`` on what it
        relays, ``request-id`` on what it answers itself), never as "the last line":
        a record is written when its response ends, so on a shared gateway the
        last line can be an earlier request's while this one's is still to come.
        """
        request_id = headers.get("x-claudegate-request-id") or headers["request-id"]
        return self.record_where(timeout=timeout, request_id=request_id)

    def record_where(self, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The one audit record whose `fields` have these values, once it is written.

        For a request whose response headers the client never saw (it hung up
        first): the caller names what only that request has (its key, its path).
        Finding two is a failure: the fields did not single the request out.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.audit_path.read_text() if self.audit_path.exists() else ""
            # Whole lines only: the last one may be half written.
            found = [rec for rec in map(json.loads, text.split("\n")[:-1])
                     if all(rec.get(k) == v for k, v in fields.items())]  # fmt: skip
            if found:
                assert len(found) == 1, found
                return dict(found[0])
            assert time.monotonic() < deadline, f"no audit record with {fields} in {timeout} s"
            time.sleep(0.02)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GATEWAY, *args, "--config", str(self.config_path)],
            capture_output=True, text=True, check=check, timeout=30,
        )

    def create_key(self, name: str, *flags: str) -> str:
        out = self.cli("keys", "create", name, *flags)
        return out.stdout.strip().splitlines()[-1]

    def start(self) -> GatewayProc:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*GATEWAY, "serve", "--config", str(self.config_path)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.internal_url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not come up: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_gateway(
    workdir: Path,
    upstream_url: str,
    upstream_key: str,
    extra: dict[str, Any] | None = None,
    share_keystore: GatewayProc | None = None,
) -> GatewayProc:
    """A gateway in `workdir`; with `share_keystore`, a second process on that
    gateway's keystore and pepper (as during a blue/green switch)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if share_keystore is None:
        pepper = secrets.token_urlsafe(32)
        write_secret(workdir / "pepper", pepper)
        pepper_file, keystore = workdir / "pepper", workdir / "keys.db"
    else:
        pepper = share_keystore.pepper
        pepper_file, keystore = share_keystore.workdir / "pepper", share_keystore.keystore_path
    write_secret(workdir / "upstream_key", upstream_key)
    port, internal = free_port(), free_port()
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "internal_listen": f"127.0.0.1:{internal}",
        "upstream": {"base_url": upstream_url, "api_key_file": str(workdir / "upstream_key")},
        "keystore": str(keystore),
        "pepper_file": str(pepper_file),
        "audit_log": str(workdir / "audit.jsonl"),
        # Nothing kept between model list calls: tests that watch what upstream sees (the list is
        # the cheapest probe of forwarding) see every call; test_model_catalogue.py sets its own.
        "models_cache_seconds": 0,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    os.chmod(path, 0o600)
    return GatewayProc(workdir, path, port, internal, pepper, upstream_key)
