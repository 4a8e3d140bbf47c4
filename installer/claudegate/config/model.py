"""The typed model of ``deploy.yaml``.

Every section is a pydantic model with ``extra="forbid"`` (an unknown key is
an error, never silently ignored) and strict scalars (``rpm: "60"`` is an
error, not a quiet conversion). Validators raise :func:`fail` errors that
carry the problem *and* the fix; :mod:`claudegate.config.load` turns them
into ``FILE:LINE:COL: FIELD: problem; fix`` lines.

Checks that look at several sections at once (``tls.mode: files`` needs
``cert_file``; ACME needs a public domain name) live in
:func:`claudegate.config.rules.rule_problems`; :class:`DeployConfig` runs them
after its fields validated, so a model built directly (by the wizard, or in a
test) is as checked as one loaded from a file.

The edge sections (``ports``, ``tls.profile``, ``limits``) take their
defaults and bounds from the knob table (:mod:`claudegate.knobs`), as
:class:`claudegate.edge.settings.EdgeSettings` does, and are checked against
EdgeSettings too, so the two never disagree about a default or a bound.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationInfo,
    model_validator,
)

from claudegate.config.defaults import (
    DEFAULT_ACME_DIRECTORY,
    DEFAULT_NETWORK_SUBNET,
    LETS_ENCRYPT_DIRECTORIES,
)
from claudegate.config.filters import FilterRule, Override
from claudegate.config.operations import TEMPLATES, matches_an_operation
from claudegate.config.problems import fail, format_path
from claudegate.config.rules import rule_problems
from claudegate.connectors.known_hosts import normalize_fingerprint
from claudegate.edge.settings import MIN_TRUSTED_PREFIX, RateLimit, Size, default_zone
from claudegate.knobs import knob

if TYPE_CHECKING:
    from claudegate.config.load import Origin

__all__ = [
    "DEFAULT_ACME_DIRECTORY",
    "DEFAULT_NETWORK_SUBNET",
    "LETS_ENCRYPT_DIRECTORIES",
    "TLS",
    "Client",
    "DeployConfig",
    "IPNetwork",
    "Images",
    "Limits",
    "Network",
    "Ports",
    "RateLimit",
    "Target",
    "Timeouts",
    "Upstream",
    "config_home",
    "fail",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


#: ``ctx`` key under which a rule names the sub-field it is about.
RULES_DEFERRED = "claudegate_rules_deferred"


def config_home() -> Path:
    """``$XDG_CONFIG_HOME/claudegate`` (default ``~/.config/claudegate``), the tool's own directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "claudegate"


def _knob(path: str, **kwargs: Any) -> Any:
    """A field with the knob table's default and lower bound for ``path`` (:mod:`claudegate.knobs`).

    An edge knob's upper bound is checked through EdgeSettings (``rules._edge``),
    whose message names the range; ports, whose range is fixed, and the
    gateway-only knobs, which no EdgeSettings field checks, are bounded here.
    """
    row = knob(path)
    bounds: dict[str, Any] = {}
    if row.kind == "int" and row.minimum is not None:
        bounds["ge"] = row.minimum
    if (path.startswith("ports.") or not row.at_edge) and row.maximum is not None:
        bounds["le"] = row.maximum
    return Field(default=row.default, examples=[row.default], **bounds, **kwargs)


def _show(value: object) -> str:
    """A value as an operator would recognise it in their file, never a secret."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        if "sk-ant" in value:
            return "a value that looks like an Anthropic API key (not shown)"
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


# --- scalar types ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: object, example: str) -> str:
    if not isinstance(value, str):
        raise fail(f"must be text, got {_show(value)}", f"write e.g. {example}")
    if _CONTROL.search(value):
        raise fail("contains a control character (tab, newline, ...)", "remove it")
    return value


def _path(value: object, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path is relative to the config file's directory."""
    if isinstance(value, Path):
        value = str(value)
    text = _text(value, "~/.config/claudegate/anthropic_api_key")
    if not text.strip():
        raise fail("is empty", "give a file path, or remove the key")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise fail(
            f"cannot expand {_show(text)}: the home directory is unknown", "write an absolute path"
        ) from None
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = (Path(base) if base is not None else Path.cwd()) / path
    return path


