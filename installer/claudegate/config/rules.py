"""Checks across sections of a validated :class:`DeployConfig`.

Each check yields a :class:`RuleProblem`: the field path it is about (a
pydantic-style ``loc`` tuple, so the loader can find its line), what is wrong
and how to fix it. :func:`rule_problems` returns all of them, in a stable
order; the loader reports every one, the model raises the first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import ValidationError

from claudegate.config.defaults import LETS_ENCRYPT_DIRECTORIES
from claudegate.config.derive import edge_settings
from claudegate.config.filters import filter_problems
from claudegate.config.problems import Loc, RuleProblem, format_path
from claudegate.knobs import EDGE_FIELDS, knob, size_in_bytes

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig

__all__ = ["EDGE_FIELDS", "Loc", "RuleProblem", "format_path", "rule_problems"]


_BODY = knob("limits.max_body_size")

#: The gateway refuses a smaller body limit (it must hold a request's JSON).
MIN_BODY_BYTES = _BODY.minimum or 0

# Names a public CA will not issue for.
_RESERVED_SUFFIXES = (
    ".localhost",
    ".local",
    ".invalid",
    ".test",
    ".example",
    ".internal",
    ".lan",
    ".home.arpa",
)


def rule_problems(cfg: DeployConfig) -> list[RuleProblem]:
    """Every cross-section problem of ``cfg``; empty when it is consistent."""
    from claudegate.config.client_rules import client_problems
    from claudegate.config.domain_rules import domain_problems
    from claudegate.config.fleet_rules import fleet_problems

    problems = [
        *_target(cfg),
        *_tls(cfg),
        *_upstream(cfg),
        *_ports(cfg),
        *_limits(cfg),
        *_clients(cfg),
        *client_problems(cfg),
        *domain_problems(cfg),
        *filter_problems(cfg),
        *_shared_state(cfg),
        *fleet_problems(cfg),
    ]
    # The edge model is the authority on nginx's bounds; map its complaints back
    # (once per field: a rule above may already have said it better).
    said = {p.loc for p in problems}
    for problem in _edge(cfg):
        if problem.loc not in said and (problem.loc or not problems):
            problems.append(problem)
    return problems


def _target(cfg: DeployConfig) -> Iterator[RuleProblem]:
    target = cfg.target
    if not target.is_local:
        return
    for name in ("user", "port", "ssh_key", "known_hosts", "host_key_fingerprint"):
        if name in target.model_fields_set:
            yield RuleProblem(
                ("target", name),
                "is used only when deploying over SSH, and target.host is local",
                "remove it, or set target.host to the server's name or address",
            )


def _tls(cfg: DeployConfig) -> Iterator[RuleProblem]:
    tls = cfg.tls
    given = tls.model_fields_set
    if tls.mode == "files":
        if tls.cert_file is None:
            yield RuleProblem(
                ("tls", "cert_file"),
                "is required with tls.mode: files",
                "set cert_file: to the PEM file holding the certificate followed by its intermediates",
            )
        if tls.key_file is None:
            yield RuleProblem(
                ("tls", "key_file"),
                "is required with tls.mode: files",
                "set key_file: to the PEM file holding the certificate's private key (mode 0600)",
            )
    else:
        for name in ("cert_file", "key_file", "chain_file"):
            if name in given:
                yield RuleProblem(
                    ("tls", name),
                    f"is used only with tls.mode: files, and mode is {tls.mode}",
                    "remove it, or set tls.mode: files",
                )
    if tls.mode == "acme":
        if tls.email is None:
            yield RuleProblem(
                ("tls", "email"),
                "is required with tls.mode: acme (the CA sends expiry warnings there)",
                "set email: under tls:, e.g. email: ops@example.com",
            )
        public_ca = tls.acme_directory in _lets_encrypt()
        domain = cfg.domain
        if "." not in domain or domain == "localhost" or domain.endswith(_RESERVED_SUFFIXES[:3]):
            yield RuleProblem(
                ("domain",),
                f"{domain!r} cannot get an ACME certificate: it is not a public DNS name",
                "use a name with a DNS record pointing at the server, or tls.mode: internal-ca to try it out",
            )
        elif public_ca and domain.endswith(_RESERVED_SUFFIXES):
            yield RuleProblem(
                ("domain",),
                f"{domain!r} is a reserved name; Let's Encrypt will not issue a certificate for it",
                "use a name with a public DNS record pointing at the server, or tls.mode: internal-ca",
            )
        if public_ca and cfg.ports.http != 80:
            yield RuleProblem(
                ("ports", "http"),
                f"is {cfg.ports.http}, but Let's Encrypt's HTTP-01 check always connects to port 80",
                "set ports.http: 80, or use tls.mode: files with a certificate obtained another way",
            )
    else:
        for name in ("email", "acme_directory"):
            if name in given:
                yield RuleProblem(
                    ("tls", name),
                    f"is used only with tls.mode: acme, and mode is {tls.mode}",
                    "remove it, or set tls.mode: acme",
                )


def _lets_encrypt() -> tuple[str, ...]:
    return LETS_ENCRYPT_DIRECTORIES


def _upstream(cfg: DeployConfig) -> Iterator[RuleProblem]:
    up = cfg.upstream
    if up.api_key_file is not None and up.api_key_env is not None:
        yield RuleProblem(
            ("upstream", "api_key_env"),
            "is set together with upstream.api_key_file; the key must come from one place",
            "remove one of the two",
        )
    elif up.api_key_file is None and up.api_key_env is None:
        yield RuleProblem(
            ("upstream", "api_key_file"),
            "the Anthropic API key has no source",
            "set upstream.api_key_file: to a file holding the key (mode 0600),"
            " or upstream.api_key_env: to the environment variable holding it",
        )


def _plaintext_to_public(url: str) -> bool:
    """Whether a URL's host is an address outside private, loopback and link-local ranges."""
    host = urlsplit(url).hostname or ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: it may resolve anywhere
    return not (addr.is_private or addr.is_loopback or addr.is_link_local)


