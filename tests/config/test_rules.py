"""Checks across sections: TLS modes, SSH-only keys on a local target, the key's source, edge bounds."""

from __future__ import annotations

import pytest

from tests.config.common import BASE, LOCAL, load, problems

HEAD = """\
target: {host: gw.example.com}
domain: gw.example.com
upstream: {api_key_env: ANTHROPIC_API_KEY}
"""


def test_files_mode_needs_cert_and_key() -> None:
    text = HEAD + "tls:\n  mode: files\n"
    assert problems(text) == [
        "deploy.yaml:4:1: tls.cert_file: is required with tls.mode: files; set cert_file: to the PEM file"
        " holding the certificate followed by its intermediates",
        "deploy.yaml:4:1: tls.key_file: is required with tls.mode: files; set key_file: to the PEM file holding"
        " the certificate's private key (mode 0600)",
    ]


def test_files_mode_valid_and_acme_keys_refused() -> None:
    text = (
        HEAD
        + "tls:\n  mode: files\n  cert_file: /etc/ssl/gw/fullchain.pem\n  key_file: /etc/ssl/gw/privkey.pem\n"
    )
    cfg = load(text)
    assert str(cfg.tls.cert_file) == "/etc/ssl/gw/fullchain.pem"
    assert problems(text + "  email: ops@example.com\n  acme_directory: https://acme.example.net/dir\n") == [
        "deploy.yaml:8:3: tls.email: is used only with tls.mode: acme, and mode is files; remove it, or set"
        " tls.mode: acme",
        "deploy.yaml:9:3: tls.acme_directory: is used only with tls.mode: acme, and mode is files; remove it, or"
        " set tls.mode: acme",
    ]


def test_acme_needs_email() -> None:
    assert problems(HEAD + "tls: {mode: acme}\n") == [
        "deploy.yaml:4:1: tls.email: is required with tls.mode: acme (the CA sends expiry warnings there);"
        " set email: under tls:, e.g. email: ops@example.com"
    ]


@pytest.mark.parametrize("domain", ["localhost", "gateway", "gw.localhost", "printer.local"])
def test_acme_needs_a_public_name(domain: str) -> None:
    text = HEAD.replace("domain: gw.example.com", f"domain: {domain}") + "tls: {mode: acme, email: a@b.co}\n"
    assert problems(text) == [
        f"deploy.yaml:2:1: domain: '{domain}' cannot get an ACME certificate: it is not a public DNS name;"
        " use a name with a DNS record pointing at the server, or tls.mode: internal-ca to try it out"
    ]


def test_acme_with_an_ip_address_as_domain() -> None:
    text = (
        HEAD.replace("domain: gw.example.com", "domain: 203.0.113.10") + "tls: {mode: acme, email: a@b.co}\n"
    )
    # An address is certified only by the internal CA (issue 14: domain may be an IP with it).
    assert problems(text) == [
        "deploy.yaml:2:1: domain: 203.0.113.10 is an IP address, and only tls.mode: internal-ca certifies an"
        " address (tls.mode is acme); set tls.mode: internal-ca (clients trust its ca.pem), or use a DNS name"
        " that points at the server"
    ]


def test_lets_encrypt_refuses_reserved_names_but_a_private_ca_may_issue_them() -> None:
    text = (
        HEAD.replace("domain: gw.example.com", "domain: gw.claudegate.test")
        + "tls: {mode: acme, email: a@b.co}\n"
    )
    assert problems(text) == [
        "deploy.yaml:2:1: domain: 'gw.claudegate.test' is a reserved name; Let's Encrypt will not issue a"
        " certificate for it; use a name with a public DNS record pointing at the server, or tls.mode: internal-ca"
    ]
    pebble = text.replace("email: a@b.co}", "email: a@b.co, acme_directory: 'https://pebble:14000/dir'}")
    cfg = load(pebble)
    assert cfg.tls.acme_directory == "https://pebble:14000/dir"


def test_lets_encrypt_needs_port_80() -> None:
    text = HEAD + "tls: {mode: acme, email: a@b.co}\nports: {http: 8080}\n"
    assert problems(text) == [
        "deploy.yaml:5:9: ports.http: is 8080, but Let's Encrypt's HTTP-01 check always connects to port 80;"
        " set ports.http: 80, or use tls.mode: files with a certificate obtained another way"
    ]
    other_ca = text.replace(
        "email: a@b.co}", "email: a@b.co, acme_directory: 'https://ca.internal/acme/dir'}"
    )
    assert load(other_ca).ports.http == 8080


def test_internal_ca_refuses_file_keys() -> None:
    assert problems(LOCAL.replace("upstream:", "  chain_file: c.pem\nupstream:")) == [
        "deploy.yaml:6:3: tls.chain_file: is used only with tls.mode: files, and mode is internal-ca; remove it,"
        " or set tls.mode: files",
    ]


def test_local_target_refuses_ssh_settings() -> None:
    text = LOCAL.replace(
        "  host: local\n",
        "  host: local\n  user: deploy\n  port: 22\n  ssh_key: ~/.ssh/id\n  host_key_fingerprint:"
        " SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\n  sudo: false\n",
    )
    assert problems(text) == [
        f"deploy.yaml:{line}:3: target.{name}: is used only when deploying over SSH, and target.host is local;"
        " remove it, or set target.host to the server's name or address"
        for line, name in [(3, "user"), (4, "port"), (5, "ssh_key"), (6, "host_key_fingerprint")]
    ]