FilePath = Annotated[Path, BeforeValidator(_path)]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_hostname(value: object, *, what: str = "domain", example: str = "gw.example.com") -> str:
    """A DNS name, lower-cased, without a trailing dot; errors say how to write one."""
    text = _text(value, example).strip()
    if "://" in text:
        raise fail(f"{_show(text)} is a URL, not a host name", f"write only the name, e.g. {example}")
    if _is_ip(text.strip("[]")):
        raise fail(
            f"{_show(text)} is an IP address; the {what} must be a DNS name that points at the server",
            f"create a DNS record and write its name, e.g. {example}",
        )
    if "/" in text or ":" in text:
        raise fail(
            f"{_show(text)} is not a plain host name",
            f"write only the name, without port or path, e.g. {example}",
        )
    if not text.isascii():
        raise fail(f"{_show(text)} has non-ASCII characters", "write the name in its punycode form (xn--...)")
    name = text.rstrip(".").lower()
    if not name:
        raise fail("is empty", f"write a DNS name, e.g. {example}")
    if len(name) > 253:
        raise fail(f"is {len(name)} characters long; a DNS name has at most 253", "use a shorter name")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise fail(
                f"{_show(text)} is not a valid DNS name: label {label!r} may hold only letters, digits and '-',"
                " 1-63 characters, not starting or ending with '-'",
                f"write e.g. {example}",
            )
    if name.rsplit(".", 1)[-1].isdigit():
        raise fail(
            f"{_show(text)} is not a valid DNS name (the last label is a number)", f"write e.g. {example}"
        )
    return name