def _shared_state(cfg: DeployConfig) -> Iterator[RuleProblem]:
    state = cfg.state
    if state is None or state.redis is None or state.postgres is None:
        return  # state.host: claudegate deploys both on the private address (the model checked it)
    redis, pg = state.redis, state.postgres
    if redis.tls_ca_file is not None and not redis.url.startswith("rediss://"):
        yield RuleProblem(("state", "redis", "tls_ca_file"), "is set for a plain redis:// URL",
                          "use rediss:// for TLS, or remove tls_ca_file")  # fmt: skip
    if redis.url.startswith("redis://") and _plaintext_to_public(redis.url):
        yield RuleProblem(("state", "redis", "url"),
                          "is plain text (redis://) to an address that is not private",
                          "use rediss:// with tls_ca_file, or a private address")  # fmt: skip
    if pg.tls == "disable" and _plaintext_to_public(pg.url):
        yield RuleProblem(("state", "postgres", "tls"), "is disable for an address that is not private",
                          "use tls: verify-full with tls_ca_file, or a private address")  # fmt: skip
    if pg.tls_ca_file is not None and pg.tls != "verify-full":
        yield RuleProblem(("state", "postgres", "tls_ca_file"), f"is set but tls is {pg.tls}",
                          "set tls: verify-full, or remove tls_ca_file")  # fmt: skip


def _ports(cfg: DeployConfig) -> Iterator[RuleProblem]:
    if cfg.ports.http == cfg.ports.https:
        yield RuleProblem(
            ("ports", "https"),
            f"is {cfg.ports.https}, the same as ports.http",
            "give HTTP and HTTPS different ports, e.g. http: 80 and https: 443",
        )


def _limits(cfg: DeployConfig) -> Iterator[RuleProblem]:
    size = cfg.limits.max_body_size
    if size_in_bytes(size) < MIN_BODY_BYTES:
        yield RuleProblem(
            ("limits", "max_body_size"),
            f"{size!r} is smaller than the gateway's minimum of {_as_size(MIN_BODY_BYTES)}",
            f"set it to e.g. {_BODY.default} (Anthropic's own request limit)",
        )


def _as_size(count: int) -> str:
    """1024 -> ``1k``: a byte count as deploy.yaml would write it."""
    for unit, scale in (("m", 1024 * 1024), ("k", 1024)):
        if count % scale == 0:
            return f"{count // scale}{unit}"
    return str(count)


def _clients(cfg: DeployConfig) -> Iterator[RuleProblem]:
    seen: dict[str, int] = {}
    for index, client in enumerate(cfg.clients):
        first = seen.setdefault(client.name, index)
        if first != index:
            yield RuleProblem(
                ("clients", index, "name"),
                f"{client.name!r} is already the name of clients[{first}]",
                "give every client its own name",
            )
        if client.name.startswith("claudegate-"):
            # The tool's own clients (the smoke test's) live under this prefix.
            yield RuleProblem(
                ("clients", index, "name"),
                f"{client.name!r} starts with 'claudegate-', which is kept for the tool's own clients",
                "choose another name, e.g. without that prefix",
            )


_BOUNDS = {
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
}


def _edge(cfg: DeployConfig) -> Iterator[RuleProblem]:
    try:
        edge_settings(cfg)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            head = loc[0] if loc else ""
            mapped: Loc = EDGE_FIELDS.get(str(head), ()) + tuple(loc[1:])
            message = str(error.get("ctx", {}).get("error", error["msg"]))
            problem, _, fix = message.partition("; ")
            bound = _BOUNDS.get(error["type"])
            if bound is not None:
                words, key = bound
                problem = f"must be {words} {error.get('ctx', {}).get(key)}, got {error['input']}"
                fix = "choose a value within that range"
            yield RuleProblem(mapped, problem, fix or None)