def test_the_key_comes_from_exactly_one_place() -> None:
    neither = LOCAL.replace("upstream:\n  api_key_env: ANTHROPIC_API_KEY\n", "")
    assert problems(neither) == [
        "deploy.yaml:1:1: upstream.api_key_file: the Anthropic API key has no source; set upstream.api_key_file:"
        " to a file holding the key (mode 0600), or upstream.api_key_env: to the environment variable holding it"
    ]
    empty_section = neither + "upstream: {}\n"
    assert problems(empty_section) == [
        "deploy.yaml:6:1: upstream.api_key_file: the Anthropic API key has no source; set upstream.api_key_file:"
        " to a file holding the key (mode 0600), or upstream.api_key_env: to the environment variable holding it"
    ]
    both = LOCAL + "  api_key_file: ~/key\n"
    assert problems(both) == [
        "deploy.yaml:7:3: upstream.api_key_env: is set together with upstream.api_key_file; the key must come"
        " from one place; remove one of the two"
    ]


def test_ports_must_differ() -> None:
    assert problems("ports: {http: 8443, https: 8443}\n", base=LOCAL) == [
        "deploy.yaml:8:21: ports.https: is 8443, the same as ports.http; give HTTP and HTTPS different ports,"
        " e.g. http: 80 and https: 443"
    ]


def test_client_names_are_unique() -> None:
    text = "clients:\n  - name: team-a\n  - name: team-b\n  - name: team-a\n"
    assert problems(text, base=LOCAL) == [
        "deploy.yaml:11:5: clients[2].name: 'team-a' is already the name of clients[0]; give every client its own name"
    ]


def test_edge_bounds_are_the_edge_models() -> None:
    text = """\
        limits:
          connections_per_ip: 200000
          timeouts:
            client_header: 301
            upstream_read: 3601
        """
    assert problems(text, base=LOCAL) == [
        "deploy.yaml:9:3: limits.connections_per_ip: must be at most 65535, got 200000; choose a value within"
        " that range",
        "deploy.yaml:11:5: limits.timeouts.client_header: must be at most 300, got 301; choose a value within that"
        " range",
        "deploy.yaml:12:5: limits.timeouts.upstream_read: must be at most 3600, got 3601; choose a value within"
        " that range",
    ]


def test_body_size_below_the_gateway_minimum() -> None:
    assert problems("limits: {max_body_size: 512}\n", base=LOCAL) == [
        "deploy.yaml:8:10: limits.max_body_size: '512' is smaller than the gateway's minimum of 1k; set it to"
        " e.g. 32m (Anthropic's own request limit)"
    ]


def test_rules_run_on_the_rest_when_the_schema_fails() -> None:
    # One run says every problem: the schema's and the rules' (nobody fixes one list to meet the next).
    text = HEAD + "tls: {mode: files}\nports: {http: x}\n"
    assert [line.split(": ")[1] for line in problems(text)] == ["tls.cert_file", "tls.key_file", "ports.http"]
    assert [line.split(": ")[1] for line in problems(text.replace("http: x", "http: 80"))] == [
        "tls.cert_file",
        "tls.key_file",
    ]


def test_a_rule_about_a_refused_section_is_not_said_about_its_stand_in() -> None:
    # https is refused: the rules would see the default 443 in its place and call it the same as http;
    # that is about a value nobody wrote, so it is not said. A client's own rules are still said.
    assert problems(LOCAL + "ports: {http: 443, https: 443}\n") == [
        "deploy.yaml:8:20: ports.https: is 443, the same as ports.http; give HTTP and HTTPS different ports,"
        " e.g. http: 80 and https: 443"
    ]
    text = LOCAL + (
        "ports: {http: 443, https: x}\n"
        "clients: [{name: a, rpm: -1, models: ['claud-*'], expires: 2020-01-01}]\n"
    )
    said = [line.split(": ", 2)[1:] for line in problems(text)]
    assert said == [
        ["ports.https", "must be a whole number from 1 to 65535, got 'x'; set it to e.g. 443"],
        ["clients[0].rpm", "must be a positive whole number, got -1; set it to e.g. 60"],
        ["clients[0].models[0]", "'claud-*' matches no known model, so the key could use none; did you mean"
         " claude-*?"],
        ["clients[0].expires", "2020-01-01 00:00 UTC is in the past: the key would be refused from its first"
         " request; set a later date, or remove expires: for a key that does not expire"],
    ]


def test_base_is_valid() -> None:
    assert load("", base=BASE).tls.email == "ops@example.com"


def test_acme_directory_must_be_https() -> None:
    text = HEAD + "tls: {mode: acme, email: a@b.co, acme_directory: 'http://ca.example.net/dir'}\n"
    assert problems(text) == [
        "deploy.yaml:4:34: tls.acme_directory: 'http://ca.example.net/dir' is not an https:// URL; ACME"
        " directories are served over HTTPS; write e.g. https://acme-v02.api.letsencrypt.org/directory"
    ]


def test_a_refused_list_entry_leaves_the_others_checked_at_their_own_positions() -> None:
    # The first client has no name (the entry is left out of the rules); the second's rules still run
    # and are said at clients[1], its place in the file, not at the index it has without the first.
    text = LOCAL + (
        "allowlist: ['10.0.0.0/33', '10.0.0.0/8']\n"
        "clients:\n  - rpm: 5\n  - name: b\n    models: ['claude-sonet-*']\n"
    )
    said = [line.split(": ", 2)[1] for line in problems(text)]
    assert said == ["allowlist[0]", "clients[0].name", "clients[1].models[0]"], said
    assert "did you mean claude-sonnet-*?" in problems(text)[-1]