def _domain(value: object) -> str:
    """The name clients use: a DNS name, or an IPv4 address (only the internal CA certifies one, see rules)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(value.strip())
            if address.version == 4:
                return str(address)
    return check_hostname(value)


Domain = Annotated[str, BeforeValidator(_domain)]


def _target_host(value: object) -> str:
    text = _text(value, "gw.example.com")
    if text.strip().lower() == "local":
        return "local"
    bare = text.strip().strip("[]")
    if _is_ip(bare):
        return str(ipaddress.ip_address(bare))
    user, at, rest = text.strip().rpartition("@")
    if at and user and rest:
        # ssh's own user@host form: the user has its own key.
        raise fail(f"{_show(text)} includes a user name", f"write host: {rest} and put {user} in target.user")
    name, colon, port = text.strip().rpartition(":")
    if colon and port.isdigit() and "/" not in text:
        raise fail(
            f"{_show(text)} includes a port",
            f"write host: {name.strip('[]')} and put the port in target.port",
        )
    return check_hostname(text, what="host", example="gw.example.com, 203.0.113.10 or local")


def _cidr(value: object) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise fail(
            f"must be an address range written as text, got {_show(value)}", "write e.g. 203.0.113.0/24"
        )
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        separator = next((ch for ch in ";, " if ch in text), None)
        if separator is not None:
            # Several ranges in one entry: a separator that is not the list's own.
            raise fail(
                f"{_show(text)} holds several entries joined by {separator!r}, which does not separate entries",
                "write each range as its own list entry (in the wizard: separate them with commas or spaces)",
            ) from None
        raise fail(
            f"{_show(text)} is not an IPv4 or IPv6 address range",
            "write ADDRESS/PREFIX, e.g. 203.0.113.0/24 or 2001:db8::/32, or a single address",
        ) from None
    address = text.split("/", 1)[0]
    raise fail(
        f"{_show(text)} has host bits set (the bits after /{net.prefixlen} are not zero)",
        f"write {net} for the whole network, or {address}/{net.max_prefixlen} for that one address",
    )


CIDR = Annotated[IPNetwork, BeforeValidator(_cidr)]


def _trusted_cidr(value: object) -> IPNetwork:
    net = _cidr(value)
    if net.prefixlen < MIN_TRUSTED_PREFIX[net.version]:
        raise fail(
            f"{net} is too broad for a trusted proxy range: clients inside it could choose the address"
            " nginx believes",
            f"list your proxies' own addresses (/{net.max_prefixlen}) or their subnet,"
            f" at least /{MIN_TRUSTED_PREFIX[net.version]}",
        )
    return net


TrustedCIDR = Annotated[IPNetwork, BeforeValidator(_trusted_cidr)]


def _expires(value: object) -> datetime:
    """A date and time; a bare date means midnight UTC, a time without zone means UTC."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time(0), tzinfo=UTC)
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise fail(
                f"{_show(value)} is not a date and time", "write it in ISO 8601, e.g. 2027-06-30T00:00:00Z"
            ) from None
    else:
        raise fail(
            f"must be a date and time, got {_show(value)}", "write it in ISO 8601, e.g. 2027-06-30T00:00:00Z"
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


Expires = Annotated[datetime, BeforeValidator(_expires)]


def _pattern(regex: str, problem: str, example: str) -> BeforeValidator:
    compiled = re.compile(regex)

    def check(value: object) -> str:
        text = _text(value, example)
        if not compiled.match(text):
            raise fail(f"{_show(text)} {problem}", f"write e.g. {example}")
        return text

    return BeforeValidator(check)


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_UNIX_USER = r"^[a-z_][a-z0-9_-]{0,31}$"
_CLIENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_MODEL_GLOB = r"^[A-Za-z0-9*?\[\]][A-Za-z0-9*?\[\]._:@/-]{0,127}$"
_ENDPOINT_GLOB = r"^/[A-Za-z0-9*?\[\]{}._/-]{0,127}$"
_BETA = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_IMAGE = (
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)

EnvName = Annotated[str, _pattern(_ENV_NAME, "is not an environment variable name", "ANTHROPIC_API_KEY")]
UnixUser = Annotated[str, _pattern(_UNIX_USER, "is not a Unix user name", "deploy")]
ClientName = Annotated[
    str,
    _pattern(
        _CLIENT_NAME,
        "is not a client name (1-64 letters, digits, '.', '_', '-'; starting with a letter or digit)",
        "team-a",
    ),
]
ModelGlob = Annotated[str, _pattern(_MODEL_GLOB, "is not a model name or glob", "claude-sonnet-*")]
def _known_operation(glob: str) -> str:
    # Endpoint scopes are matched against the gateway's route templates: a
    # glob that matches none of them would silently allow nothing.
    if not matches_an_operation(glob):
        raise fail(f"{_show(glob)} matches no operation the gateway serves", f"use a glob over: {', '.join(TEMPLATES)}")
    return glob


EndpointGlob = Annotated[
    str,
    _pattern(_ENDPOINT_GLOB, "is not a URL path or glob starting with /", "/v1/messages*"),
    AfterValidator(_known_operation),
]
BetaName = Annotated[str, _pattern(_BETA, "is not an anthropic-beta value", "prompt-caching-2024-07-31")]
Email = Annotated[str, _pattern(_EMAIL, "is not an email address", "ops@example.com")]
ImageRef = Annotated[
    str, _pattern(_IMAGE, "is not a Docker image reference", "debian:bookworm-slim")
]


def _fingerprint(value: object) -> str:
    text = _text(value, "SHA256:...")
    normalized = normalize_fingerprint(text)
    if normalized is None:
        raise fail(
            f"{_show(text)} is not a host key fingerprint",
            "write 'SHA256:' and 43 base64 characters, as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`"
            " prints it on the server",
        )
    return normalized


Fingerprint = Annotated[str, BeforeValidator(_fingerprint)]


def _base_url(value: object) -> str:
    text = _text(value, "https://api.anthropic.com").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"{_show(text)} is not an http(s) URL", "write e.g. https://api.anthropic.com")
    if parts.username or parts.password:
        raise fail(
            "the URL holds a user name or password", "remove it; the key goes in upstream.api_key_file"
        )
    if parts.query or parts.fragment:
        raise fail("the URL has a query or fragment", "write only scheme, host, port and path")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise fail(f"{_show(text)} has an invalid port", "write e.g. https://api.anthropic.com") from None
    if parts.scheme == "http" and not _private_host(parts.hostname):
        raise fail(
            "plain http:// would send the Anthropic key unencrypted over the internet",
            "use https:// (http:// is accepted only for private addresses and names such as a local test upstream)",
        )
    return text.rstrip("/")


