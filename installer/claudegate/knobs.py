"""The deploy.yaml knobs that become nginx and gateway settings: one row each, one owner.

A row (:class:`Knob`) says where the knob lives in ``deploy.yaml``, its kind,
default and bounds, the :class:`~claudegate.edge.settings.EdgeSettings` field
(and nginx directive) and the ``gateway.yaml`` keys it turns into, the
smoke/audit target field that carries it and what those probes expect of it,
and the wizard's label and help. A row sets the edge, the gateway or both;
a gateway-only row (the metering ceilings under ``limits``) has no edge field
and no nginx directive (:attr:`Knob.at_edge` is false, and it is not in
:data:`EDGE_KNOBS`). Everything else reads the table:

- :mod:`claudegate.edge.settings` -- the edge model's defaults and bounds;
- :mod:`claudegate.config.model` -- deploy.yaml's defaults and bounds (an
  edge row's upper bound is checked through ``EdgeSettings`` by the rules,
  whose message names the range; a gateway-only row's by the model);
- :mod:`claudegate.config.rules` -- which deploy.yaml path an edge problem is
  about (:data:`EDGE_FIELDS`), the body size minimum;
- :mod:`claudegate.config.derive` -- the edge settings and ``gateway.yaml``;
- :mod:`claudegate.wizard.form` -- the Limits screen's inputs and the
  "leave out a value equal to its default" comparison;
- :mod:`claudegate.smoke` and :mod:`claudegate.audit` -- their targets'
  defaults, and the audit's view of a deployed config (:func:`probe_values`).

``tests/config/test_knobs.py`` holds the table to the gateway's own config
defaults and minimums (``assets/gateway/claudegate_gateway/config.py``),
which cannot import this package (the gateway image ships without it).

Adding a limit is one row here plus its use (a template line, a probe).

This module imports nothing of the project, so every layer may read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "BURST_BOUNDS",
    "EDGE_FIELDS",
    "EDGE_KNOBS",
    "KNOBS",
    "Knob",
    "by_path",
    "knob",
    "per_second",
    "probe_defaults",
    "probe_values",
    "size_in_bytes",
]

Kind = Literal["int", "size", "rate", "choice"]
#: How gateway.yaml holds the value: bytes (from a size), seconds (a float), or a whole count.
GatewayUnit = Literal["bytes", "mebibytes", "seconds", "tokens", "uses", ""]
Loc = tuple[str, ...]

_RATE = re.compile(r"^([1-9][0-9]{0,5})r/([sm])$")


def size_in_bytes(value: str) -> int:
    """``32m`` -> 33554432, the way nginx reads a size."""
    unit = value[-1]
    if unit == "k":
        return int(value[:-1]) * 1024
    if unit == "m":
        return int(value[:-1]) * 1024 * 1024
    return int(value)


def per_second(rate: str) -> float:
    """``20r/s`` -> 20.0, ``600r/m`` -> 10.0: the rate nginx's bucket drains at."""
    match = _RATE.match(rate)
    if match is None:
        raise ValueError(f"{rate!r} is not a rate; write e.g. 20r/s or 600r/m")
    count = int(match.group(1))
    return count if match.group(2) == "s" else count / 60


@dataclass(frozen=True)
class Knob:
    """One deploy.yaml knob and every name it goes by."""

    #: Dotted path in deploy.yaml (``limits.max_body_size``).
    path: str
    kind: Kind
    #: As deploy.yaml writes it: ``"32m"``, ``"20r/s"``, ``40``.
    default: int | str
    #: Smallest and largest value (sizes: in bytes); None: no bound of its own.
    minimum: int | None = None
    maximum: int | None = None
    #: The EdgeSettings field it sets; ``per_ip.burst`` is a field of the ``per_ip`` zone.
    #: "" for a gateway-only knob (no nginx directive either).
    edge: str = ""
    #: The nginx directive the edge field is rendered into.
    nginx: str = ""
    #: ``gateway.yaml`` keys (dotted) it sets, and in what unit.
    gateway: tuple[str, ...] = ()
    gateway_unit: GatewayUnit = ""
    #: The smoke/audit target field that carries it ("" when no probe reads it) ...
    probe: str = ""
    #: ... and what the probes expect of the deployment because of it.
    expect: str = ""
    #: The wizard's input for it ("" when the wizard does not ask).
    label: str = ""
    help: str = ""

    def __post_init__(self) -> None:
        if bool(self.edge) != bool(self.nginx):
            raise ValueError(f"{self.path}: an edge field and its nginx directive go together")
        if not self.edge and not self.gateway:
            raise ValueError(f"{self.path}: a knob sets an edge field, gateway.yaml keys, or both")
        if bool(self.gateway) != bool(self.gateway_unit):
            raise ValueError(f"{self.path}: gateway.yaml keys need their unit")

    @property
    def at_edge(self) -> bool:
        """Whether nginx enforces it (an EdgeSettings field); False: the gateway alone does."""
        return bool(self.edge)

    @property
    def loc(self) -> Loc:
        return tuple(self.path.split("."))

    @property
    def form_default(self) -> str:
        """The default as the wizard's text box shows it."""
        return str(self.default)

    def gateway_value(self, value: Any) -> int | float:
        """``value`` (as deploy.yaml holds it) in the gateway's unit."""
        if self.gateway_unit == "bytes":
            return size_in_bytes(str(value))
        if self.gateway_unit == "mebibytes":
            return int(value) * 1024 * 1024  # written in MiB, held in bytes
        if self.gateway_unit == "seconds":
            return float(value)
        return int(value)  # tokens, uses: whole numbers, as written

    def probe_value(self, value: Any) -> Any:
        """``value`` the way the smoke/audit target holds it (bytes, requests a second)."""
        if self.kind == "size":
            return size_in_bytes(str(value))
        if self.kind == "rate":
            return per_second(str(value))
        return value


