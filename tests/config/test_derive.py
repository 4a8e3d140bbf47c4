"""What the deploy derives from the config: edge settings, gateway config, key commands."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from claudegate.config import (
    Client,
    RateLimit,
    client_scopes,
    edge_settings,
    gateway_config,
    network_plan,
)
from claudegate.deploy.docker_cli import GATEWAY_PYTHON
from claudegate.deploy.gateway_cli import keys_create
from claudegate.edge.render import render_edge
from claudegate.edge.settings import EdgeSettings
from claudegate_gateway.cli import parser as gateway_parser
from claudegate_gateway.config import parse_config
from claudegate_gateway.keystore import Scopes
from tests.config.common import BASE, LOCAL, load, problems

FULL = """\
ports: {http: 80, https: 8443}
limits:
  per_ip: {rate: 600r/m, burst: 100, zone_size: 20m}
  per_key: {rate: 5r/s, burst: 10}
  connections_per_ip: 16
  max_body_size: 8m
  timeouts:
    client_header: 11
    client_body: 12
    send: 13
    keepalive: 14
    upstream_connect: 3
    upstream_send: 61
    upstream_read: 900
allowlist: [203.0.113.0/24, "2001:db8::/32"]
trusted_proxies: [198.51.100.7/32]
network: {subnet: 172.29.8.0/28}
clients:
  - name: team-a
    models: ["claude-sonnet-*", "claude-haiku-*"]
    endpoints: ["/v1/messages", "/v1/messages/count_tokens"]
    betas: ["prompt-caching-2024-07-31"]
    max_tokens: 8192
    stream: false
    rpm: 60
    tpm: 200000
    daily_tokens: 5000000
    expires: 2027-06-30T00:00:00Z
  - name: minimal