def _private_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".test", ".internal", ".localhost", ".local", ".lan"))
    return address.is_private or address.is_loopback


BaseURL = Annotated[str, BeforeValidator(_base_url)]


def _acme_directory(value: object) -> str:
    text = _text(value, DEFAULT_ACME_DIRECTORY).strip()
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise fail(
            f"{_show(text)} is not an https:// URL; ACME directories are served over HTTPS",
            f"write e.g. {DEFAULT_ACME_DIRECTORY}",
        )
    return text


def _size_text(value: object) -> object:
    """``max_body_size: 1048576`` (a YAML number) is a byte count, as nginx reads it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


BodySize = Annotated[Size, BeforeValidator(_size_text)]


# --- sections -------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """``ports:`` with every line below it commented out is YAML null: read it as "defaults"."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            info = cls.model_fields.get(name) if isinstance(name, str) else None
            if value is not None or info is None:
                continue
            annotation = info.annotation
            container = annotation if isinstance(annotation, type) else get_origin(annotation)
            if container is list or (isinstance(container, type) and issubclass(container, BaseModel)):
                if info.is_required():
                    out[name] = [] if container is list else {}
                else:
                    del out[name]
        return out


class Target(_Section):
    """Where to deploy: this machine (``host: local``) or a server over SSH."""

    host: Annotated[str, BeforeValidator(_target_host)] = Field(
        examples=["gw.example.com"],
        description='"local" for this machine, or the server\'s host name or IP address',
    )
    user: UnixUser | None = Field(
        default=None, examples=["deploy"], description="SSH user; default: your own user name, like ssh"
    )
    port: StrictInt = Field(default=22, ge=1, le=65535, examples=[22], description="SSH port")
    ssh_key: FilePath | None = Field(
        default=None,
        examples=["~/.ssh/claudegate_deploy"],
        description="private key file; default: ssh-agent, then ~/.ssh/id_{ed25519,ecdsa,rsa}",
    )
    known_hosts: FilePath = Field(
        default_factory=lambda: config_home() / "known_hosts",
        examples=["~/.config/claudegate/known_hosts"],
        description="the tool's own known_hosts file (not ~/.ssh/known_hosts)",
    )
    host_key_fingerprint: Fingerprint | None = Field(
        default=None,
        examples=["SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"],
        description="accept exactly this host key on first contact",
    )
    sudo: StrictBool = Field(default=True, examples=[True], description="run privileged steps with sudo")

    @property
    def is_local(self) -> bool:
        return self.host == "local"


TLSMode = Literal["acme", "files", "internal-ca"]


