"""Fact parsers on sample output."""

from __future__ import annotations

import json

from claudegate.deploy.facts import parse_container, parse_network, parse_nginx_workers, parse_os_release

INSPECT = {
    "Id": "abc123",
    "Name": "/claudegate-nginx",
    "RestartCount": 2,
    "State": {
        "Status": "running",
        "StartedAt": "2026-01-01T00:00:00Z",
        "ExitCode": 0,
        "Health": {"Status": "healthy"},
    },
    "Config": {"Image": "claudegate/nginx:aaa", "Labels": {"org.claudegate.role": "nginx"}},
    "NetworkSettings": {
        "Networks": {"claudegate-edge": {"IPAddress": "172.18.0.2"}, "claudegate-internal": None}
    },
}


def test_container() -> None:
    state = parse_container(json.dumps(INSPECT))
    assert state is not None
    assert (state.id, state.name, state.image, state.status, state.health) == (
        "abc123", "claudegate-nginx", "claudegate/nginx:aaa", "running", "healthy",
    )  # fmt: skip
    assert state.running and state.restart_count == 2
    assert state.networks == {"claudegate-edge": "172.18.0.2", "claudegate-internal": ""}
    assert parse_container("Error: No such container") is None


def test_container_without_health_check() -> None:
    data = dict(INSPECT, State={"Status": "exited", "ExitCode": 2})
    state = parse_container(json.dumps(data))
    assert state is not None and state.health is None and not state.running and state.exit_code == 2


def test_network() -> None:
    text = json.dumps(
        {"Name": "n", "Internal": True, "IPAM": {"Config": [{"Subnet": "10.213.71.0/28"}]}, "Labels": None}
    )
    state = parse_network(text)
    assert (
        state is not None and state.internal and state.subnets == ("10.213.71.0/28",) and state.labels == {}
    )


def test_nginx_workers_ignores_old_generations() -> None:
    text = (
        "1 nginx: master process nginx -g daemon off; -c /etc/claudegate/releases/current/nginx/nginx.conf \n"
        "7 nginx: worker process is shutting down \n"
        "9 nginx: worker process \n"
        "10 nginx: worker process \n"
        "garbage\n"
    )
    assert parse_nginx_workers(text) == (1, {9, 10})


def test_os_release() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nID_LIKE=""\n'
    assert parse_os_release(text)["ID"] == "debian"


def test_network_options_and_group_entries() -> None:
    from claudegate.deploy.facts import parse_group_gid

    text = json.dumps(
        {
            "Name": "n",
            "Internal": True,
            "IPAM": {"Config": [{"Subnet": "10.213.71.0/28"}]},
            "Options": {"com.docker.network.bridge.inhibit_ipv4": "true"},
        }
    )
    state = parse_network(text)
    assert state is not None and state.options == {"com.docker.network.bridge.inhibit_ipv4": "true"}
    old = parse_network(json.dumps({"Name": "n", "Internal": True, "Options": None}))
    assert old is not None and old.options == {}
    assert parse_group_gid("claudegate:x:998:\n") == 998
    assert parse_group_gid("") is None and parse_group_gid("claudegate:x::") is None