#: A rate limit zone's burst: requests above the rate before nginx answers 429.
BURST_BOUNDS = (0, 100_000)

_TIMEOUT = "limits.timeouts."

KNOBS: tuple[Knob, ...] = (
    Knob("ports.http", "int", 80, 1, 65535, edge="http_port", nginx="listen"),
    Knob("ports.https", "int", 443, 1, 65535, edge="https_port", nginx="listen ... ssl"),
    Knob(
        "tls.profile", "choice", "intermediate", edge="tls_profile", nginx="ssl_protocols",
        probe="tls_profile", expect="TLS 1.2 offered only by intermediate; 1.0/1.1 never",
        label="TLS versions", help="intermediate: TLS 1.2 and 1.3 (every current client); modern: 1.3 only.",
    ),
    Knob(
        "limits.per_ip.rate", "rate", "20r/s", edge="per_ip.rate", nginx="limit_req_zone rate",
        probe="per_ip_rate", expect="the bucket drains at this rate while the audit's burst runs",
        label="Rate per IP", help="Requests per second (r/s) or minute (r/m) per client address.",
    ),
    Knob(
        "limits.per_ip.burst", "int", 40, *BURST_BOUNDS, edge="per_ip.burst", nginx="limit_req burst",
        probe="per_ip_burst", expect="well past the burst from one address, nginx answers 429 with retry-after",
        label="Burst per IP", help="Requests above the rate before 429.",
    ),
    Knob(
        "limits.per_key.rate", "rate", "10r/s", edge="per_key.rate", nginx="limit_req_zone rate",
        probe="per_key_rate", expect="one key's bucket drains at this rate",
        label="Rate per key", help="The same per client key.",
    ),
    Knob(
        "limits.per_key.burst", "int", 20, *BURST_BOUNDS, edge="per_key.burst", nginx="limit_req burst",
        probe="per_key_burst", expect="one key past its burst gets 429 while another key still passes",
        label="Burst per key", help="Requests above the rate before 429.",
    ),
    Knob(
        "limits.connections_per_ip", "int", 32, 1, 65535, edge="conn_per_ip", nginx="limit_conn",
        probe="conn_per_ip", expect="one address holding more open requests than this is refused",
        label="Connections/IP", help="Concurrent requests per client address.",
    ),
    Knob(
        # 1 KiB: the gateway refuses less (a request's JSON must fit).
        "limits.max_body_size", "size", "32m", 1024, edge="client_max_body_size",
        nginx="client_max_body_size", gateway=("max_body_bytes", "max_upload_bytes"), gateway_unit="bytes",
        probe="max_body_bytes", expect="a body one byte over gets 413 request_too_large, plain and chunked",
        label="Max body", help="Largest request body (k or m suffix); 32m is Anthropic's own limit.",
    ),
    Knob(
        _TIMEOUT + "client_header", "int", 10, 1, 300, edge="client_header_timeout",
        nginx="client_header_timeout", probe="client_header_timeout",
        expect="a client that stops sending headers is cut off after this many seconds",
    ),
    Knob(
        _TIMEOUT + "client_body", "int", 10, 1, 300, edge="client_body_timeout", nginx="client_body_timeout",
        probe="client_body_timeout", expect="a client that stalls mid-body is cut off after this many seconds",
        label="Body timeout", help="Seconds between two reads of a request body.",
    ),
    Knob(_TIMEOUT + "send", "int", 30, 1, 600, edge="send_timeout", nginx="send_timeout"),
    Knob(_TIMEOUT + "keepalive", "int", 30, 0, 600, edge="keepalive_timeout", nginx="keepalive_timeout"),
    Knob(
        _TIMEOUT + "upstream_connect", "int", 5, 1, 75, edge="proxy_connect_timeout",
        nginx="proxy_connect_timeout",
    ),
    Knob(_TIMEOUT + "upstream_send", "int", 60, 1, 3600, edge="proxy_send_timeout", nginx="proxy_send_timeout"),
    Knob(
        _TIMEOUT + "upstream_read", "int", 600, 1, 3600, edge="proxy_read_timeout", nginx="proxy_read_timeout",
        gateway=("upstream.read_timeout",), gateway_unit="seconds",
        label="Read timeout", help="Seconds of silence allowed from the gateway (a long answer, a slow stream).",
    ),
    Knob(
        # Claude Code's streams are long: a replaced gateway (a deploy, a rollback) and nginx's
        # workers from before a reload let the streams they carry finish for this long.
        _TIMEOUT + "drain", "int", 600, 1, 3600, edge="worker_shutdown_timeout", nginx="worker_shutdown_timeout",
        gateway=("drain_seconds",), gateway_unit="seconds",
    ),
    # Gateway-only: the ceilings the gateway reserves for content a request only points at
    # (claudegate_gateway.reservation), metered before upstream bills it.
    Knob(
        "limits.url_source_tokens", "int", 100_000, 1, 10_000_000,
        gateway=("limits.url_source_tokens",), gateway_unit="tokens",
    ),
    Knob(
        "limits.server_tool_use_tokens", "int", 25_000, 1, 10_000_000,
        gateway=("limits.server_tool_use_tokens",), gateway_unit="tokens",
    ),
    Knob(
        "limits.server_tool_default_uses", "int", 10, 1, 1000,
        gateway=("limits.server_tool_default_uses",), gateway_unit="uses",
    ),
    # Gateway-only: upstream's model catalogue is read once for every key for this long
    # (claudegate_gateway.catalogue); 0 keeps nothing, concurrent list calls still share one read.
    Knob(
        "limits.models_cache_seconds", "int", 30, 0, 600,
        gateway=("models_cache_seconds",), gateway_unit="seconds",
    ),
    # Gateway-only: the MiB of file downloads the gateway holds at once (all keys together) while it
    # filters their start, or a whole compressed file; a download past it is refused (529).
    Knob(
        "limits.held_downloads_mib", "int", 256, 8, 65536,
        gateway=("max_held_download_bytes",), gateway_unit="mebibytes",
    ),
    # Gateway-only: one key's share of those MiB (the gateway uses at most the whole bound); a key
    # holding its share gets 429 while other keys' downloads still fit in the rest.
    Knob(
        "limits.held_downloads_per_key_mib", "int", 128, 8, 65536,
        gateway=("max_held_download_bytes_per_key",), gateway_unit="mebibytes",
    ),
)