class TLS(_Section):
    """Where the certificate comes from, and which TLS versions are offered."""

    mode: TLSMode = Field(
        examples=["acme"],
        description="acme: Let's Encrypt (or another ACME CA) over HTTP-01; files: your own PEM files;"
        " internal-ca: a private CA the tool creates (for trying it out)",
    )
    email: Email | None = Field(default=None, examples=["ops@example.com"], description="ACME account email")
    acme_directory: Annotated[str, BeforeValidator(_acme_directory)] = Field(
        default=DEFAULT_ACME_DIRECTORY, examples=[DEFAULT_ACME_DIRECTORY], description="ACME directory URL"
    )
    cert_file: FilePath | None = Field(
        default=None,
        examples=["/etc/ssl/gw/fullchain.pem"],
        description="files: certificate and intermediates, PEM",
    )
    key_file: FilePath | None = Field(
        default=None,
        examples=["/etc/ssl/gw/privkey.pem"],
        description="files: the private key, PEM, mode 0600",
    )
    chain_file: FilePath | None = Field(
        default=None, examples=["/etc/ssl/gw/chain.pem"], description="files: intermediates (and root), PEM"
    )
    profile: Literal["intermediate", "modern"] = _knob(
        "tls.profile", description="Mozilla profile: intermediate = TLS 1.2 + 1.3, modern = TLS 1.3 only"
    )


class Upstream(_Section):
    """The Anthropic API, and where its key is read from (never inline)."""

    base_url: BaseURL = Field(default="https://api.anthropic.com", examples=["https://api.anthropic.com"])
    api_key_file: FilePath | None = Field(
        default=None,
        examples=["~/.config/claudegate/anthropic_api_key"],
        description="file holding the key, mode 0600; read only when deploying",
    )
    api_key_env: EnvName | None = Field(
        default=None, examples=["ANTHROPIC_API_KEY"], description="environment variable holding the key"
    )


class Ports(_Section):
    """The two ports nginx publishes on the host."""

    http: StrictInt = _knob("ports.http")
    https: StrictInt = _knob("ports.https")


class Timeouts(_Section):
    """Seconds nginx waits for clients and for the gateway (defaults and bounds: the knob table)."""

    client_header: StrictInt = _knob("limits.timeouts.client_header")
    client_body: StrictInt = _knob("limits.timeouts.client_body")
    send: StrictInt = _knob("limits.timeouts.send")
    keepalive: StrictInt = _knob("limits.timeouts.keepalive")
    upstream_connect: StrictInt = _knob("limits.timeouts.upstream_connect")
    upstream_send: StrictInt = _knob("limits.timeouts.upstream_send")
    upstream_read: StrictInt = _knob("limits.timeouts.upstream_read")
    #: A replaced gateway (and nginx's workers from before a reload) let open streams finish for this long.
    drain: StrictInt = _knob("limits.timeouts.drain")


class Limits(_Section):
    """Abuse limits enforced by nginx before a request reaches the gateway, and the
    gateway's reservation ceilings for content a request only points at (URLs,
    server tools; gateway.yaml ``limits``, defaults of ``claudegate_gateway.reservation``)."""

    per_ip: RateLimit = Field(default=default_zone("per_ip"), description="requests per client address")
    per_key: RateLimit = Field(default=default_zone("per_key"), description="requests per client key")
    connections_per_ip: StrictInt = _knob("limits.connections_per_ip")
    # Its minimum (in bytes) is a rule: config.rules._limits.
    max_body_size: BodySize = _knob("limits.max_body_size")
    timeouts: Timeouts = Timeouts()
    url_source_tokens: StrictInt = _knob(
        "limits.url_source_tokens",
        description="tokens reserved for each URL source (document or image url, MCP server) a request names",
    )
    server_tool_use_tokens: StrictInt = _knob(
        "limits.server_tool_use_tokens",
        description="tokens reserved per use of web search / web fetch (results are billed as input)",
    )
    server_tool_default_uses: StrictInt = _knob(
        "limits.server_tool_default_uses",
        description="uses reserved for a web search / web fetch tool that sets no max_uses",
    )
    models_cache_seconds: StrictInt = _knob(
        "limits.models_cache_seconds",
        description="seconds the gateway keeps upstream's model catalogue for every key's GET /v1/models",
    )
    held_downloads_mib: StrictInt = _knob(
        "limits.held_downloads_mib",
        description="MiB of file downloads the gateway holds at once while it filters them (all keys together)",
    )
    held_downloads_per_key_mib: StrictInt = _knob(
        "limits.held_downloads_per_key_mib",
        description="MiB of those one key may hold (at most held_downloads_mib); past it that key gets 429",
    )


