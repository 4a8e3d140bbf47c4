"""What the NGINX edge is rendered from.

Every value here ends up inside an nginx configuration file, so each field is
validated to a narrow form: numbers are numbers, addresses are parsed with
:mod:`ipaddress`, and free-form strings (paths, names) are restricted to
characters that cannot open a new directive, a block, a quoted string or a
variable. A value that passes these checks cannot change the structure of the
rendered file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from claudegate.containers import NGINX_ACME_WEBROOT, NGINX_TLS, TLS_CHAIN, TLS_FULLCHAIN, TLS_PRIVKEY
from claudegate.knobs import BURST_BOUNDS, KNOBS, knob, per_second, size_in_bytes

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A path may hold letters, digits and ``/ . _ - + @ ~ ,`` and nothing nginx gives a meaning to
# (no whitespace, ``;``, braces, quotes, ``$``, ``#`` or backslash).
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._+@~,-]*$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
_SIZE = re.compile(r"^[1-9][0-9]{0,6}[km]?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Trusted proxy ranges broader than this are refused: a range that wide holds
# addresses a client can send from, and such a client could then name its own
# address in X-Forwarded-For.
MIN_TRUSTED_PREFIX = {4: 8, 6: 16}


def _safe_path(value: str) -> str:
    if not _SAFE_PATH.match(value) or "/../" in f"{value}/" or "//" in value:
        raise ValueError(
            f"{value!r} is not a plain absolute path; use letters, digits and / . _ - only, no '..'"
        )
    return value


SafePath = Annotated[str, AfterValidator(_safe_path)]


def _log_target(value: str) -> str:
    if value in ("stderr", "off"):
        return value
    return _safe_path(value)


def _size(value: str) -> str:
    if not _SIZE.match(value):
        raise ValueError(f"{value!r} is not an nginx size; write e.g. 32m, 512k or 1048576")
    return value


Size = Annotated[str, AfterValidator(_size)]


def _knob(edge_field: str, **kwargs: Any) -> Any:
    """A field whose default and bounds are the knob table's (:mod:`claudegate.knobs`) row for it."""
    row = next(k for k in KNOBS if k.edge == edge_field)
    bounds: dict[str, Any] = {"ge": row.minimum, "le": row.maximum} if row.kind == "int" else {}
    return Field(default=row.default, **bounds, **kwargs)


class RateLimit(BaseModel):
    """One ``limit_req`` zone: a leaky bucket of ``rate`` with room for ``burst`` extra requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: str = Field(description="requests per second or per minute, e.g. 20r/s or 600r/m")
    burst: int = Field(
        ge=BURST_BOUNDS[0], le=BURST_BOUNDS[1], description="requests allowed above the rate before 429"
    )
    zone_size: Size = Field(default="10m", description="shared memory for the zone's keys")

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        per_second(value)  # raises ValueError naming the form
        return value

    @property
    def per_second(self) -> float:
        return per_second(self.rate)

    @property
    def retry_after(self) -> int:
        """Whole seconds until the bucket has room for one more request."""
        return max(1, math.ceil(1 / self.per_second))


def default_zone(zone: str) -> RateLimit:
    """The ``per_ip`` / ``per_key`` zone with the knob table's rate and burst."""
    return RateLimit(
        rate=str(knob(f"limits.{zone}.rate").default), burst=int(knob(f"limits.{zone}.burst").default)
    )


