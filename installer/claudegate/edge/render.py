"""Render the NGINX edge configuration from :class:`EdgeSettings`.

:func:`render_edge` is pure: the same settings give byte-identical files, so a
deploy can diff them against what the host has and report "no changes". It
returns paths relative to nginx's configuration directory (the directory that
holds ``nginx.conf``; every ``include`` in the output is relative to it).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from claudegate.edge.settings import EdgeSettings, at_most_regex
from claudegate.resources import ASSETS_DIR

#: Where the templates live in a source checkout: ``<repo>/assets/nginx``.
TEMPLATES_DIR = ASSETS_DIR / "nginx"

#: Rendered file (relative path) -> template (relative to the templates dir).
OUTPUTS: dict[str, str] = {
    "nginx.conf": "nginx.conf.j2",
    "claudegate.conf": "claudegate.conf.j2",
    "snippets/tls.conf": "snippets/tls.conf.j2",
    "snippets/errors.conf": "snippets/errors.conf.j2",
    "snippets/proxy_gateway.conf": "snippets/proxy_gateway.conf.j2",
    "snippets/proxy_replay.conf": "snippets/proxy_replay.conf.j2",
}

#: Where a replayable request is routed inside nginx (an internal location, never reachable from outside).
REPLAY_PREFIX = "/.claudegate-replay"

# Mozilla "intermediate" TLS 1.2 suites (AEAD with forward secrecy). The DHE
# suites of that list are left out: they need a dhparam file and add nothing
# for API clients, which all speak ECDHE.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
ECDH_CURVES = "X25519:prime256v1:secp384r1"

#: Placeholder swapped for nginx's own request id in error bodies.
_REQUEST_ID = "req_edge$request_id"


@dataclass(frozen=True)
class EdgeError:
    """One error nginx itself may produce, answered in Anthropic's shape."""

    code: int  # what nginx raises internally (494, 497 are nginx-only codes)
    status: int  # what the client receives
    error_type: str
    message: str


def edge_errors(settings: EdgeSettings) -> tuple[EdgeError, ...]:
    """Every status nginx can produce on its own, mapped to Anthropic's error types."""
    limit = settings.client_max_body_size
    return (
        EdgeError(400, 400, "invalid_request_error", "The request could not be parsed."),
        EdgeError(401, 401, "authentication_error", "Authentication is required."),
        EdgeError(403, 403, "permission_error", "This network address is not allowed to use this gateway."),
        EdgeError(
            404, 404, "not_found_error", "Not found. This gateway serves the Anthropic API under /v1/."
        ),
        EdgeError(405, 405, "invalid_request_error", "This method is not allowed."),
        EdgeError(408, 408, "timeout_error", "The request was not received in time."),
        EdgeError(411, 411, "invalid_request_error", "A Content-Length header is required."),
        EdgeError(
            413, 413, "request_too_large", f"Request exceeds the maximum allowed number of bytes ({limit})."
        ),
        EdgeError(414, 414, "invalid_request_error", "The request URI is too long."),
        EdgeError(
            429,
            429,
            "rate_limit_error",
            f"Too many requests reached the gateway edge; retry after {settings.retry_after} seconds.",
        ),
        EdgeError(494, 400, "invalid_request_error", "The request headers are too large."),
        EdgeError(497, 400, "invalid_request_error", "Plain HTTP was sent to the HTTPS port; use https://."),
        EdgeError(500, 500, "api_error", "Internal error at the gateway edge."),
        EdgeError(501, 501, "invalid_request_error", "This transfer encoding is not supported."),
        EdgeError(502, 502, "api_error", "The gateway service could not be reached."),
        EdgeError(503, 503, "overloaded_error", "The gateway is temporarily unavailable."),
        EdgeError(504, 504, "timeout_error", "The gateway service did not answer in time."),
        EdgeError(505, 505, "invalid_request_error", "This HTTP version is not supported."),
    )


def error_body(error: EdgeError) -> str:
    """The JSON body for ``error``, ready to sit between single quotes in nginx."""
    text = json.dumps(
        {
            "type": "error",
            "error": {"type": error.error_type, "message": error.message},
            "request_id": "@REQUEST_ID@",
        },
        separators=(",", ":"),
        ensure_ascii=True,
    )
    # Nothing here may close the quoted string, escape, or start a variable.
    if any(ch in text for ch in "'\\$\n"):
        raise ValueError(f"error message for {error.code} holds a character nginx would interpret")
    return text.replace("@REQUEST_ID@", _REQUEST_ID)


def _listen_host(address: Any) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _context(settings: EdgeSettings) -> dict[str, Any]:
    hsts = f"max-age={settings.hsts_max_age}"
    if settings.hsts_include_subdomains:
        hsts += "; includeSubDomains"
    if settings.hsts_preload:
        hsts += "; preload"
    https_origin = f"https://{settings.domain}"
    if settings.https_port != 443:
        https_origin += f":{settings.https_port}"
    errors = edge_errors(settings)
    return {
        "s": settings,
        "listen_hosts": [_listen_host(a) for a in settings.listen_addresses],
        "resolvers": " ".join(_listen_host(a) for a in settings.resolver),
        "hsts": hsts,
        "https_origin": https_origin,
        "protocols": "TLSv1.3" if settings.tls_profile == "modern" else "TLSv1.2 TLSv1.3",
        "ciphers": INTERMEDIATE_CIPHERS if settings.tls_profile == "intermediate" else None,
        "ecdh_curves": ECDH_CURVES,
        "errors": [(e, error_body(e)) for e in errors],
        "retry_after": settings.retry_after,
        "replay_prefix": REPLAY_PREFIX,
        "replay_size_regex": at_most_regex(settings.replay_max_body_bytes),
        "worker_rlimit_nofile": settings.worker_connections * 2,
    }


@functools.lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # nginx config, not HTML; values are validated by EdgeSettings  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_edge(settings: EdgeSettings, templates_dir: Path | None = None) -> dict[str, str]:
    """Render every nginx file for ``settings``: relative path -> content."""
    env = _environment(templates_dir or TEMPLATES_DIR)
    context = _context(settings)
    return {path: env.get_template(template).render(context) for path, template in OUTPUTS.items()}


def write_edge(files: dict[str, str], conf_dir: Path) -> None:
    """Write rendered files below ``conf_dir`` (a helper for tests and local deploys)."""
    for rel, content in files.items():
        target = conf_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