class Client(_Section):
    """One client key to create, with its scopes (the gateway's ``keys create`` options)."""

    name: ClientName = Field(examples=["team-a"])
    models: list[ModelGlob] = Field(
        default_factory=lambda: ["*"], min_length=1, examples=[["claude-sonnet-*"]]
    )
    endpoints: list[EndpointGlob] = Field(
        default_factory=lambda: ["/v1/*"], min_length=1, examples=[["/v1/*"]]
    )
    betas: list[BetaName] | None = Field(default=None, min_length=1, examples=[["prompt-caching-2024-07-31"]])
    max_tokens: StrictInt | None = Field(default=None, gt=0, examples=[8192])
    stream: StrictBool = Field(default=True, examples=[True])
    rpm: StrictInt | None = Field(default=None, gt=0, examples=[60])
    tpm: StrictInt | None = Field(default=None, gt=0, examples=[200000])
    daily_tokens: StrictInt | None = Field(default=None, gt=0, examples=[5000000])
    expires: Expires | None = Field(default=None, examples=["2027-06-30T00:00:00Z"])
    filters: dict[str, Override] = Field(
        default_factory=dict,
        examples=[{"pii": "off"}],
        description="per-rule overrides for this client: off (exempt) or its own action",
    )


class Images(_Section):
    """How the images get onto the target."""

    base_image: ImageRef = Field(
        default="debian:bookworm-slim",
        examples=["debian:bookworm-slim"],
        description="what the images build FROM; pulled on the host unless this machine has it (then sent)",
    )
    transfer: Literal["auto", "build", "save-load"] = Field(
        default="auto",
        examples=["auto"],
        description=(
            "auto: save-load when this machine has a working Docker with the base image and the target's"
            " CPU architecture, else build; build: build on the target;"
            " save-load: build here, docker save | ssh docker load"
        ),
    )


def _subnet(value: object) -> ipaddress.IPv4Network:
    net = _cidr(value)
    if not isinstance(net, ipaddress.IPv4Network):
        raise fail(f"{net} is IPv6; the private network is IPv4", f"write e.g. {DEFAULT_NETWORK_SUBNET}")
    if not net.is_private or net.is_loopback:
        raise fail(f"{net} is not a private range", "use a range from 10/8, 172.16/12 or 192.168/16")
    if net.prefixlen > 29:
        raise fail(f"{net} is too small for the containers", "use a /29 or larger, e.g. a /28")
    return net


class Network(_Section):
    """The private Docker network between nginx and the gateway."""

    subnet: Annotated[ipaddress.IPv4Network, BeforeValidator(_subnet)] = Field(
        default=ipaddress.IPv4Network(DEFAULT_NETWORK_SUBNET), examples=[DEFAULT_NETWORK_SUBNET]
    )


def _state_url(schemes: tuple[str, ...], example: str) -> Any:
    def check(value: object) -> str:
        text = _text(value, example).strip()
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise fail(f"{_show(text)} is not a {' or '.join(s + '://' for s in schemes)} URL", f"write e.g. {example}")
        if parts.password is not None:
            raise fail("the URL holds a password", "put the password in a 0600 file and set password_file")
        return text

    return BeforeValidator(check)


class StateRedis(_Section):
    """An existing Redis (or a managed one) for admission across hosts."""

    url: Annotated[str, _state_url(("redis", "rediss"), "rediss://10.0.0.5:6379/0")] = Field(
        examples=["rediss://10.0.0.5:6379/0"], description="redis:// or rediss:// (TLS); never a password in it"
    )
    password_file: FilePath | None = Field(
        default=None, examples=["~/.config/claudegate/redis_password"], description="the password, mode 0600"
    )
    tls_ca_file: FilePath | None = Field(
        default=None, examples=["~/.config/claudegate/state-ca.pem"], description="rediss://: the CA, PEM"
    )
    lease_seconds: StrictInt = Field(
        default=15, ge=1, le=300, examples=[15],
        description="a dead gateway replica's in-flight places come back after this",
    )


