"""EdgeSettings validation and the rendered text, without running nginx."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from claudegate.edge.render import OUTPUTS, edge_errors, render_edge
from claudegate.edge.settings import EdgeSettings, RateLimit

# What the issue lists, and the type Anthropic uses for each status.
REQUIRED_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def conf(settings_: EdgeSettings) -> str:
    return "\n".join(render_edge(settings_).values())


def directives(text: str) -> list[str]:
    """Rendered lines without comments and blank lines."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.strip().startswith("return") else line.strip()
        if line:
            out.append(line)
    return out


@pytest.fixture
def base() -> EdgeSettings:
    return EdgeSettings(domain="gw.example.com")


def test_outputs_and_determinism(base: EdgeSettings) -> None:
    first, second = render_edge(base), render_edge(base)
    assert first == second
    assert set(first) == set(OUTPUTS)
    for text in first.values():
        assert "{{" not in text and "{%" not in text
        assert text.endswith("\n")


def test_modules_load_from_debian_paths_before_use(base: EdgeSettings) -> None:
    main = render_edge(base)["nginx.conf"]
    loads = re.findall(r"^load_module (\S+);", main, re.M)
    assert loads == [
        "/usr/lib/nginx/modules/ndk_http_module.so",
        "/usr/lib/nginx/modules/ngx_http_set_misc_module.so",
    ]


def test_http2_uses_the_1_22_listen_flag(base: EdgeSettings) -> None:
    text = conf(base)
    assert "listen 0.0.0.0:443 ssl http2 default_server;" in text
    assert "listen [::]:443 ssl http2 default_server;" in text
    assert not re.search(r"^\s*http2 on;", text, re.M)  # needs nginx 1.25.1


def test_tls_profiles(base: EdgeSettings) -> None:
    tls = render_edge(base)["snippets/tls.conf"]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in tls
    assert "ssl_session_tickets off;" in tls
    assert "ssl_stapling off;" in tls
    ciphers = re.search(r"ssl_ciphers (\S+);", tls)
    assert ciphers is not None
    for suite in ciphers.group(1).split(":"):
        assert suite.startswith("ECDHE-") and ("GCM" in suite or "CHACHA20" in suite)
    modern = render_edge(base.model_copy(update={"tls_profile": "modern"}))["snippets/tls.conf"]
    assert "ssl_protocols TLSv1.3;" in modern
    assert "ssl_ciphers" not in modern


def test_ocsp_stapling_needs_a_resolver_and_is_opt_in() -> None:
    with pytest.raises(ValidationError, match="resolver"):
        EdgeSettings(domain="gw.example.com", ocsp_stapling=True)
    stapled = EdgeSettings.model_validate(
        {"domain": "gw.example.com", "ocsp_stapling": True, "resolver": ["127.0.0.53"]}
    )
    tls = render_edge(stapled)["snippets/tls.conf"]
    assert "ssl_stapling on;" in tls and "ssl_stapling_verify on;" in tls
    assert "ssl_trusted_certificate /etc/claudegate/tls/chain.pem;" in tls
    assert "resolver 127.0.0.53 valid=300s;" in tls


def test_hsts_variants(base: EdgeSettings) -> None:
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in conf(base)
    full = base.model_copy(update={"hsts_include_subdomains": True, "hsts_preload": True})
    assert '"max-age=63072000; includeSubDomains; preload"' in conf(full)
    with pytest.raises(ValidationError, match="preload"):
        EdgeSettings(domain="gw.example.com", hsts_preload=True)


def test_rate_limit_zones_never_key_on_the_raw_credential(base: EdgeSettings) -> None:
    text = conf(base)
    zones = re.findall(r"^limit_req_zone (\S+) zone=(\w+):", text, re.M)
    assert zones == [
        ("$binary_remote_addr", "claudegate_per_ip"),
        ("$claudegate_key_zone", "claudegate_per_key"),
    ]
    assert "limit_conn_zone $binary_remote_addr zone=claudegate_conn_per_ip:10m;" in text
    # The per-key zone key is an HMAC set in the rewrite phase.
    assert 'set_hmac_sha256 $claudegate_key_mac "claudegate-edge-rate-key" $claudegate_presented_key;' in text
    # Per-IP is always stacked on the per-key zone, on both servers.
    https = text.split("# --- :443: the API")[1]
    assert https.index("zone=claudegate_per_ip") < https.index("zone=claudegate_per_key")
    assert "limit_conn claudegate_conn_per_ip 32;" in https
    assert "limit_req_status 429;" in text and "limit_conn_status 429;" in text


