"""Debian's pebble (a test ACME CA) and its mock DNS, run as processes for the ACME test.

pebble serves its ACME API over HTTPS with a certificate made here (so the
test knows what to trust), validates HTTP-01 challenges on port 80 of the
address the mock DNS (``pebble-challtestsrv``) gives for every name -- the
fresh server's -- and issues from a root made at start (fetched from its
management API for the smoke test to trust).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port


@dataclass(frozen=True)
class Pebble:
    directory: str  # the ACME directory URL, as the host sees it
    api_ca: Path  # what certbot must trust to talk to the API
    issuing_root: Path  # what clients must trust to verify issued certificates
    dns: str = ""  # the mock DNS server (HOST:PORT) pebble resolves names with
    dns_management: str = ""  # its management API (set and clear A records)
    log: Path | None = None

    def set_a_record(self, name: str, *addresses: str) -> None:
        """Answer A queries for ``name`` with ``addresses`` (pebble and claudegate's pre-check see it)."""
        self._dns_call("/add-a", {"host": name.rstrip(".") + ".", "addresses": list(addresses)})

    def clear_a_record(self, name: str) -> None:
        """Back to the default answer (the fresh server's address)."""
        self._dns_call("/clear-a", {"host": name.rstrip(".") + "."})

    def _dns_call(self, path: str, body: dict[str, object]) -> None:
        request = urllib.request.Request(
            self.dns_management + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()

    def orders(self) -> int:
        """How many orders pebble has accepted so far (from its log)."""
        assert self.log is not None
        return self.log.read_text(errors="replace").count("Added order")


def _free_port() -> int:
    return free_port("0.0.0.0")


def _api_certificate(directory: Path, addresses: list[str]) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble API test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([*sans, x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (directory / "api-ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "api-cert.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "api-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "api-ca.pem", directory / "api-cert.pem", directory / "api-key.pem"


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def run_pebble(
    directory: Path, *, listen_ip: str, names_resolve_to: str, validity_seconds: int | None = None
) -> Iterator[Pebble]:
    """pebble and its mock DNS; ``validity_seconds`` sets the lifetime of issued certificates."""
    directory.mkdir(parents=True, exist_ok=True)
    api_ca, cert, key = _api_certificate(directory, [listen_ip, "127.0.0.1"])
    api_port, management_port, dns_port, dns_management = (_free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"0.0.0.0:{api_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    if validity_seconds is not None:
        # Debian's pebble 2.4 reads this key (seconds); the default is 5 years.
        config["pebble"]["certificateValidityPeriod"] = validity_seconds
    (directory / "pebble.json").write_text(json.dumps(config))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dns_log = directory / "challtestsrv.log"
        with dns_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        "pebble-challtestsrv",
                        "-defaultIPv4",
                        names_resolve_to,
                        "-defaultIPv6",
                        "",
                        "-dns01",
                        f"127.0.0.1:{dns_port}",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                        "-management",
                        f"127.0.0.1:{dns_management}",
                    ],
                    stdout=out,
                    stderr=out,
                )
            )
        _wait_for(dns_management, procs[-1], dns_log)
        log = directory / "pebble.log"
        # PEBBLE_AUTHZREUSE=0: every order is validated again (by default pebble reuses half of the
        # valid authorizations, so a renewal might never reach port 80 at all).
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        "pebble",
                        "-config",
                        str(directory / "pebble.json"),
                        "-dnsserver",
                        f"127.0.0.1:{dns_port}",
                    ],
                    stdout=out,
                    stderr=out,
                    env=env,
                )
            )
        _wait_for(api_port, procs[-1], log)
        _wait_for(management_port, procs[-1], log)
        context = ssl.create_default_context(cafile=str(api_ca))
        with urllib.request.urlopen(
            f"https://127.0.0.1:{management_port}/roots/0", context=context, timeout=10
        ) as r:
            (directory / "issuing-root.pem").write_bytes(r.read())
        yield Pebble(
            f"https://{listen_ip}:{api_port}/dir",
            api_ca,
            directory / "issuing-root.pem",
            dns=f"127.0.0.1:{dns_port}",
            dns_management=f"http://127.0.0.1:{dns_management}",
            log=log,
        )
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