class StatePostgres(_Section):
    """An existing PostgreSQL (or a managed one): keys, owned objects, usage."""

    url: Annotated[str, _state_url(("postgresql", "postgres"), "postgresql://claudegate@10.0.0.5:5432/claudegate")] = (
        Field(examples=["postgresql://claudegate@10.0.0.5:5432/claudegate"], description="never a password in it")
    )
    password_file: FilePath | None = Field(
        default=None, examples=["~/.config/claudegate/pg_password"], description="the password, mode 0600"
    )
    tls: Literal["disable", "require", "verify-full"] = Field(
        default="verify-full", examples=["verify-full"], description="verify-full checks the chain and the name"
    )
    tls_ca_file: FilePath | None = Field(
        default=None, examples=["~/.config/claudegate/state-ca.pem"], description="verify-full: the CA, PEM"
    )
    cache_entries: StrictInt = Field(default=4096, ge=1, le=1_000_000, examples=[4096])
    cache_seconds: StrictInt = Field(
        default=3600, ge=1, le=86400, examples=[3600],
        description="how long a known key keeps working while PostgreSQL is unreachable",
    )


def _private_address(value: object) -> ipaddress.IPv4Address:
    text = _text(value, "10.0.0.5").strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise fail(f"{_show(text)} is not an IP address", "write the host's private IPv4 address, e.g. 10.0.0.5") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise fail(f"{addr} is IPv6", "write the host's private IPv4 address, e.g. 10.0.0.5")
    # Redis and PostgreSQL listen here and nowhere else: a public (or wildcard,
    # or loopback) address would either expose them or hide them from the gateways.
    if not addr.is_private or addr.is_loopback or addr.is_unspecified or addr.is_link_local:
        raise fail(f"{addr} is not a private address", "use the host's address in 10/8, 172.16/12 or 192.168/16")
    return addr


class StateHost(Target):
    """A host on which claudegate deploys Redis and PostgreSQL itself (``claudegate state deploy``).

    The SSH fields are :class:`Target`'s. Both engines are Debian's packages in
    images built from ``images.base_image``, with their data on named volumes,
    listening on ``private_address`` only; their passwords are generated.
    """

    private_address: Annotated[ipaddress.IPv4Address, BeforeValidator(_private_address)] | None = Field(
        default=None,
        examples=["10.0.0.5"],
        description="where Redis and PostgreSQL listen (nothing else); default: the host's one private address",
    )
    redis_port: StrictInt = Field(default=6379, ge=1, le=65535, examples=[6379])
    postgres_port: StrictInt = Field(default=5432, ge=1, le=65535, examples=[5432])
    tls: StrictBool = Field(
        default=False,
        examples=[False],
        description="TLS to both, with a private CA made here (state_dir/state/ca.pem) for the private address",
    )


class SharedState(_Section):
    """Where gateways on several hosts share state (the gateway's ``state:`` section).

    Either ``redis:`` and ``postgres:`` (servers that exist: URLs), or ``host:``
    (claudegate deploys both there), never both.
    """

    redis: StateRedis | None = None
    postgres: StatePostgres | None = None
    host: StateHost | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SharedState:
        urls = [name for name in ("redis", "postgres") if getattr(self, name) is not None]
        if self.host is not None and urls:
            raise fail(
                f"host: and {' and '.join(urls)}: are both set",
                "choose one: state.host (claudegate deploys Redis and PostgreSQL there)"
                " or state.redis and state.postgres (URLs of servers you run)",
            )
        if self.host is None and len(urls) != 2:
            missing = "state.redis and state.postgres" if not urls else f"state.{({'redis', 'postgres'} - set(urls)).pop()}"
            raise fail(
                f"{missing} missing",
                "give both state.redis and state.postgres (URLs), or state.host for claudegate to deploy them",
            )
        return self


