"""Loading deploy.yaml: every schema problem as FILE:LINE:COL: FIELD: problem; fix."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claudegate.config import (
    TLS,
    DeployConfig,
    DeployConfigError,
    Target,
    Upstream,
    load_config,
    load_config_text,
)
from claudegate.errors import ConfigError
from tests.config.common import BASE, LOCAL, load, problems


def test_the_base_configs_are_valid() -> None:
    cfg = load("", base=BASE)
    assert cfg.target.host == "gw.example.com"
    assert cfg.tls.mode == "acme"
    assert load("", base=LOCAL).target.is_local


def test_the_issue_example_line_column_field_and_fix() -> None:
    text = """\
        clients:
          - name: team-a
            rpm: 60
          - name: team-b
            rpm: -3
        """
    assert problems(text, base=BASE) == [
        "deploy.yaml:14:5: clients[1].rpm: must be a positive whole number, got -3; set it to e.g. 60"
    ]


def test_file_name_is_the_path_given(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(BASE + "ports: {http: 0}\n")
    with pytest.raises(DeployConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:10:9: ports.http: must be a whole number from 1 to 65535, got 0; set it to e.g. 80"
    )


def test_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read the config: No such file or directory"
    assert info.value.hint == "check the path given to --config (default ./deploy.yaml); `claudegate init` makes one"
    assert info.value.exit_code == 2


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_bytes(BASE.encode() + b"domain: caf\xe9\n")
    with pytest.raises(DeployConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:10: is not UTF-8 text; save the file as UTF-8"


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_keys_at_every_depth_with_did_you_mean() -> None:
    text = """\
        limits:
          per_ip:
            rate: 20r/s
            brust: 40
          timeouts:
            upstream_raed: 30
        clients:
          - name: a
            modles: [x]
        allowlst: []
        """
    assert problems(text, base=BASE) == [
        "deploy.yaml:13:5: limits.per_ip.brust: is not a known key; did you mean burst?",
        "deploy.yaml:15:5: limits.timeouts.upstream_raed: is not a known key; did you mean upstream_read?",
        "deploy.yaml:18:5: clients[0].modles: is not a known key; did you mean models?",
        "deploy.yaml:19:1: allowlst: is not a known key; did you mean allowlist?",
    ]


def test_unknown_key_spelled_with_dash_or_case() -> None:
    text = """\
        target:
          host: gw.example.com
          SSH-Key: ~/.ssh/id
        domain: gw.example.com
        TLS: {mode: internal-ca}
        """
    assert problems(text) == [
        "deploy.yaml:3:3: target.SSH-Key: is not a known key; did you mean ssh_key?",
        "deploy.yaml:5:1: TLS: is not a known key; did you mean tls?",
    ]


def test_key_in_the_wrong_section_says_where_it_belongs() -> None:
    assert problems("rpm: 60\nsudo: true\n", base=BASE) == [
        "deploy.yaml:10:1: rpm: is not a known key here; it belongs at clients[].rpm",
        "deploy.yaml:11:1: sudo: is not a known key here; it belongs at target.sudo or hosts[].sudo",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    assert problems("images: {colour: red}\n", base=LOCAL) == [
        "deploy.yaml:8:10: images.colour: is not a known key; the keys allowed here are: base_image, transfer"
    ]


def test_a_number_as_key() -> None:
    assert problems("1: x\n", base=LOCAL) == [
        "deploy.yaml:8:1: [1]: 1 is not a known key (keys are names); the keys allowed here are: target, hosts,"
        " rollout, domain, tls, upstream, ports, limits, allowlist, trusted_proxies, clients, filters, images, network, state, audit, state_dir"
    ]


# --- several problems ----------------------------------------------------------------------------


def test_several_problems_are_all_reported_sorted_by_line() -> None:
    text = """\
        clients:
          - name: "team a"
            tpm: 0
        target:
          host: gw.example.com
          port: 70000
          sudo: "yes"
        domain: https://gw.example.com
        tls:
          mode: acmee
        ports: {http: "80"}
        """
    assert problems(text) == [
        "deploy.yaml:2:5: clients[0].name: 'team a' is not a client name (1-64 letters, digits, '.', '_', '-';"
        " starting with a letter or digit); write e.g. team-a",
        "deploy.yaml:3:5: clients[0].tpm: must be a positive whole number, got 0; set it to e.g. 200000",
        "deploy.yaml:6:3: target.port: must be a whole number from 1 to 65535, got 70000; set it to e.g. 22",
        "deploy.yaml:7:3: target.sudo: must be true or false, got the text 'yes'; write true or false, without quotes",
        "deploy.yaml:8:1: domain: 'https://gw.example.com' is a URL, not a host name; write only the name,"
        " e.g. gw.example.com",
        "deploy.yaml:10:3: tls.mode: must be one of acme, files, internal-ca; got 'acmee'; did you mean acme?",
        "deploy.yaml:11:9: ports.http: must be a whole number from 1 to 65535, got the text '80';"
        " write it without quotes: 80",
    ]


def test_the_error_is_a_config_error_with_the_problems() -> None:
    with pytest.raises(ConfigError) as info:
        load("ports: {http: 0, https: 0}\n", base=BASE)
    error = info.value
    assert isinstance(error, DeployConfigError)
    assert [(p.line, p.column, p.field) for p in error.problems] == [
        (10, 9, "ports.http"),
        (10, 18, "ports.https"),
    ]
    assert error.exit_code == 2


# --- malformed YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "target:\n  host: a\n domain: x\n",
            "deploy.yaml:3:2: invalid YAML: expected <block end>, but found '<block mapping start>' (while parsing"
            " a block mapping on line 1); check the indentation: the keys of one section must start in the same"
            " column",
        ),
        (
            "target:\n  host: a\ndomain: [x\ntls: y\n",
            "deploy.yaml:4:4: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence on"
            " line 3); fix the YAML syntax there",
        ),
        (
            "target:\n\thost: a\n",
            "deploy.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token; indent with"
            " spaces; YAML does not allow tabs for indentation",
        ),
        (
            "target:\n  host: a: b\n",
            "deploy.yaml:2:10: invalid YAML: mapping values are not allowed here; put a space after each ':' and"
            " quote values that contain ': '",
        ),
        (
            "target: {host: @x}\n",
            "deploy.yaml:1:16: invalid YAML: found character '@' that cannot start any token; quote the value ('...')",
        ),
        (
            "clients:\n  - name: a\n    expires: 2027-02-30T00:00:00Z\n",
            "deploy.yaml:3:14: invalid YAML: this date cannot be read: day is out of range for month; write a real"
            " date and time, e.g. 2027-06-30T00:00:00Z",
        ),
        (
            "? [a]\n: 1\n",
            "deploy.yaml:1:3: invalid YAML: found unhashable key (while constructing a mapping on line 1); keys"
            " must be plain names, not lists or mappings",
        ),
    ],
)
def test_malformed_yaml_names_line_column_and_problem(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_config(text: str) -> None:
    assert problems(text) == [
        "deploy.yaml:1:1: the config is empty; write one with the wizard (claudegate init) or from a commented"
        " example: claudegate init --example local --out deploy.yaml"
    ]


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- target\n") == [
        "deploy.yaml:1:1: the config must be a mapping of settings (key: value lines), got a list;"
        " write one with the wizard (claudegate init) or from a commented example:"
        " claudegate init --example local --out deploy.yaml"
    ]


def test_duplicate_keys_are_an_error_not_silently_the_last() -> None:
    text = """\
        clients:
          - name: a
            rpm: 60
            rpm: 6000
        """
    assert problems(text, base=BASE) == [
        "deploy.yaml:13:5: clients[0].rpm: is given twice in this mapping (first on line 12); keep one of them;"
        " YAML would silently use the last"
    ]


def test_merge_keys_are_not_duplicates() -> None:
    text = """\
        clients:
          - &defaults {name: a, rpm: 60, models: ["claude-haiku-*"]}
          - <<: *defaults
            name: b
            rpm: 120
        """
    cfg = load(text, base=BASE)
    assert [(c.name, c.rpm, c.models) for c in cfg.clients] == [
        ("a", 60, ["claude-haiku-*"]),
        ("b", 120, ["claude-haiku-*"]),
    ]


def test_alias_bombs_stay_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    lines.append("allowlist: *a11")
    found = problems("\n".join(lines) + "\n", base=LOCAL)
    assert found[0].startswith("deploy.yaml:8:1: a0: is not a known key")
    assert len(found) < 40


# --- missing values ------------------------------------------------------------------------------


def test_missing_required_values_name_the_key_to_set() -> None:
    text = """\
        target:
          port: 22
        tls: {}
        """
    assert problems(text) == [
        "deploy.yaml:1:1: domain: is required; add domain: gw.example.com at the top level",
        "deploy.yaml:1:1: target.host: is required; add host: gw.example.com under target:",
        "deploy.yaml:3:1: tls.mode: is required; add mode: under tls:, one of acme, files, internal-ca",
    ]


def test_missing_client_name() -> None:
    assert problems("clients:\n  - rpm: 5\n", base=BASE) == [
        "deploy.yaml:11:5: clients[0].name: is required; add name: team-a under clients[0]:"
    ]


# --- the Anthropic key is never inline --------------------------------------------------------------


def test_inline_api_key_is_refused_and_never_echoed() -> None:
    text = """\
        target: {host: local}
        domain: localhost
        tls: {mode: internal-ca}
        upstream:
          base_url: https://api.anthropic.com
          api_key: sk-ant-api03-CANARYCANARYCANARY
        """
    with pytest.raises(DeployConfigError) as info:
        load(text)
    assert str(info.value) == (
        "deploy.yaml:6:3: upstream.api_key: the Anthropic API key must never be written in deploy.yaml;"
        " put it in a file with mode 0600 and set upstream.api_key_file, or export it and set upstream.api_key_env"
    )
    assert "CANARY" not in repr(info.value.problems)


def test_a_key_shaped_value_anywhere_is_refused_and_never_echoed() -> None:
    text = """\
        clients:
          - name: a
            models: ["sk-ant-api03-CANARYCANARYCANARY"]
        target: {host: "sk-ant-api03-CANARYCANARYCANARY"}
        domain: localhost
        tls: {mode: internal-ca}
        upstream: {api_key_env: "sk-ant-api03-CANARYCANARYCANARY"}
        """
    with pytest.raises(DeployConfigError) as info:
        load(text)
    message = str(info.value)
    assert "CANARY" not in message
    assert "CANARY" not in repr(info.value.problems)
    assert [p.field for p in info.value.problems] == [
        "clients[0].models[0]",
        "target.host",
        "upstream.api_key_env",
    ]


# --- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        (
            "https://gw.example.com/",
            "'https://gw.example.com/' is a URL, not a host name; write only the name, e.g. gw.example.com",
        ),
        (
            "'2001:db8::1'",
            "'2001:db8::1' is an IP address; the domain must be a DNS name that points at the server;"
            " create a DNS record and write its name, e.g. gw.example.com",
        ),
        (
            "gw.example.com:443",
            "'gw.example.com:443' is not a plain host name; write only the name, without port or path,"
            " e.g. gw.example.com",
        ),
        (
            "gw_1.example.com",
            "'gw_1.example.com' is not a valid DNS name: label 'gw_1' may hold only letters, digits and '-',"
            " 1-63 characters, not starting or ending with '-'; write e.g. gw.example.com",
        ),
        (
            "gw.bücher.de",
            "'gw.bücher.de' has non-ASCII characters; write the name in its punycode form (xn--...)",
        ),
        (
            "gw.example.123",
            "'gw.example.123' is not a valid DNS name (the last label is a number); write e.g. gw.example.com",
        ),
        ("42", "must be text, got 42; write e.g. gw.example.com"),
    ],
)
def test_domain_must_be_a_dns_name(domain: str, expected: str) -> None:
    text = f"target: {{host: local}}\ndomain: {domain}\ntls: {{mode: internal-ca}}\nupstream: {{api_key_env: K}}\n"
    assert problems(text) == [f"deploy.yaml:2:1: domain: {expected}"]


def test_domain_is_normalised() -> None:
    text = "target: {host: local}\ndomain: GW.Example.COM.\ntls: {mode: internal-ca}\nupstream: {api_key_env: K}\n"
    assert load(text).domain == "gw.example.com"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("LOCAL", "local"),
        ("203.0.113.7", "203.0.113.7"),
        ("'[2001:db8::7]'", "2001:db8::7"),
        ("Gw.Example.com", "gw.example.com"),
    ],
)
def test_target_host_forms(host: str, expected: str) -> None:
    text = BASE.replace("host: gw.example.com", f"host: {host}")
    if expected == "local":
        text = text.replace("mode: acme\n  email: ops@example.com", "mode: internal-ca")
    assert load(text).target.host == expected


def test_target_host_with_port_says_to_use_target_port() -> None:
    assert problems(BASE.replace("host: gw.example.com", "host: gw.example.com:2222")) == [
        "deploy.yaml:2:3: target.host: 'gw.example.com:2222' includes a port; write host: gw.example.com and put"
        " the port in target.port"
    ]


def test_cidrs_ipv4_and_ipv6_with_corrections() -> None:
    text = """\
        allowlist:
          - 203.0.113.0/24
          - 203.0.113.7/24
          - 2001:db8::1/32
          - 198.51.100.9
          - not-a-range
          - 10
        trusted_proxies: [10.0.0.0/4, 0.0.0.0/0, 198.51.100.7/32]
        """
    assert problems(text, base=BASE) == [
        "deploy.yaml:12:5: allowlist[1]: '203.0.113.7/24' has host bits set (the bits after /24 are not zero);"
        " write 203.0.113.0/24 for the whole network, or 203.0.113.7/32 for that one address",
        "deploy.yaml:13:5: allowlist[2]: '2001:db8::1/32' has host bits set (the bits after /32 are not zero);"
        " write 2001:db8::/32 for the whole network, or 2001:db8::1/128 for that one address",
        "deploy.yaml:15:5: allowlist[4]: 'not-a-range' is not an IPv4 or IPv6 address range; write"
        " ADDRESS/PREFIX, e.g. 203.0.113.0/24 or 2001:db8::/32, or a single address",
        "deploy.yaml:16:5: allowlist[5]: must be an address range written as text, got 10; write e.g. 203.0.113.0/24",
        "deploy.yaml:17:19: trusted_proxies[0]: '10.0.0.0/4' has host bits set (the bits after /4 are not zero);"
        " write 0.0.0.0/4 for the whole network, or 10.0.0.0/32 for that one address",
        "deploy.yaml:17:31: trusted_proxies[1]: 0.0.0.0/0 is too broad for a trusted proxy range: clients inside"
        " it could choose the address nginx believes; list your proxies' own addresses (/32) or their subnet,"
        " at least /8",
    ]


def test_cidrs_parse() -> None:
    cfg = load("allowlist: [203.0.113.0/24, 198.51.100.9, 2001:db8::/32]\n", base=BASE)
    assert cfg.allowlist == [
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("198.51.100.9/32"),
        ipaddress.ip_network("2001:db8::/32"),
    ]


def test_paths_expand_tilde_and_resolve_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/operator")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    text = BASE.replace("/etc/claudegate-test/anthropic_api_key", "secrets/anthropic_api_key")
    text = text.replace("  host: gw.example.com\n", "  host: gw.example.com\n  ssh_key: ~/.ssh/deploy\n")
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.target.ssh_key == Path("/home/operator/.ssh/deploy")
    assert cfg.target.known_hosts == Path("/home/operator/.config/claudegate/known_hosts")
    assert cfg.upstream.api_key_file == tmp_path / "secrets" / "anthropic_api_key"
    assert cfg.state_dir == Path("/home/operator/.config/claudegate/gw.example.com")


def test_state_dir_follows_xdg_config_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/srv/conf")
    assert load("", base=LOCAL).state_dir == Path("/srv/conf/claudegate/localhost")
    assert load("state_dir: /srv/gw\n", base=LOCAL).state_dir == Path("/srv/gw")


def test_a_single_value_where_a_list_belongs() -> None:
    assert problems("clients: [{name: a, models: claude-*}]\n", base=BASE) == [
        "deploy.yaml:10:21: clients[0].models: must be a list, got the single value 'claude-*'; write it as a"
        " list: [claude-*]"
    ]


def test_empty_scope_lists_are_refused() -> None:
    assert problems("clients: [{name: a, models: [], betas: []}]\n", base=BASE) == [
        "deploy.yaml:10:21: clients[0].models: must list at least one value; write ['*'] to allow every model",
        "deploy.yaml:10:33: clients[0].betas: must list at least one value; leave betas out to allow any"
        " anthropic-beta value, or list the allowed ones",
    ]


def test_a_section_that_is_not_a_mapping() -> None:
    assert problems("limits: 5\n", base=BASE) == [
        "deploy.yaml:10:1: limits: must be a mapping (key: value lines), got 5; its keys are: per_ip, per_key,"
        " connections_per_ip, max_body_size, timeouts, url_source_tokens, server_tool_use_tokens,"
        " server_tool_default_uses, models_cache_seconds, held_downloads_mib,"
        " held_downloads_per_key_mib"
    ]


def test_rate_limit_errors_come_from_the_edge_model() -> None:
    assert problems("limits: {per_key: {rate: 10/s, burst: 20}}\n", base=BASE) == [
        "deploy.yaml:10:20: limits.per_key.rate: '10/s' is not a rate; write e.g. 20r/s or 600r/m"
    ]


def test_body_size_as_bytes_or_nginx_size() -> None:
    assert load("limits: {max_body_size: 1048576}\n", base=BASE).limits.max_body_size == "1048576"
    assert load("limits: {max_body_size: 8m}\n", base=BASE).limits.max_body_size == "8m"
    assert problems("limits: {max_body_size: 8 MB}\n", base=BASE) == [
        "deploy.yaml:10:10: limits.max_body_size: '8 MB' is not an nginx size; write e.g. 32m, 512k or 1048576"
    ]


def test_fingerprint_is_checked_and_normalised() -> None:
    good = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
    cfg = load(
        BASE.replace("  host: gw.example.com\n", f"  host: gw.example.com\n  host_key_fingerprint: {good}=\n")
    )
    assert cfg.target.host_key_fingerprint == good
    assert problems(
        BASE.replace("  host: gw.example.com\n", "  host: gw.example.com\n  host_key_fingerprint: MD5:ab\n")
    ) == [
        "deploy.yaml:3:3: target.host_key_fingerprint: 'MD5:ab' is not a host key fingerprint; write 'SHA256:' and"
        " 43 base64 characters, as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it on the server"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://api.anthropic.com",
            "plain http:// would send the Anthropic key unencrypted over the internet;"
            " use https:// (http:// is accepted only for private addresses and names such as a local test upstream)",
        ),
        (
            "https://user:pw@api.anthropic.com",
            "the URL holds a user name or password; remove it; the key goes in upstream.api_key_file",
        ),
        (
            "ftp://api.anthropic.com",
            "'ftp://api.anthropic.com' is not an http(s) URL; write e.g. https://api.anthropic.com",
        ),
        (
            "https://api.anthropic.com/?x=1",
            "the URL has a query or fragment; write only scheme, host, port and path",
        ),
    ],
)
def test_upstream_base_url(url: str, expected: str) -> None:
    assert problems(BASE.replace("images: {transfer: build}\n", f"  base_url: {url}\n")) == [
        f"deploy.yaml:9:3: upstream.base_url: {expected}"
    ]


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8000", "http://fake-anthropic:8000", "http://upstream.test"]
)
def test_plain_http_upstream_allowed_on_private_names(url: str) -> None:
    cfg = load(BASE.replace("images: {transfer: build}\n", f"  base_url: {url}/\n"))
    assert cfg.upstream.base_url == url


def test_expiry_forms() -> None:
    text = """\
        clients:
          - {name: a, expires: 2027-06-30T00:00:00Z}
          - {name: b, expires: 2027-06-30}
          - {name: c, expires: "2027-06-30T02:00:00+02:00"}
          - {name: d, expires: 2027-06-30 12:00:00}
        """
    cfg = load(text, base=BASE)
    assert [c.expires for c in cfg.clients] == [
        datetime(2027, 6, 30, tzinfo=UTC),
        datetime(2027, 6, 30, tzinfo=UTC),
        datetime(2027, 6, 30, tzinfo=UTC),
        datetime(2027, 6, 30, 12, tzinfo=UTC),
    ]
    assert problems("clients: [{name: a, expires: soon}]\n", base=BASE) == [
        "deploy.yaml:10:21: clients[0].expires: 'soon' is not a date and time; write it in ISO 8601,"
        " e.g. 2027-06-30T00:00:00Z"
    ]


def test_image_reference() -> None:
    assert load(
        "images: {base_image: 'registry.local:5000/team/debian@sha256:" + "a" * 64 + "'}\n", base=LOCAL
    )
    assert problems("images: {base_image: Debian Bookworm}\n", base=LOCAL) == [
        "deploy.yaml:8:10: images.base_image: 'Debian Bookworm' is not a Docker image reference;"
        " write e.g. debian:bookworm-slim"
    ]


def test_network_subnet() -> None:
    assert load("network: {subnet: 192.168.77.0/29}\n", base=LOCAL).network.subnet == ipaddress.IPv4Network(
        "192.168.77.0/29"
    )
    assert problems("network: {subnet: 8.8.8.0/24}\n", base=LOCAL) == [
        "deploy.yaml:8:11: network.subnet: 8.8.8.0/24 is not a private range; use a range from 10/8, 172.16/12"
        " or 192.168/16"
    ]


# --- the model without a file ----------------------------------------------------------------------


def test_model_built_in_code_runs_the_rules_too() -> None:
    cfg = DeployConfig(
        target=Target(host="local"),
        domain="localhost",
        tls=TLS(mode="internal-ca"),
        upstream=Upstream(api_key_env="ANTHROPIC_API_KEY"),
    )
    assert cfg.ports.https == 443
    with pytest.raises(ValueError, match=r"tls\.cert_file: is required with tls\.mode: files"):
        DeployConfig(
            target=Target(host="local"),
            domain="localhost",
            tls=TLS(mode="files"),
            upstream=Upstream(api_key_env="ANTHROPIC_API_KEY"),
        )


def test_load_config_text_default_source_name() -> None:
    with pytest.raises(DeployConfigError, match=r"^deploy\.yaml:1:1: "):
        load_config_text("[]")


def test_a_section_with_everything_commented_out_means_defaults() -> None:
    text = """\
        ports:
        #  http: 80
        allowlist:
        limits:
          per_ip:
          timeouts:
        clients:
        """
    cfg = load(text, base=BASE)
    assert (cfg.ports.http, cfg.ports.https, cfg.allowlist, cfg.clients) == (80, 443, [], [])
    assert cfg.limits.per_ip.rate == "20r/s"
    assert problems(LOCAL.replace("tls:\n  mode: internal-ca\n", "tls:\n")) == [
        "deploy.yaml:4:1: tls.mode: is required; add mode: under tls:, one of acme, files, internal-ca"
    ]


def test_clients_written_as_a_mapping() -> None:
    assert problems("clients: {name: a}\n", base=LOCAL) == [
        "deploy.yaml:8:1: clients: must be a list, got a mapping; start each entry with '- ', e.g. '- name: ...'"
    ]