def test_retry_after_follows_the_slower_bucket() -> None:
    assert RateLimit(rate="20r/s", burst=1).retry_after == 1
    assert RateLimit(rate="6r/m", burst=1).retry_after == 10
    s = EdgeSettings(domain="gw.example.com", per_key=RateLimit(rate="2r/m", burst=1))
    assert s.retry_after == 30
    assert '"429:" "30";' in conf(s)


def test_access_log_has_no_credential_fields(base: EdgeSettings) -> None:
    text = conf(base)
    fmt = text.split("log_format claudegate_json escape=json", 1)[1].split(";", 1)[0]
    for forbidden in (
        "$http_authorization",
        "$http_x_api_key",
        "$request ",
        '$request"',
        "$request_uri",
        "$args",
        "$query_string",
        "$arg_",
        "$http_cookie",
        "$http_referer",
        "$request_body",
        "$claudegate_key",
    ):
        assert forbidden not in fmt, forbidden
    assert '"path":"$uri"' in fmt
    # In the container the access log is stdout, which Docker's json-file driver rotates.
    assert "access_log /dev/stdout claudegate_json;" in text


def test_every_nginx_error_is_anthropic_json(base: EdgeSettings) -> None:
    errors_conf = render_edge(base)["snippets/errors.conf"]
    by_code = {e.code: e for e in edge_errors(base)}
    for code, error_type in REQUIRED_ERRORS.items():
        assert by_code[code].error_type == error_type
        assert f"error_page {code} ={code} /.claudegate-error/{code};" in errors_conf
    for error in edge_errors(base):
        match = re.search(
            rf"location = /.claudegate-error/{error.code} {{\n        return (\d+) '(.*)';", errors_conf
        )
        assert match is not None, error.code
        assert int(match.group(1)) == error.status
        body = json.loads(match.group(2).replace("$request_id", "0" * 32))
        assert body == {
            "type": "error",
            "error": {"type": error.error_type, "message": error.message},
            "request_id": "req_edge" + "0" * 32,
        }
    assert "    internal;\n    default_type application/json;\n" in errors_conf
    # nginx-only codes leave as real statuses.
    assert by_code[494].status == 400 and by_code[497].status == 400


def test_proxy_settings(base: EdgeSettings) -> None:
    proxy = render_edge(base)["snippets/proxy_gateway.conf"]
    lines = directives(proxy)
    for line in (
        "proxy_pass http://claudegate_gateway;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Real-IP $remote_addr;",
        'proxy_set_header X-Forwarded-For "";',
        'proxy_set_header Forwarded "";',
        "proxy_buffering off;",
        "proxy_intercept_errors off;",
        "proxy_read_timeout 600s;",
        "proxy_hide_header X-Powered-By;",
    ):
        assert line in lines, line
    assert "X-Accel-Buffering" in proxy.split("proxy_ignore_headers", 1)[1].split(";")[0]
    text = conf(base)
    assert "server 127.0.0.1" not in text and "server gateway:8080;" in text
    assert "keepalive 32;" in text
    assert "gzip off;" in text and "server_tokens off;" in text
    assert "client_max_body_size 32m;" in text


def test_only_the_configured_prefixes_are_proxied(base: EdgeSettings) -> None:
    text = render_edge(base)["claudegate.conf"]
    assert re.findall(r"^\s*location (\S+) ", text, re.M) == [
        "^~",  # the ACME challenge location on :80
        "/",
        "/v1/",
        "/",
    ]
    two = base.model_copy(update={"proxied_prefixes": ("/v1/", "/v2/")})
    assert text.count("include snippets/proxy_gateway.conf;") == 1
    assert conf(two).count("include snippets/proxy_gateway.conf;") == 2
    for bad in (("/",), ("/v1",), ("/v1/", "/v1/"), ("/v1/;evil/",)):
        with pytest.raises(ValidationError):
            EdgeSettings(domain="gw.example.com", proxied_prefixes=bad)


def test_port_80_serves_acme_and_redirects(base: EdgeSettings) -> None:
    http = conf(base).split("# --- :80:")[1].split("# --- :443:")[0]
    assert "root /var/www/acme;" in http
    assert "return 301 https://gw.example.com$request_uri;" in http
    assert "proxy_pass" not in http
    odd = base.model_copy(update={"https_port": 8443})
    assert "return 301 https://gw.example.com:8443$request_uri;" in conf(odd)