def _default_state_dir(data: dict[str, Any]) -> Path:
    return config_home() / str(data.get("domain", "unknown"))


class Rollout(_Section):
    """How a deploy to several hosts moves through them."""

    batch: StrictInt = Field(
        default=1, ge=1, le=100, examples=[1],
        description="hosts switched together; each batch is smoke-tested before the next starts",
    )


class DeployConfig(_Section):
    """The whole ``deploy.yaml``."""

    target: Target = Field(description="the one gateway host; with several, write hosts: instead")
    hosts: list[Target] | None = Field(
        default=None,
        min_length=1,
        description="several gateway hosts (each written like target:); they need state: to share keys and limits",
    )
    rollout: Rollout = Rollout()
    domain: Domain = Field(
        examples=["gw.example.com"],
        description="the name clients use (an IPv4 address works with tls.mode: internal-ca)",
    )
    tls: TLS
    upstream: Upstream = Upstream()
    ports: Ports = Ports()
    limits: Limits = Limits()
    allowlist: list[CIDR] = Field(
        default_factory=list,
        examples=[["203.0.113.0/24"]],
        description="client ranges allowed; empty = everyone",
    )
    trusted_proxies: list[TrustedCIDR] = Field(
        default_factory=list,
        examples=[["198.51.100.7/32"]],
        description="proxies in front of nginx whose X-Forwarded-For is believed",
    )
    clients: list[Client] = Field(default_factory=list)
    filters: list[FilterRule] | None = Field(
        default=None,
        description="content rules, both directions; left out: the gateway's default"
        " (secrets and card numbers blocked in requests); [] turns filtering off",
    )
    images: Images = Images()
    network: Network = Network()
    state: SharedState | None = Field(
        default=None,
        description="Redis and PostgreSQL shared by gateways on several hosts; left out: one host, SQLite",
    )
    audit: StrictBool = Field(
        default=False,
        examples=[False],
        description="after the smoke test, run `claudegate audit --quick`; a probe that fails keeps the old release",
    )
    state_dir: FilePath = Field(
        default_factory=_default_state_dir,
        examples=["~/.config/claudegate/gw.example.com"],
        description="operator-side secrets (0600) and the issued keys",
    )

    # Where the config came from (file name and node positions), for later
    # messages such as the secret file check; None when built in code.
    _origin: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _hosts_or_target(cls, data: Any) -> Any:
        """``hosts:`` names the fleet; ``target`` is then its first host (what one-host code reads)."""
        if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or not data["hosts"]:
            return data
        first = data["hosts"][0]
        if "target" in data and data["target"] != first:
            raise fail(
                "target: and hosts: are both set",
                "write target: for one host, or list every host under hosts: (and remove target:)",
            )
        return {**data, "target": first}

    @property
    def fleet(self) -> list[Target]:
        """Every gateway host, in rollout order (``[target]`` for a one-host file)."""
        return list(self.hosts) if self.hosts else [self.target]

    @property
    def several_hosts(self) -> bool:
        return len(self.fleet) > 1

    def for_host(self, host: Target) -> DeployConfig:
        """This config as a one-host deploy of ``host`` (what each step of a rolling deploy sees)."""
        return self.model_copy(update={"target": host})

    @property
    def origin(self) -> Origin | None:
        """The file and key positions this config was loaded from (None if built in code)."""
        origin: Origin | None = self._origin
        return origin

    @model_validator(mode="after")
    def _check_rules(self, info: ValidationInfo) -> DeployConfig:
        if (info.context or {}).get(RULES_DEFERRED):
            return self
        problems = rule_problems(self)
        if problems:
            first = problems[0]
            where = format_path(first.loc)
            raise fail(f"{where}: {first.problem}" if where else first.problem, first.fix)
        return self
