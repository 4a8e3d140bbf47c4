"""claudegate's certificate renewer: runs for ever in the certbot container on the host.

Started by the deploy (``tls.mode: acme``) as ``<prefix>-certbot`` with a
restart policy, in nginx's network and PID namespaces, so that it needs
nothing from the operator's machine and comes back with Docker after a
reboot. Each round it:

1. reads the issued certificate (``live/<name>/cert.pem``); when a third of
   its lifetime is left (certbot's rule, the same as the deploy's) it runs
   ``certbot renew --force-renewal`` for that lineage (webroot HTTP-01, the
   saved account and server);
2. compares the certificate nginx *serves* on 127.0.0.1:<https port> with
   the one on disk; when they differ (just renewed, or an earlier reload did
   not take) it copies the live files into nginx's TLS directory, runs
   ``nginx -t``, sends the master SIGHUP (graceful: old workers finish their
   requests and streams) and checks again that the served serial is the new
   one -- "renewed on disk, old one still served" is recorded as a failure;
3. writes what it found to ``claudegate-renewal.json`` (``claudegate status``
   shows it) and sleeps: 1/24 of the lifetime, between 5 s and 12 h -- but
   wakes within 10 s when another certificate appears on disk (a deploy
   issued one).

It exits (and Docker restarts it) when nginx's master is gone from its PID
namespace: nginx was restarted and the namespace it joined is stale.

With several hosts (``--share``, see claudegate_share.py) the first host's
renewer also seals each certificate it has into the state tier (PostgreSQL)
for the others; every other host's renewer runs no certbot at all: each
round it installs the newest certificate the state tier holds that passes
the share's checks, and reloads nginx as in 2.

Only the standard library and the ``cryptography`` certbot already depends
on; keep the renewal rule in step with installer/claudegate/deploy/cert_lifetime.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent))
import claudegate_share as share

RENEW_FRACTION = 3
CHECKS_PER_LIFETIME = 24
MIN_INTERVAL = 5.0
MAX_INTERVAL = 12 * 3600.0
RELOAD_WAIT = 30.0
#: How often a sleeping renewer looks whether the certificate on disk changed.
WAKE_POLL = 10.0
#: A follower asks the state tier at least this often (the issuer may renew early: a new CA, a deploy).
FOLLOWER_MAX_INTERVAL = 3600.0


class NginxGone(Exception):
    """nginx's master is not in this PID namespace (it restarted): exit, Docker restarts us."""


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _bounds(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    # cryptography < 42 (Debian bookworm has 38) has only the naive UTC properties.
    before = getattr(cert, "not_valid_before_utc", None) or _utc(cert.not_valid_before)
    after = getattr(cert, "not_valid_after_utc", None) or _utc(cert.not_valid_after)
    return before, after


def renewal_point(cert: x509.Certificate) -> dt.datetime:
    before, after = _bounds(cert)
    return after - max(after - before, dt.timedelta(0)) / RENEW_FRACTION


def interval_for(cert: x509.Certificate | None, override: float) -> float:
    if override > 0:
        return override
    if cert is None:
        return 60.0
    before, after = _bounds(cert)
    return min(max((after - before).total_seconds() / CHECKS_PER_LIFETIME, MIN_INTERVAL), MAX_INTERVAL)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(cert: x509.Certificate | None) -> dict[str, str] | None:
    if cert is None:
        return None
    _, after = _bounds(cert)
    return {
        "serial": format(cert.serial_number, "x"),
        "not_after": _iso(after),
        "renew_at": _iso(renewal_point(cert)),
    }


def _fingerprint(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def served_cert(port: int, domain: str) -> x509.Certificate | None:
    """The certificate nginx presents for ``domain`` right now (not verified: only read)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None


def nginx_master() -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"nginx: master process"):
            return int(entry.name)
    raise NginxGone("nginx's master process is not in this PID namespace")


def _tail(data: bytes, lines: int = 6) -> str:
    return " | ".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


def install(live: Path, tls: Path) -> None:
    """Copy the live files (symlinks into archive/) over nginx's; the key is 0600 from its first byte."""
    for name, mode in (("fullchain.pem", 0o644), ("chain.pem", 0o644), ("privkey.pem", 0o600)):
        tmp = tls / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out, (live / name).open("rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, mode)
        os.replace(tmp, tls / name)


class Renewer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.live = Path(args.live)
        self.tls = Path(args.tls)
        self.status_path = Path(args.status)
        self.status: dict[str, Any] = self._read_status()
        self.share = share.ShareConfig.load(Path(args.share)) if getattr(args, "share", "") else None

    def _read_status(self) -> dict[str, Any]:
        try:
            data = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_status(self) -> None:
        tmp = self.status_path.with_name(f".{self.status_path.name}.new")
        tmp.write_text(json.dumps(self.status, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.status_path)

    def _log(self, message: str) -> None:
        print(f"{_iso(_now())} {message}", flush=True)

    def renew(self) -> tuple[bool, str]:
        env = dict(os.environ)
        if self.args.ca_bundle:
            env["REQUESTS_CA_BUNDLE"] = self.args.ca_bundle
        argv = [
            "certbot", "renew", "--cert-name", self.args.cert_name, "--force-renewal",
            "--non-interactive", "--no-random-sleep-on-renew",
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, timeout=600, env=env, check=False)
        except subprocess.TimeoutExpired:
            return False, "certbot renew did not finish within 600 s"
        if done.returncode != 0:
            return (
                False,
                f"certbot renew failed (exit {done.returncode}): {_tail(done.stderr or done.stdout)}",
            )
        return True, "certbot renewed the certificate"

    def reload(self, disk: x509.Certificate, *, from_live: bool = True) -> tuple[bool, str]:
        """Install (from certbot's live files), ``nginx -t``, SIGHUP, then check nginx serves ``disk``."""
        if from_live:
            install(self.live, self.tls)
        test = subprocess.run(
            ["nginx", "-t", "-q", "-c", self.args.nginx_conf], capture_output=True, timeout=60, check=False
        )
        if test.returncode != 0:
            return False, f"nginx -t rejected the configuration, not reloaded: {_tail(test.stderr)}"
        os.kill(nginx_master(), signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_WAIT
        served = None
        while time.monotonic() < deadline:
            served = served_cert(self.args.https_port, self.args.domain)
            if served is not None and served.serial_number == disk.serial_number:
                return True, f"nginx serves serial {disk.serial_number:x}"
            time.sleep(0.5)
        old = f"{served.serial_number:x}" if served is not None else "nothing"
        return False, (
            f"renewed on disk (serial {disk.serial_number:x}) but nginx still serves {old} "
            f"{RELOAD_WAIT:.0f} s after the reload"
        )

    def publish(self) -> None:
        """The issuer: seal the certificate it has into the state tier unless it is there."""
        assert self.share is not None
        try:
            done, message = share.publish(
                self.share, (self.live / "fullchain.pem").read_bytes(), (self.live / "privkey.pem").read_bytes()
            )
        except (share.ShareError, OSError) as exc:
            self.status["share"] = {"role": "issuer", "ok": False, "message": f"not shared: {exc}"}
            self._log(f"could not share the certificate: {exc}")
            return
        if done:
            self._log(message)
        self.status["share"] = {"role": "issuer", "ok": True, "message": message}

    def follower_round(self) -> float:
        """A host that is not the issuer: install what the state tier holds, reload, check."""
        assert self.share is not None
        now = _now()
        self.status["checked_at"] = _iso(now)
        record: dict[str, Any] | None = None
        try:
            result = share.sync(self.share, self.tls)
        except (share.ShareError, OSError) as exc:
            self.status["share"] = {"role": "follower", "ok": False, "message": str(exc)}
            self._log(f"could not read the state tier: {exc}")
        else:
            ok = not result.refused
            self.status["share"] = {"role": "follower", "ok": ok, "message": result.message}
            if result.code == share.EXIT_INSTALLED:
                self._log(result.message)
                record = {"at": _iso(now), "ok": True, "message": result.message}
            elif result.refused:
                self._log(result.message)
        disk = load_cert(self.tls / "fullchain.pem")
        nginx_master()
        served = served_cert(self.args.https_port, self.args.domain)
        if disk is not None and (served is None or served.serial_number != disk.serial_number):
            ok, message = self.reload(disk, from_live=False)
            self._log(message)
            record = record or {"at": _iso(now), "ok": ok, "message": "reload"}
            record["ok"] = record["ok"] and ok
            record["message"] += f"; {message}"
            served = served_cert(self.args.https_port, self.args.domain)
        if record is not None and disk is not None:
            record["serial"] = format(disk.serial_number, "x")
            self.status["last_renewal"] = record
        shared_ok = bool(self.status.get("share", {}).get("ok"))
        self.status.update(
            result="ok" if shared_ok and (record is None or record["ok"]) else "failed",
            message=(record or {}).get("message") or self.status["share"]["message"],
            certificate=_describe(disk),
            served=_describe(served),
        )
        interval = min(interval_for(disk, self.args.interval), FOLLOWER_MAX_INTERVAL)
        self.status["interval_seconds"] = round(interval, 1)
        return interval

    def round(self) -> float:
        if self.share is not None and self.share.role == "follower":
            return self.follower_round()
        disk = load_cert(self.live / "cert.pem")
        now = _now()
        self.status["checked_at"] = _iso(now)
        if disk is None:
            self.status.update(result="waiting", message="no certificate issued yet (the deploy obtains it)")
            return interval_for(None, self.args.interval)
        record: dict[str, Any] | None = None
        if now >= renewal_point(disk):
            ok, message = self.renew()
            self._log(message)
            record = {"at": _iso(now), "ok": ok, "message": message}
            if ok:
                disk = load_cert(self.live / "cert.pem") or disk
        nginx_master()  # raises NginxGone: a stale namespace cannot reload anything
        served = served_cert(self.args.https_port, self.args.domain)
        if served is None or served.serial_number != disk.serial_number:
            ok, message = self.reload(disk)
            self._log(message)
            if record is None:
                record = {"at": _iso(now), "ok": ok, "message": f"reload: {message}"}
            else:
                record["ok"] = record["ok"] and ok
                record["message"] += f"; {message}"
            served = served_cert(self.args.https_port, self.args.domain)
        if record is not None:
            record["serial"] = format(disk.serial_number, "x")
            self.status["last_renewal"] = record
        if self.share is not None:
            self.publish()
        shared_ok = self.share is None or bool(self.status.get("share", {}).get("ok"))
        self.status.update(
            result="failed" if (record is not None and not record["ok"]) or not shared_ok else "ok",
            message=(record or {}).get("message") or ("not due" if shared_ok else self.status["share"]["message"]),
            certificate=_describe(disk),
            served=_describe(served),
        )
        interval = interval_for(disk, self.args.interval)
        self.status["interval_seconds"] = round(interval, 1)
        return interval

    def run(self) -> int:
        self._log(f"claudegate renewer for {self.args.domain} started")
        while True:
            try:
                interval = self.round()
            except NginxGone as exc:
                self.status.update(checked_at=_iso(_now()), result="failed", message=str(exc))
                self._write_status()
                self._log(f"{exc}; exiting so that Docker restarts this container in nginx's new namespace")
                return 75
            except Exception as exc:  # one bad round must not stop renewals for ever
                interval = 60.0
                self.status.update(
                    checked_at=_iso(_now()), result="failed", message=f"{type(exc).__name__}: {exc}"
                )
            self._write_status()
            self.sleep(interval)

    def sleep(self, interval: float) -> None:
        """Sleep ``interval``, but wake when another certificate appears on disk.

        A deploy or ``claudegate renew`` may issue one (another CA, another
        lifetime) while this loop sleeps the 12 h of a 90-day certificate.
        """
        before = _fingerprint(self.live / "cert.pem")
        deadline = time.monotonic() + interval
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, WAKE_POLL))
            if _fingerprint(self.live / "cert.pem") != before:
                self._log("another certificate appeared on disk: checking it now")
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("--cert-name", default="claudegate")
    parser.add_argument("--live", required=True)
    parser.add_argument("--tls", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--nginx-conf", required=True)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between rounds (0: from the lifetime)"
    )
    parser.add_argument("--ca-bundle", default="", help="REQUESTS_CA_BUNDLE for certbot (a test CA)")
    parser.add_argument("--share", default="", help="share.json: several hosts share one certificate")
    return Renewer(parser.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