def test_allowlist_and_trusted_proxies() -> None:
    open_ = render_edge(EdgeSettings(domain="gw.example.com"))["claudegate.conf"]
    assert "geo " not in open_ and "set_real_ip_from" not in open_ and "claudegate_refuse" not in open_
    s = EdgeSettings.model_validate(
        {
            "domain": "gw.example.com",
            "allow_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
            "trusted_proxy_cidrs": ["198.51.100.7/32", "2001:db8:1::7/128"],
        }
    )
    text = conf(s)
    assert "geo $remote_addr $claudegate_client_denied {" in text
    assert "    203.0.113.0/24 0;\n    2001:db8::/32 0;\n" in text
    assert "set $claudegate_refuse $claudegate_client_denied;" in text
    assert "if ($claudegate_refuse) {\n        return 403;" in text
    assert "set_real_ip_from 198.51.100.7/32;\nset_real_ip_from 2001:db8:1::7/128;" in text
    assert "real_ip_recursive off;" in text


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2000::/3"])
def test_trusted_proxy_ranges_must_be_narrow(cidr: str) -> None:
    with pytest.raises(ValidationError, match="too broad"):
        EdgeSettings.model_validate({"domain": "gw.example.com", "trusted_proxy_cidrs": [cidr]})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "gw.example.com; include /etc/passwd"),
        ("domain", "-bad.example.com"),
        ("domain", "127.0.0.1; include /x"),  # an IPv4 address is a valid name, nothing after it is
        ("domain", "2001:db8::1"),
        ("cert_path", "/etc/x.pem; ssl_certificate_key /tmp/k"),
        ("cert_path", "relative/path.pem"),
        ("cert_path", "/etc/../root/x.pem"),
        ("key_path", "/etc/key$host.pem"),
        ("acme_webroot", "/var/www/acme {"),
        ("access_log_path", "/var/log/a.log main"),
        ("upstream", "gateway:8080; include /x"),
        ("upstream", "gateway"),
        ("upstream", "gateway:0"),
        ("client_max_body_size", "32 m"),
        ("client_max_body_size", "1g"),
        ("allow_cidrs", ["10.0.0.1/8"]),  # host bits set: not a network
        ("user", "root; daemon on"),
        ("http_port", 0),
        ("extra_directive", "x"),
    ],
)
def test_values_that_could_change_the_config_structure_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        EdgeSettings.model_validate({"domain": "gw.example.com", field: value})


@pytest.mark.parametrize("rate", ["10", "10r/h", "0r/s", "1.5r/s", "10 r/s", "10r/s;"])
def test_bad_rates(rate: str) -> None:
    with pytest.raises(ValidationError):
        RateLimit(rate=rate, burst=1)


def test_ports_must_differ() -> None:
    with pytest.raises(ValidationError, match="differ"):
        EdgeSettings(domain="gw.example.com", http_port=8080, https_port=8080)


_NGINX_SPECIAL = set(" \t\n;{}'\"$#\\")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_accepted_path_is_inert_in_nginx(text: str) -> None:
    try:
        s = EdgeSettings(domain="gw.example.com", cert_path=text)
    except ValidationError:
        return
    assert not (_NGINX_SPECIAL & set(s.cert_path))
    assert f"ssl_certificate {s.cert_path};" in render_edge(s)["snippets/tls.conf"]


@settings(max_examples=50, deadline=None)
@given(
    profile=st.sampled_from(["intermediate", "modern"]),
    per_ip=st.builds(
        RateLimit,
        rate=st.builds(lambda n, u: f"{n}r/{u}", st.integers(1, 9999), st.sampled_from("sm")),
        burst=st.integers(0, 1000),
    ),
    allow=st.lists(st.sampled_from(["127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8"]), unique=True),
    body=st.sampled_from(["1m", "32m", "512k", "1048576"]),
)
def test_random_valid_settings_render_balanced_blocks(
    profile: str, per_ip: RateLimit, allow: list[str], body: str
) -> None:
    s = EdgeSettings.model_validate(
        {
            "domain": "gw.example.com",
            "tls_profile": profile,
            "per_ip": per_ip,
            "allow_cidrs": allow,
            "client_max_body_size": body,
        }
    )
    for name, text in render_edge(s).items():
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        code = re.sub(r"'[^']*'|\"[^\"]*\"", "", code)  # quoted strings may hold braces
        assert code.count("{") == code.count("}"), name
    assert f"rate={per_ip.rate};" in conf(s)


