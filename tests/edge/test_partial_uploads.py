"""Unauthenticated partial uploads cannot fill nginx's body storage.

Attack: from several source addresses, each at the per-IP connection limit,
clients without a valid key start large uploads (Content-Length, chunked,
HTTP/2), send 3 MB and stall. With ``proxy_request_buffering on`` every
one of them parks its body in nginx's body temp directory (a small tmpfs
in the container, shared by all clients) until the body timeout; enough of
them fill it and a legitimate upload then fails with 500. The edge streams
bodies to the gateway instead, which refuses them on their headers.

The temp directory here is a real 8 MB tmpfs (as in the container), so the
test fails on a buffering edge: the legitimate 3 MB request gets 500.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory, client, tls_context
from tests.edge.tools import bin_curl
from tests.support.nginx_runner import NginxProcess

CONN_PER_IP = 4
ATTACKERS = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
SENT = 3 * 1024 * 1024  # what each stalled upload sends before it stops
CLAIMED = 24 * 1024 * 1024  # what it claims it will send (under the 32m limit)
TMPFS_SIZE = "8m"
MODEL = "claude-haiku-4-5"


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProcess]:
    temp = tmp_path_factory.mktemp("partial") / "temp"
    mounted = _mount_tmpfs(temp)
    # The container's temp directory is a small tmpfs; so is this one (the test runs as root).
    assert mounted, f"cannot mount a {TMPFS_SIZE} tmpfs on {temp}: run the edge tests as root"
    try:
        yield make_edge("partial", conn_per_ip=CONN_PER_IP, client_body_timeout=30, temp_dir=str(temp))
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(temp)], check=False)


def _stored_bytes(directory: Path) -> int:
    """Bytes in use on the temp file system (nginx unlinks its body files at once, so walking finds none)."""
    st = os.statvfs(directory)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _start_upload(
    port: int, pki: EdgePKI, source: str, key_header: bytes, *, chunked: bool
) -> ssl.SSLSocket | None:
    """Open a TLS connection from ``source``, send the headers and 3 MB of body, then stall."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock = tls_context(pki).wrap_socket(raw, server_hostname="gw.test")
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % CLAIMED
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: gw.test\r\nanthropic-version: 2023-06-01\r\n"
        b"Content-Type: application/json\r\n" + key_header + framing + b"\r\n"
    )
    body = b'{"model":"' + MODEL.encode() + b'","max_tokens":8,"messages":[{"role":"user","content":"'
    body += b"a" * (SENT - len(body))
    if chunked:
        body = b"%x\r\n" % len(body) + body + b"\r\n"
    try:
        sock.sendall(head + body)
    except OSError:
        # The edge may answer (and close) before the whole body is sent: that is the point.
        sock.close()
        return None
    return sock


def _start_h2_upload(port: int, pki: EdgePKI, source: str) -> subprocess.Popen[bytes]:
    """An HTTP/2 upload from ``source`` fed from a pipe: 3 MB, then nothing more."""
    proc = subprocess.Popen(
        [
            bin_curl(), "-sS", "--http2", "--cacert", str(pki.root_ca), "--interface", source,
            "-X", "POST", "-H", "content-type: application/json", "-H", "anthropic-version: 2023-06-01",
            "-H", "x-api-key: sk-junk-partial-upload-h2", "-H", f"content-length: {CLAIMED}",
            "-T", "-", "-o", "/dev/null", "-w", "%{http_code}",
            f"https://127.0.0.1:{port}/v1/messages",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(b"a" * SENT)
        proc.stdin.flush()
    return proc


def test_partial_uploads_from_many_addresses_do_not_block_a_real_upload(
    edge: NginxProcess, pki: EdgePKI, backend: Backend
) -> None:
    port = edge.settings.https_port
    temp = Path(edge.settings.temp_dir)
    key = backend.new_key("partial-legit")
    upstream_before = len(backend.upstream_requests())
    sockets: list[ssl.SSLSocket] = []
    curls: list[subprocess.Popen[bytes]] = []
    peak = 0
    try:
        # Each attacker address uses its whole per-IP connection allowance.
        for n, source in enumerate(ATTACKERS):
            for i in range(CONN_PER_IP):
                if n == len(ATTACKERS) - 1:
                    curls.append(_start_h2_upload(port, pki, source))
                    continue
                key_header = (
                    b"" if i % 2 == 0 else b"x-api-key: sk-junk-" + os.urandom(12).hex().encode() + b"\r\n"
                )
                sock = _start_upload(port, pki, source, key_header, chunked=n == 1)
                if sock is not None:
                    sockets.append(sock)
        # The stalled uploads are now held open; look at what nginx stored for them.
        for _ in range(20):
            peak = max(peak, _stored_bytes(temp))
            time.sleep(0.05)

        # A legitimate 3 MB request from another address is served, quickly.
        started = time.monotonic()
        with client(pki, local_address="127.0.0.2", timeout=20) as c:
            r = c.post(
                f"{edge.https_url}/v1/messages",
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                json={
                    "model": MODEL,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "b" * (3 << 20)}],
                },
            )
        took = time.monotonic() - started
        peak = max(peak, _stored_bytes(temp))
        assert r.status_code == 200, (r.status_code, r.text[:300], edge.logs()[-1500:])
        assert took < 5.0, took

        # The unauthenticated uploads were answered 401 without waiting for
        # their bodies (curl's HTTP/2 upload ends; raw ones read the answer).
        statuses = []
        for proc in curls:
            assert proc.stdin is not None
            out, _ = proc.communicate(timeout=10)
            statuses.append(out.decode())
        assert statuses == ["401"] * CONN_PER_IP, statuses
        for sock in sockets:
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                head = sock.recv(4096)
                assert head.startswith(b"HTTP/1.1 401"), head[:200]
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for proc in curls:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Nothing of the attack sat in nginx's body storage, and none of it reached upstream.
    assert peak < 64 * 1024, f"nginx stored {peak} bytes of request bodies"
    assert len(backend.upstream_requests()) == upstream_before + 1
    assert "No space left" not in edge.logs()