"""


def test_client_argv_full() -> None:
    cfg = load(FULL, base=BASE)
    assert keys_create(cfg.clients[0]) == [
        *GATEWAY_PYTHON, "keys", "create", "team-a",
        "--models", "claude-sonnet-*", "claude-haiku-*",
        "--endpoints", "/v1/messages", "/v1/messages/count_tokens",
        "--betas", "prompt-caching-2024-07-31",
        "--max-tokens", "8192",
        "--no-stream",
        "--rpm", "60",
        "--tpm", "200000",
        "--daily-tokens", "5000000",
        "--expires", "2027-06-30T00:00:00Z",
        "--config", "/etc/claudegate/gateway.yaml",
    ]  # fmt: skip


def test_client_argv_minimal() -> None:
    assert keys_create(Client(name="minimal")) == [
        *GATEWAY_PYTHON, "keys", "create", "minimal", "--models", "*", "--endpoints", "/v1/*",
        "--config", "/etc/claudegate/gateway.yaml",
    ]  # fmt: skip


def test_client_argv_is_what_the_gateway_cli_parses() -> None:
    cfg = load(FULL, base=BASE)
    for client in cfg.clients:
        argv = keys_create(client)  # what the deploy runs in the gateway's container
        assert tuple(argv[: len(GATEWAY_PYTHON)]) == GATEWAY_PYTHON
        args = gateway_parser().parse_args(argv[len(GATEWAY_PYTHON) :])
        scopes = Scopes(
            models=tuple(args.models),
            endpoints=tuple(args.endpoints),
            betas=tuple(args.betas) if args.betas else None,
            max_tokens=args.max_tokens,
            stream=not args.no_stream,
            rpm=args.rpm,
            tpm=args.tpm,
            daily_tokens=args.daily_tokens,
        )
        # What keys list --json would report for the key, compared with the config.
        assert json.loads(scopes.to_json()) == client_scopes(client)
        assert args.name == client.name
        assert args.config == "/etc/claudegate/gateway.yaml"
        expected = None if client.expires is None else client.expires.timestamp()
        assert args.expires == expected
    assert cfg.clients[0].expires == datetime(2027, 6, 30, tzinfo=UTC)


def test_gateway_config_exact() -> None:
    cfg = load(FULL, base=BASE)
    assert gateway_config(cfg) == {
        # The internal network only (the gateway binds its own address in it); loopback for health.
        "listen": "172.29.8.0/28:8080",
        "internal_listen": "127.0.0.1:9090",
        "upstream": {
            "base_url": "https://api.anthropic.com",
            "api_key_file": "/run/secrets/anthropic_api_key",
            "read_timeout": 900.0,
        },
        "keystore": "/var/lib/claudegate/keys.db",
        "pepper_file": "/run/secrets/key_pepper",
        "audit_log": "/var/log/claudegate/audit.jsonl",
        "trusted_proxies": ["172.29.8.2/32"],
        "max_body_bytes": 8 * 1024 * 1024,
        "max_upload_bytes": 8 * 1024 * 1024,
        "limits": {"url_source_tokens": 100_000, "server_tool_use_tokens": 25_000, "server_tool_default_uses": 10},
        "drain_seconds": 600.0,  # limits.timeouts.drain's default
        "models_cache_seconds": 30.0,  # limits.models_cache_seconds's default
        "max_held_download_bytes": 256 * 1024 * 1024,  # limits.held_downloads_mib's default
        "max_held_download_bytes_per_key": 128 * 1024 * 1024,  # limits.held_downloads_per_key_mib's default
    }


def test_reservation_ceilings_reach_the_gateway_with_the_gateways_defaults() -> None:
    from claudegate_gateway.reservation import ReservationLimits

    # deploy.yaml's defaults are the gateway's own.
    parsed = parse_config(gateway_config(load("", base=LOCAL)), "gateway.yaml")
    assert parsed.reservations == ReservationLimits()
    cfg = load("limits:\n  url_source_tokens: 7000\n  server_tool_default_uses: 3\n", base=LOCAL)
    parsed = parse_config(gateway_config(cfg), "gateway.yaml")
    assert parsed.reservations == ReservationLimits(url_source_tokens=7000, server_tool_default_uses=3)
    assert any("url_source_tokens" in line for line in problems("limits:\n  url_source_tokens: 0\n", base=LOCAL))


def test_gateway_config_is_accepted_by_the_gateway() -> None:
    for cfg in (load(FULL, base=BASE), load("", base=LOCAL)):
        rendered = yaml.safe_dump(gateway_config(cfg), sort_keys=True)
        parsed = parse_config(yaml.safe_load(rendered), "gateway.yaml")
        assert parsed.listen == (str(network_plan(cfg).subnet), 8080)
        assert parsed.internal_listen == ("127.0.0.1", 9090)
        assert parsed.upstream.api_key_file == Path("/run/secrets/anthropic_api_key")
        assert parsed.pepper_file == Path("/run/secrets/key_pepper")
        assert parsed.trusted_proxies == (network_plan(cfg).nginx_cidr,)
        # No secret value, only paths to them.
        assert "sk-ant" not in rendered


def test_network_plan() -> None:
    plan = network_plan(load("", base=LOCAL))
    assert plan.subnet == ipaddress.IPv4Network("10.213.71.0/28")
    assert plan.bridge_address == ipaddress.IPv4Address("10.213.71.1")
    assert plan.nginx_address == ipaddress.IPv4Address("10.213.71.2")
    assert plan.nginx_cidr == ipaddress.IPv4Network("10.213.71.2/32")


def test_edge_settings_mapping() -> None:
    cfg = load(
        FULL,
        base=BASE.replace("mode: acme\n  email: ops@example.com", "mode: internal-ca\n  profile: modern"),
    )
    edge = edge_settings(cfg)
    expected = EdgeSettings(
        domain="gw.example.com",
        http_port=80,
        https_port=8443,
        tls_profile="modern",
        per_ip=RateLimit(rate="600r/m", burst=100, zone_size="20m"),
        per_key=RateLimit(rate="5r/s", burst=10),
        conn_per_ip=16,
        allow_cidrs=(ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32")),
        trusted_proxy_cidrs=(ipaddress.ip_network("198.51.100.7/32"),),
        client_max_body_size="8m",
        client_header_timeout=11,
        client_body_timeout=12,
        send_timeout=13,
        keepalive_timeout=14,
        proxy_connect_timeout=3,
        proxy_send_timeout=61,
        proxy_read_timeout=900,
    )
    assert edge == expected
    assert edge_settings(cfg, upstream="gateway-blue:8080").upstream == "gateway-blue:8080"
    assert "listen 0.0.0.0:8443 ssl" in render_edge(edge)["claudegate.conf"]


def test_edge_defaults_are_the_edge_models_defaults() -> None:
    cfg = load("", base=LOCAL)
    assert edge_settings(cfg) == EdgeSettings(domain="localhost")