def test_render_imports_no_ui_library() -> None:
    probe = (
        "import sys, claudegate.edge.render, claudegate.edge.settings; "
        "bad = [m for m in ('textual', 'typer', 'rich', 'paramiko', 'docker') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- replay on another replica (several gateway replicas per host) -----------------------------


def _location(text: str, name: str) -> list[str]:
    """The directives of ``location <name> { ... }`` (one level of nesting)."""
    start = text.index(f"location {name} {{")
    depth, end = 0, start
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0 and text[end] == "}":
            break
    return directives(text[start : end + 1])


def test_one_replica_replays_nothing(base: EdgeSettings) -> None:
    files = render_edge(base)
    assert base.replay_locations == ()
    assert "claudegate_replayable" not in files["claudegate.conf"]
    assert "proxy_replay.conf" not in files["claudegate.conf"]  # rendered, never included
    assert "proxy_request_buffering off;" in directives(files["snippets/proxy_gateway.conf"])


def test_with_two_replicas_only_messages_and_count_tokens_may_be_replayed(base: EdgeSettings) -> None:
    two = base.model_copy(update={"upstream_replicas": 2})
    files = render_edge(two)
    text = files["claudegate.conf"]
    replay = directives(files["snippets/proxy_replay.conf"])
    plain = directives(files["snippets/proxy_gateway.conf"])
    # The replay snippet: non_idempotent, once, the body whole in memory, never past a read timeout.
    assert "proxy_next_upstream error timeout non_idempotent;" in replay
    assert "proxy_next_upstream_tries 2;" in replay
    assert "proxy_request_buffering on;" in replay and "proxy_request_buffering off;" not in replay
    assert f"proxy_next_upstream_timeout {two.proxy_read_timeout - 1}s;" in replay
    # Everything else as the plain snippet (same headers, same timeouts).
    same = [d for d in replay if not d.startswith(("proxy_next_upstream", "proxy_request_buffering"))]
    assert same == [d for d in plain if not d.startswith(("proxy_next_upstream", "proxy_request_buffering"))]
    # The plain snippet never replays a request once sent.
    assert "proxy_next_upstream error timeout;" in plain and "proxy_request_buffering off;" in plain
    assert not any("non_idempotent" in d for d in plain)
    # Exactly the two replayable paths use the replay snippet, each through an internal location.
    uses = re.findall(r"location = (\S+) \{[^}]*?include snippets/proxy_replay\.conf;", text)
    assert uses == ["/.claudegate-replay/v1/messages", "/.claudegate-replay/v1/messages/count_tokens"]
    assert text.count("include snippets/proxy_replay.conf;") == 2
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        outer = _location(text, f"= {path}")
        assert f"rewrite ^ /.claudegate-replay{path} last;" in outer
        # A large or unsized body: streamed, not replayed.
        assert "include snippets/proxy_gateway.conf;" in outer
        inner = _location(text, f"= /.claudegate-replay{path}")
        assert inner[1:4] == ["internal;", f"rewrite ^ {path} break;", "include snippets/proxy_replay.conf;"]
    # Batches, files, models...: the /v1/ prefix location, the plain snippet.
    assert "include snippets/proxy_gateway.conf;" in _location(text, "/v1/")


@pytest.mark.parametrize("limit", [0, 1, 9, 10, 99, 100, 101, 4096, 131072, 1048576, 999_999])
def test_the_replayable_size_regex_is_exactly_at_most_the_buffer(limit: int) -> None:
    from claudegate.edge.settings import at_most_regex

    pattern = re.compile(at_most_regex(limit))
    probes = {*range(0, 120), *range(max(0, limit - 150), limit + 150), limit * 10, limit * 10 + 1, 10**12}
    for n in probes:
        assert bool(pattern.match(str(n))) == (n <= limit), (limit, n)
    # What nginx's $content_length could also hold: leading zeros, signs, junk, empty.
    for text in ("", "00", "01", "-1", "+1", "1 ", " 1", "1e3", "0x10"):
        assert not pattern.match(text) or text == "0", text


def test_the_replay_buffer_follows_client_body_buffer_size(base: EdgeSettings) -> None:
    two = base.model_copy(update={"upstream_replicas": 2, "client_body_buffer_size": "1m"})
    text = render_edge(two)["claudegate.conf"]
    assert two.replay_max_body_bytes == 1048576
    line = next(d for d in directives(text) if d.startswith('"~^(?:0|'))
    regex = line.split('"')[1][1:]
    assert re.match(regex, "1048576") and not re.match(regex, "1048577")


def test_no_replay_when_v1_is_not_proxied(base: EdgeSettings) -> None:
    two = base.model_copy(update={"upstream_replicas": 2, "proxied_prefixes": ("/v2/",)})
    assert two.replay_locations == ()
    assert "claudegate-replay" not in conf(two)


def test_the_edge_request_id_goes_to_the_gateway_on_every_try(base: EdgeSettings) -> None:
    two = base.model_copy(update={"upstream_replicas": 2})
    files = render_edge(two)
    line = "proxy_set_header X-Claudegate-Edge-Request-Id req_edge$request_id;"
    for snippet in ("snippets/proxy_gateway.conf", "snippets/proxy_replay.conf"):
        assert line in directives(files[snippet])
    # The access log names every replica a request was tried on.
    assert '"upstream_addr":"$upstream_addr"' in files["claudegate.conf"]