class EdgeSettings(BaseModel):
    """Everything the NGINX edge in front of the gateway is rendered from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- names and sockets -------------------------------------------------
    domain: str = Field(description="the public name clients use, e.g. gw.example.com")
    listen_addresses: tuple[IPAddress, ...] = Field(
        default=(ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::")),
        min_length=1,
        description="local addresses nginx listens on, IPv4 and IPv6",
    )
    http_port: int = _knob("http_port")
    https_port: int = _knob("https_port")

    # --- TLS ---------------------------------------------------------------
    tls_profile: Literal["intermediate", "modern"] = _knob(
        "tls_profile", description="Mozilla profile: intermediate = TLS 1.2 + 1.3, modern = TLS 1.3 only"
    )
    cert_path: SafePath = Field(
        default=NGINX_TLS.file(TLS_FULLCHAIN), description="leaf followed by every intermediate"
    )
    key_path: SafePath = Field(default=NGINX_TLS.file(TLS_PRIVKEY))
    chain_path: SafePath = Field(
        default=NGINX_TLS.file(TLS_CHAIN), description="intermediates and root, for OCSP verification"
    )
    ocsp_stapling: bool = Field(
        default=False, description="staple OCSP; keep off for Let's Encrypt, which ended OCSP in 2025"
    )
    resolver: tuple[IPAddress, ...] = Field(
        default=(), description="DNS servers nginx itself queries (OCSP responders); local ones only"
    )
    resolver_timeout: int = Field(default=5, ge=1, le=60)
    hsts_max_age: int = Field(default=63_072_000, ge=0, le=63_072_000)
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False

    # --- abuse limits ------------------------------------------------------
    per_ip: RateLimit = default_zone("per_ip")
    per_key: RateLimit = default_zone("per_key")
    conn_per_ip: int = _knob("conn_per_ip", description="concurrent requests per client address")
    allow_cidrs: tuple[IPNetwork, ...] = Field(
        default=(), description="client ranges allowed on the HTTPS port; empty allows everyone"
    )
    trusted_proxy_cidrs: tuple[IPNetwork, ...] = Field(
        default=(), description="exact addresses of proxies in front of nginx whose forwarded-for is believed"
    )
    real_ip_header: Literal["X-Forwarded-For", "X-Real-IP"] = "X-Forwarded-For"
    real_ip_recursive: bool = Field(
        default=False, description="walk X-Forwarded-For past several trusted proxies"
    )

    # --- body and time limits ----------------------------------------------
    client_max_body_size: Size = _knob("client_max_body_size", description="Anthropic's own request limit")
    # Bodies stream through to the gateway (proxy_request_buffering off): this
    # is only the per-connection relay buffer, so small keeps nginx's memory
    # bounded by connections x buffer, not by body size. With several replicas
    # a replayable request no larger than this is held whole (in this buffer)
    # so that nginx can retry it: the same bound.
    client_body_buffer_size: Size = Field(default="128k", description="per-connection request body relay buffer")
    client_header_timeout: int = _knob("client_header_timeout", description="seconds to send all headers")
    client_body_timeout: int = _knob("client_body_timeout", description="seconds between two body reads")
    send_timeout: int = _knob("send_timeout", description="seconds between two writes to the client")
    keepalive_timeout: int = _knob("keepalive_timeout")
    worker_shutdown_timeout: int = _knob(
        "worker_shutdown_timeout", description="seconds a worker replaced by a reload keeps its open streams"
    )

    # --- the gateway behind nginx ------------------------------------------
    upstream: str = Field(default="gateway:8080", description="the gateway's public listener, HOST:PORT")
    upstream_keepalive: int = Field(default=32, ge=1, le=10_000)
    # With several replicas behind ``upstream`` (a host with ``state:``), the
    # replayable operations (messages, count_tokens) are retried on another
    # replica when the one they reached fails before answering: see
    # ``replay_locations`` and docs/multihost.md.
    upstream_replicas: int = Field(default=1, ge=1, le=16, description="gateway replicas behind upstream")
    proxy_connect_timeout: int = _knob("proxy_connect_timeout")
    proxy_send_timeout: int = _knob("proxy_send_timeout")
    proxy_read_timeout: int = _knob(
        "proxy_read_timeout", description="seconds of silence allowed on a response or stream"
    )
    proxied_prefixes: tuple[str, ...] = Field(
        default=("/v1/",), min_length=1, description="URL prefixes passed to the gateway; all else is 404"
    )

    # --- files and process -------------------------------------------------
    acme_webroot: SafePath = Field(default=NGINX_ACME_WEBROOT.inside, description="certbot --webroot path")
    # Several hosts share one ACME certificate that one host (the issuer)
    # obtains: a challenge the CA sends to another host is relayed there,
    # token-shaped names only and never twice (docs/multihost.md).
    acme_relay: str | None = Field(
        default=None, description="HOST:PORT of the ACME issuer's HTTP port: challenges not found here go there"
    )
    # In the container both logs go to the container's stdout/stderr, which
    # Docker's json-file driver rotates by size (docker_cli.LOG_OPTIONS): no
    # file in the container or on the host grows without bound.
    access_log_path: Annotated[str, AfterValidator(_log_target)] = Field(
        default="/dev/stdout", description="JSON access log: a file, /dev/stdout, or off"
    )
    error_log_path: Annotated[str, AfterValidator(_log_target)] = "stderr"
    error_log_level: Literal["debug", "info", "notice", "warn", "error", "crit"] = "warn"
    modules_dir: SafePath = Field(
        default="/usr/lib/nginx/modules", description="where Debian puts dynamic modules"
    )
    user: str | None = Field(default="www-data", description="worker user; None keeps nginx's default")
    worker_processes: int | Literal["auto"] = "auto"
    worker_connections: int = Field(default=4096, ge=64, le=1_000_000)
    pid_path: SafePath = "/run/nginx.pid"
    temp_dir: SafePath = Field(default="/var/lib/nginx", description="request body and proxy temp files")

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        with contextlib.suppress(ValueError):
            # An IPv4 address as the name (certified by the internal CA; nginx's server_name takes it).
            if ipaddress.ip_address(value).version == 4:
                return value
        if not _HOSTNAME.match(value) or value.replace(".", "").isdigit():
            raise ValueError(f"{value!r} is not a DNS name; write e.g. gw.example.com")
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        if value is not None and not _USER.match(value):
            raise ValueError(f"{value!r} is not a user name")
        return value

    @field_validator("acme_relay")
    @classmethod
    def _check_acme_relay(cls, value: str | None) -> str | None:
        return None if value is None else cls._check_upstream(value)

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT; write e.g. gateway:8080 or 172.18.0.3:8080")
        if host.startswith("[") and host.endswith("]"):
            ipaddress.IPv6Address(host[1:-1])
        elif not _HOSTNAME.match(host) and not _is_ipv4(host):
            raise ValueError(f"{host!r} in upstream is neither a host name nor an address")
        return value

    @field_validator("proxied_prefixes")
    @classmethod
    def _check_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            _safe_path(prefix)
            if not prefix.endswith("/") or prefix == "/":
                raise ValueError(f"proxied prefix {prefix!r} must be a directory such as /v1/, not the root")
        if len(set(value)) != len(value):
            raise ValueError("proxied_prefixes lists a prefix twice")
        return value

    @field_validator("trusted_proxy_cidrs")
    @classmethod
    def _check_trusted(cls, value: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        for net in value:
            if net.prefixlen < MIN_TRUSTED_PREFIX[net.version]:
                raise ValueError(
                    f"trusted proxy range {net} is too broad: clients inside it could choose their own "
                    f"address; list the proxies' exact addresses (/{net.max_prefixlen}) or their own subnet"
                )
        return value

    @field_validator("resolver")
    @classmethod
    def _check_resolver(cls, value: tuple[IPAddress, ...]) -> tuple[IPAddress, ...]:
        for address in value:
            if not (address.is_loopback or address.is_private):
                raise ValueError(
                    f"resolver {address} is not local: answers from a remote resolver can be spoofed; "
                    "use the host's or Docker's resolver (e.g. 127.0.0.11)"
                )
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> EdgeSettings:
        if self.http_port == self.https_port:
            raise ValueError("http_port and https_port must differ")
        if self.ocsp_stapling and not self.resolver:
            raise ValueError("ocsp_stapling needs a resolver so nginx can reach the OCSP responder")
        if self.hsts_preload and (not self.hsts_include_subdomains or self.hsts_max_age < 31_536_000):
            raise ValueError("hsts_preload needs hsts_include_subdomains and hsts_max_age >= 31536000")
        if len(set(self.listen_addresses)) != len(self.listen_addresses):
            raise ValueError("listen_addresses lists an address twice")
        return self

    @property
    def retry_after(self) -> int:
        """The Retry-After nginx sends with its own 429: the slower of the two buckets."""
        return max(self.per_ip.retry_after, self.per_key.retry_after)

    @property
    def max_body_bytes(self) -> int:
        return size_in_bytes(self.client_max_body_size)

    @property
    def replay_locations(self) -> tuple[str, ...]:
        """Exact paths nginx may send to a second replica after the first one failed mid-request.

        Only operations whose repetition costs the client nothing but a
        second upstream bill: a message (its answer reaches the client whole
        or not at all until the gateway relays it) and a token count. Never a
        batch, a file, or anything else that creates or deletes. Empty with
        one replica, or when /v1/ is not proxied.
        """
        if self.upstream_replicas < 2 or "/v1/" not in self.proxied_prefixes:
            return ()
        return REPLAY_PATHS

    @property
    def replay_max_body_bytes(self) -> int:
        """A replayable request is kept in memory whole (never in a temp file): this large at most."""
        return size_in_bytes(self.client_body_buffer_size)


#: The operations nginx may replay on another replica (``EdgeSettings.replay_locations``).
REPLAY_PATHS = ("/v1/messages", "/v1/messages/count_tokens")


def at_most_regex(limit: int) -> str:
    """A regex (anchored) matching exactly the decimal numbers 0..``limit`` written without leading zeros.

    nginx's ``map`` compares strings, not numbers; this is how it tells a
    Content-Length that fits a buffer from one that does not.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    text = str(limit)
    width = len(text)
    alternatives = ["0"]
    if width >= 2:
        alternatives.append("[1-9]" if width == 2 else f"[1-9][0-9]{{0,{width - 2}}}")
    for i, ch in enumerate(text):
        low = 1 if i == 0 else 0
        digit = int(ch)
        if digit > low:
            rest = width - i - 1
            span = str(low) if digit - 1 == low else f"[{low}-{digit - 1}]"
            alternatives.append(text[:i] + span + (f"[0-9]{{{rest}}}" if rest else ""))
    if limit > 0:
        alternatives.append(text)
    return "^(?:" + "|".join(dict.fromkeys(alternatives)) + ")$"


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