#: The rows nginx enforces (an EdgeSettings field each).
EDGE_KNOBS: tuple[Knob, ...] = tuple(k for k in KNOBS if k.at_edge)

_BY_PATH: Mapping[str, Knob] = MappingProxyType({k.path: k for k in KNOBS})


def knob(path: str) -> Knob:
    """The row for ``path`` (``limits.max_body_size``); KeyError names a path the table lacks."""
    return _BY_PATH[path]


def by_path() -> Mapping[str, Knob]:
    """{deploy.yaml path: row}, read-only."""
    return _BY_PATH


def _edge_fields() -> dict[str, Loc]:
    """EdgeSettings field -> where it comes from in deploy.yaml.

    A zone's rows (``per_ip.rate``, ``per_ip.burst``) map the whole zone
    (``per_ip`` -> ``limits.per_ip``): deploy.yaml's zone is the edge's zone.
    """
    out: dict[str, Loc] = {"domain": ("domain",)}
    for row in EDGE_KNOBS:
        head, *rest = row.edge.split(".")
        out.setdefault(head, row.loc[: len(row.loc) - len(rest)])
    out["allow_cidrs"] = ("allowlist",)
    out["trusted_proxy_cidrs"] = ("trusted_proxies",)
    return out


#: EdgeSettings field -> where it comes from in deploy.yaml: the rows' edge fields,
#: plus the three values deploy.yaml passes through unchanged (no default, no bound).
EDGE_FIELDS: dict[str, Loc] = _edge_fields()


def probe_defaults() -> dict[str, Any]:
    """{probe field: value} for a deployment with every default."""
    return {row.probe: row.probe_value(row.default) for row in KNOBS if row.probe}


def probe_values(read: Any) -> dict[str, Any]:
    """{probe field: value} of a config; ``read(loc)`` returns deploy.yaml's value at ``loc``."""
    return {row.probe: row.probe_value(read(row.loc)) for row in KNOBS if row.probe}
