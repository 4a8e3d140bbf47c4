"""The gateway's YAML config: parsed once at start, validated with messages
that name the file, the key and the fix.

pydantic would do this nicely, but the gateway image is kept to aiohttp and
pyyaml, so validation is a few explicit checks here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from claudegate_gateway.reservation import ReservationLimits
from claudegate_gateway.stateconfig import StateConfig, StateConfigError, parse_state


class ConfigError(Exception):
    """A config problem, said in one line: where, what, and how to fix it."""


@dataclass(frozen=True)
class Upstream:
    base_url: str = "https://api.anthropic.com"
    api_key_file: Path = Path("/run/secrets/anthropic_api_key")
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    max_connections: int = 256


@dataclass(frozen=True)
class Config:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    internal_listen: tuple[str, int] = ("127.0.0.1", 9090)
    upstream: Upstream = field(default_factory=Upstream)
    keystore: Path = Path("/var/lib/claudegate/keys.db")
    pepper_file: Path = Path("/run/secrets/key_pepper")
    audit_log: Path | None = Path("/var/log/claudegate/audit.jsonl")
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_body_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 32 * 1024 * 1024
    max_in_flight_per_key: int = 32
    # Bytes of request bodies one key may have inside the gateway at once
    # (being read, waiting for an inspection worker, sent upstream); more is a
    # 429, one body over it a 413. Default: twice max_body_bytes.
    max_body_bytes_per_key: int = 64 * 1024 * 1024
    audit_log_max_bytes: int = 64 * 1024 * 1024
    audit_log_files: int = 5
    audit_field_max_chars: int = 512
    # None: the key was absent, so the default secret detectors apply;
    # an explicit empty list turns filtering off.
    filters: tuple[dict[str, Any], ...] | None = None
    # client name -> {rule name: "off" | action}; rule names are checked
    # against the policy when the gateway is built.
    client_filters: dict[str, dict[str, str]] = field(default_factory=dict)
    # Shared state for several hosts (stateconfig.py); empty: SQLite and this process alone.
    state: StateConfig = field(default_factory=StateConfig)
    # Ceilings reserved for content a request points at (reservation.py).
    reservations: ReservationLimits = field(default_factory=ReservationLimits)
    batch_poll_seconds: float = 30.0  # how often open batches are checked for settlement
    # On SIGTERM, requests and streams in flight get this long to finish (Claude Code's streams are long).
    drain_seconds: float = 600.0
    # Upstream's model catalogue is read once for every key for this long (catalogue.py); 0: only
    # concurrent list calls share a read.
    models_cache_seconds: float = 30.0
    # Bytes of file downloads held at once, all keys together (the start of each while it is
    # filtered, a compressed file or PDF whole); a download that would go past it is refused (529).
    max_held_download_bytes: int = 256 * 1024 * 1024
    # One key's share of it (at most all of it): a key holding its share leaves the rest to the others
    # (past it: 429). Half by default, so a 40 MiB gzip (held three times while opened) still fits.
    max_held_download_bytes_per_key: int = 128 * 1024 * 1024
    source: str = "<defaults>"


_TOP_KEYS = {
    "listen", "internal_listen", "upstream", "keystore", "pepper_file",
    "audit_log", "trusted_proxies", "max_body_bytes", "filters", "client_filters",
    "max_upload_bytes", "max_in_flight_per_key", "audit_log_max_bytes", "audit_log_files",
    "audit_field_max_chars", "state", "limits", "batch_poll_seconds", "max_body_bytes_per_key",
    "drain_seconds", "models_cache_seconds", "max_held_download_bytes",
    "max_held_download_bytes_per_key",
}
_LIMITS_KEYS = {"url_source_tokens", "server_tool_use_tokens", "server_tool_default_uses"}
_UPSTREAM_KEYS = {"base_url", "api_key_file", "connect_timeout", "read_timeout", "max_connections"}


def _fail(source: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}; {fix}")


def _hostport(source: str, key: str, value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise _fail(source, key, f"expected HOST:PORT, got {value!r}", "write it like 127.0.0.1:8080")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(source, key, f"port {port_text!r} is not 1-65535", "write it like 127.0.0.1:8080")
    return host, int(port_text)


def _number(source: str, key: str, value: Any, *, minimum: float, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value < minimum:
        kind = "a whole number" if integer else "a number"
        raise _fail(source, key, f"expected {kind} >= {minimum}, got {value!r}", f"set {key} to {kind}")
    return value


def _unknown(source: str, prefix: str, given: set[str], known: set[str]) -> None:
    import difflib

    for key in sorted(given - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"known keys: {', '.join(sorted(known))}"
        raise _fail(source, prefix + key, "unknown key", hint)


def parse_config(raw: Any, source: str = "<config>") -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    _unknown(source, "", set(raw), _TOP_KEYS)
    up_raw = raw.get("upstream", {}) or {}
    if not isinstance(up_raw, dict):
        raise _fail(source, "upstream", "must be a mapping", "give base_url and api_key_file under it")
    _unknown(source, "upstream.", set(up_raw), _UPSTREAM_KEYS)
    base_url = up_raw.get("base_url", Upstream.base_url)
    parts = urlsplit(str(base_url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(source, "upstream.base_url", f"{base_url!r} is not an http(s) URL", "use e.g. https://api.anthropic.com")
    if "api_key" in up_raw:  # pragma: no cover - caught by _unknown, kept for the message
        raise _fail(source, "upstream.api_key", "the key is never written inline", "put it in a 0600 file and set upstream.api_key_file")
    upstream = Upstream(
        base_url=str(base_url).rstrip("/"),
        api_key_file=Path(up_raw.get("api_key_file", Upstream.api_key_file)),
        connect_timeout=_number(source, "upstream.connect_timeout", up_raw.get("connect_timeout", 10.0), minimum=0.1),
        read_timeout=_number(source, "upstream.read_timeout", up_raw.get("read_timeout", 600.0), minimum=1),
        max_connections=_number(source, "upstream.max_connections", up_raw.get("max_connections", 256), minimum=1, integer=True),
    )
    proxies = []
    for i, cidr in enumerate(raw.get("trusted_proxies", []) or []):
        try:
            proxies.append(ipaddress.ip_network(str(cidr), strict=True))
        except ValueError as exc:
            raise _fail(source, f"trusted_proxies[{i}]", str(exc), "give a CIDR like 172.18.0.2/32") from None
    filters = raw.get("filters")
    if filters is not None and (not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters)):
        raise _fail(source, "filters", "must be a list of rule mappings", "see the gateway README for the rule format")
    client_filters = _client_filters(source, raw.get("client_filters") or {})
    try:
        state = parse_state(raw.get("state"), source)
    except StateConfigError as exc:
        raise ConfigError(str(exc)) from None
    if state.postgres is not None and state.redis is None:
        raise _fail(source, "state.redis", "missing while state.postgres is set",
                    "gateways on several hosts need Redis for exact limits; set state.redis.url too")
    audit = raw.get("audit_log", str(Config.audit_log))
    in_flight = _number(
        source, "max_in_flight_per_key", raw.get("max_in_flight_per_key", Config.max_in_flight_per_key),
        minimum=1, integer=True,
    )
    if in_flight > max(1, upstream.max_connections // 2):
        raise _fail(
            source, "max_in_flight_per_key",
            f"{in_flight} is more than half of upstream.max_connections ({upstream.max_connections}), "
            "so one key could hold every upstream connection",
            f"set it to at most {max(1, upstream.max_connections // 2)} or raise upstream.max_connections",
        )
    max_body = _number(source, "max_body_bytes", raw.get("max_body_bytes", Config.max_body_bytes), minimum=1024, integer=True)
    per_key_bytes = _number(
        source, "max_body_bytes_per_key", raw.get("max_body_bytes_per_key", 2 * max_body), minimum=1024, integer=True
    )
    return Config(
        reservations=_reservations(source, raw.get("limits")),
        batch_poll_seconds=_number(
            source, "batch_poll_seconds", raw.get("batch_poll_seconds", Config.batch_poll_seconds), minimum=0.1
        ),
        drain_seconds=_number(source, "drain_seconds", raw.get("drain_seconds", Config.drain_seconds), minimum=1),
        max_held_download_bytes=_number(
            source, "max_held_download_bytes", raw.get("max_held_download_bytes", Config.max_held_download_bytes),
            minimum=8 * 1024 * 1024, integer=True,
        ),
        max_held_download_bytes_per_key=_number(
            source, "max_held_download_bytes_per_key",
            raw.get("max_held_download_bytes_per_key", Config.max_held_download_bytes_per_key),
            minimum=8 * 1024 * 1024, integer=True,
        ),
        models_cache_seconds=_number(
            source, "models_cache_seconds", raw.get("models_cache_seconds", Config.models_cache_seconds), minimum=0
        ),
        listen=_hostport(source, "listen", raw.get("listen", "127.0.0.1:8080")),
        internal_listen=_hostport(source, "internal_listen", raw.get("internal_listen", "127.0.0.1:9090")),
        upstream=upstream,
        keystore=Path(raw.get("keystore", Config.keystore)),
        pepper_file=Path(raw.get("pepper_file", Config.pepper_file)),
        audit_log=Path(audit) if audit else None,
        trusted_proxies=tuple(proxies),
        max_body_bytes=max_body,
        max_body_bytes_per_key=per_key_bytes,
        filters=None if filters is None else tuple(filters),
        max_upload_bytes=_number(
            source, "max_upload_bytes", raw.get("max_upload_bytes", Config.max_upload_bytes), minimum=1024, integer=True
        ),
        max_in_flight_per_key=in_flight,
        audit_log_max_bytes=_number(
            source, "audit_log_max_bytes", raw.get("audit_log_max_bytes", Config.audit_log_max_bytes),
            minimum=65536, integer=True,
        ),
        audit_log_files=_number(
            source, "audit_log_files", raw.get("audit_log_files", Config.audit_log_files), minimum=0, integer=True
        ),
        audit_field_max_chars=_number(
            source, "audit_field_max_chars", raw.get("audit_field_max_chars", Config.audit_field_max_chars),
            minimum=64, integer=True,
        ),
        client_filters=client_filters,
        state=state,
        source=source,
    )


def _reservations(source: str, raw: Any) -> ReservationLimits:
    if raw is None:
        return ReservationLimits()
    if not isinstance(raw, dict):
        raise _fail(source, "limits", "must be a mapping", "write e.g. limits: {url_source_tokens: 100000}")
    _unknown(source, "limits.", set(raw), _LIMITS_KEYS)
    defaults = ReservationLimits()
    values = {
        key: _number(source, f"limits.{key}", raw.get(key, getattr(defaults, key)), minimum=1, integer=True)
        for key in _LIMITS_KEYS
    }
    return ReservationLimits(**values)


_OVERRIDES = ("off", "block", "redact", "log")


def _client_filters(source: str, raw: Any) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        raise _fail(source, "client_filters", "must be a mapping of client name to rule overrides",
                    "write e.g. client_filters: {internal-tool: {pii: off}}")
    out: dict[str, dict[str, str]] = {}
    for client, rules in raw.items():
        if not isinstance(rules, dict):
            raise _fail(source, f"client_filters.{client}", "must be a mapping of rule name to override",
                        "write e.g. {pii: off}")
        for rule, value in rules.items():
            if value is False:  # YAML 1.1 reads a bare off as false
                value = "off"
            if value not in _OVERRIDES:
                raise _fail(source, f"client_filters.{client}.{rule}", f"{value!r} is not an override",
                            "use off, block, redact or log")
        out[str(client)] = {str(k): ("off" if v is False else str(v)) for k, v in rules.items()}
    return out


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror}); check the path given to --config") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax there") from None
    return parse_config(raw, str(path))


def read_secret(path: Path, what: str, key: str, source: str) -> str:
    """Read a secret file; complain about its mode but never echo its content."""
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{source}: {key}: cannot read {what} at {path} ({exc.strerror}); create it with mode 0600") from None
    if not value:
        raise ConfigError(f"{source}: {key}: {what} at {path} is empty; write the secret into it")
    return value
