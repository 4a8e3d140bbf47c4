"""Before an ACME order: does the domain lead to this host's webroot, as the CA will try?

A wrong DNS record (or a firewall on port 80) makes certbot's HTTP-01
challenge fail only after an order was placed, and Let's Encrypt counts
failed validations against a rate limit (5 an hour per account and name).
This check fails in a second instead, and says which record to set:

1. the domain is resolved (A and AAAA, as the CA does; no ``/etc/hosts``);
2. a random token is written into the host's ACME webroot;
3. ``http://<domain>/.well-known/acme-challenge/<token>`` is fetched from
   this machine on port 80 of *every* address the domain resolves to (the
   CA may pick any of them), and must return the token: that proves the
   record points at this host and nginx serves the webroot there -- even
   when the host sits behind NAT and its SSH address is another one.

An IPv6 address this machine cannot route to is reported as unchecked, not
as a failure. ``CLAUDEGATE_ACME_RESOLVER=HOST:PORT`` asks that DNS server
instead of the system's (a test CA's mock DNS); ``CLAUDEGATE_ACME_PRECHECK=off``
skips the check (a machine that cannot reach the server's port 80).
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import posixpath
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.resolver

from claudegate.deploy.context import Context
from claudegate.errors import DeployFailed

__all__ = [
    "PRECHECK_ENV",
    "RESOLVER_ENV",
    "Probe",
    "check_domain_reaches_host",
    "probe_address",
    "resolve",
    "target_addresses",
    "write_token_argv",
]

RESOLVER_ENV = "CLAUDEGATE_ACME_RESOLVER"
PRECHECK_ENV = "CLAUDEGATE_ACME_PRECHECK"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
_TIMEOUT = 5.0
_MAX_BODY = 4096


def _resolver() -> dns.resolver.Resolver:
    override = os.environ.get(RESOLVER_ENV, "").strip()
    if not override:
        return dns.resolver.Resolver()
    host, _, port = override.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host.strip("[]") or override]
    resolver.port = int(port) if port.isdigit() else 53
    return resolver


def resolve(name: str) -> list[str]:
    """The A and AAAA addresses of ``name`` (empty when there are none)."""
    resolver = _resolver()
    resolver.lifetime = _TIMEOUT
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        except dns.exception.Timeout:
            raise DeployFailed(
                f"could not resolve {name}: the DNS server did not answer within {_TIMEOUT:.0f} s",
                hint="check this machine's DNS, then run the deploy again",
            ) from None
        found += [rdata.to_text() for rdata in answer]
    return found


@dataclass(frozen=True)
class Probe:
    address: str
    ok: bool
    unchecked: bool  # this machine cannot reach the address (e.g. no IPv6 route)
    detail: str


def probe_address(address: str, domain: str, token: str, *, port: int = 80) -> Probe:
    """GET the token from ``address``:``port`` with ``Host: domain``, as an HTTP-01 validation does."""
    conn = http.client.HTTPConnection(address, port, timeout=_TIMEOUT)
    try:
        conn.request(
            "GET", CHALLENGE_PATH + token, headers={"Host": domain, "User-Agent": "claudegate-precheck"}
        )
        response = conn.getresponse()
        body = response.read(_MAX_BODY)
    except OSError as exc:
        unreachable = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)
        v6 = ipaddress.ip_address(address).version == 6
        what = exc.strerror or str(exc) or type(exc).__name__
        return Probe(address, False, unreachable and v6, f"port {port} did not answer ({what})")
    except http.client.HTTPException as exc:
        return Probe(address, False, False, f"port {port} did not speak HTTP ({type(exc).__name__})")
    finally:
        conn.close()
    if response.status == 200 and body.strip() == token.encode():
        return Probe(address, True, False, "served the token")
    return Probe(address, False, False, f"port {port} answered HTTP {response.status} without the token")


def target_addresses(host: str | None) -> list[str]:
    """The addresses the DNS record should name: the target's own (a name is resolved here)."""
    if host is None:
        return []
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def _record_hint(domain: str, wanted: Sequence[str]) -> str:
    if not wanted:
        return f"set an A (IPv4) or AAAA (IPv6) record for {domain} to this server's public address"
    kinds = " / ".join(
        f"{'AAAA' if ipaddress.ip_address(a).version == 6 else 'A'} record {domain} -> {a}" for a in wanted
    )
    return (
        f"set the DNS {kinds} (and remove records pointing elsewhere), wait for it to propagate, deploy again"
    )


_WRITE_PROBE = """set -eu
dir=$1/.well-known/acme-challenge
mkdir -p -- "$dir"
chmod 0755 -- "$1/.well-known" "$dir"
printf '%s' "$2" >"$dir/.$2.tmp"
chmod 0644 -- "$dir/.$2.tmp"
mv -f -- "$dir/.$2.tmp" "$dir/$2"
"""


def write_token_argv(webroot: str, token: str) -> list[str]:
    return ["sh", "-c", _WRITE_PROBE, "claudegate-acme-probe", webroot, token]


def check_domain_reaches_host(ctx: Context) -> None:
    """Raise :class:`DeployFailed` (with the DNS record to set) unless the CA's HTTP-01 check can pass."""
    if os.environ.get(PRECHECK_ENV, "").strip().lower() in ("off", "0", "no", "false"):
        ctx.note(f"ACME pre-check skipped ({PRECHECK_ENV}=off)")
        return
    domain = ctx.cfg.domain
    fleet = ctx.cfg.fleet
    if len(fleet) > 1:
        # Several hosts: the others relay challenges to this one (the issuer), so any of them will do.
        wanted = sorted({a for host in fleet for a in target_addresses(host.host)})
    else:
        wanted = target_addresses(None if ctx.cfg.target.is_local else ctx.cfg.target.host)
    addresses = resolve(domain)
    if not addresses:
        raise DeployFailed(
            f"{domain} does not resolve (no A or AAAA record): the CA could not reach this server, "
            "so no certificate was ordered",
            hint=_record_hint(domain, wanted),
        )
    token = secrets.token_urlsafe(24)
    webroot = ctx.layout.acme_webroot
    ctx.run(write_token_argv(webroot, token))
    try:
        probes = [probe_address(address, domain, token) for address in addresses]
    finally:
        path = posixpath.join(webroot, ".well-known", "acme-challenge", token)
        ctx.run(["rm", "-f", "--", path], check=False)
    failed = [p for p in probes if not p.ok and not p.unchecked]
    for probe in probes:
        if probe.unchecked:
            ctx.note(f"could not check {domain} at {probe.address} from here ({probe.detail})")
    if failed or all(p.unchecked for p in probes):
        lines = "; ".join(f"{p.address}: {p.detail}" for p in (failed or probes))
        raise DeployFailed(
            f"{domain} resolves to {', '.join(addresses)}, but http://{domain}/ there does not serve this "
            f"server's ACME webroot ({lines}); the CA's HTTP-01 check would fail, so no certificate was ordered",
            hint=_record_hint(domain, wanted)
            + "; if the record is right, open TCP port 80 to this server (firewall / security group); "
            + (
                "with several hosts each one relays challenges to this one once it runs this release: on a first "
                "deploy, let the record name this host only until the others are deployed, and open port 80 "
                "between the hosts; "
                if len(fleet) > 1
                else ""
            )
            + f"{PRECHECK_ENV}=off skips this check",
        )
    ctx.note(f"{domain} -> {', '.join(addresses)} serves this server's ACME webroot on port 80")
