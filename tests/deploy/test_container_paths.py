"""Every path a service is told about inside its container is the file the deploy writes on the host.

A container path is translated back through the container spec's own
mounts (the longest mount that holds it) and must land on the HostLayout
path the deploy writes (or the renewer reads), so a renamed file, a moved
mount or a path spelled twice shows up here.
"""

from __future__ import annotations

import posixpath

import pytest

from claudegate.config.derive import edge_settings, gateway_config
from claudegate.containers import CERTBOT_STATE, NGINX_TLS
from claudegate.deploy import docker_cli
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.acme import CA_BUNDLE_IN_CONTAINER, certbot_argv
from claudegate.deploy.steps.renewal import renewer_spec
from tests.config.common import LOCAL, load

LAYOUT = HostLayout(root="/srv/cg-test", prefix="cgtest")
GATEWAY_ID = "0123456789ab"


def host_path(mounts: tuple[tuple[str, str, bool], ...], inside: str) -> str:
    """Where ``inside`` is on the host, through ``mounts`` (host, container, read-only)."""
    best = None
    for host, target, _ro in mounts:
        holds = inside == target or inside.startswith(target.rstrip("/") + "/")
        if holds and (best is None or len(target) > len(best[1])):
            best = (host, target)
    assert best is not None, f"{inside} is in no mount"
    host, target = best
    return host if inside == target else posixpath.join(host, posixpath.relpath(inside, target))


def test_the_gateway_reads_the_files_the_deploy_writes() -> None:
    cfg = load("", base=LOCAL)
    spec = docker_cli.gateway_spec(LAYOUT, GATEWAY_ID, "img")
    config = gateway_config(cfg)
    expected = {
        config["upstream"]["api_key_file"]: LAYOUT.api_key_file,
        config["pepper_file"]: LAYOUT.pepper_file,
        config["keystore"]: LAYOUT.keystore,
        config["audit_log"]: LAYOUT.audit_log,
        docker_cli.GATEWAY_CONFIG_IN_CONTAINER: posixpath.join(LAYOUT.gateway_dir(GATEWAY_ID), "gateway.yaml"),
    }
    for inside, on_host in expected.items():
        assert host_path(spec.mounts, inside) == on_host, inside
    # The secrets and the config are read-only to the gateway; its data and log are not.
    writable = {target for _h, target, ro in spec.mounts if not ro}
    assert {posixpath.dirname(config["keystore"]), posixpath.dirname(config["audit_log"])} == writable


def test_nginx_reads_the_release_and_certificate_the_deploy_writes() -> None:
    edge = edge_settings(load("", base=LOCAL))
    spec = docker_cli.nginx_spec(LAYOUT, "img", http_port=80, https_port=443, fixed_ip="10.0.0.2")
    assert host_path(spec.mounts, spec.args[-1]) == posixpath.join(LAYOUT.current_link, "nginx", "nginx.conf")
    for inside, name in ((edge.cert_path, "fullchain.pem"), (edge.key_path, "privkey.pem"),
                         (edge.chain_path, "chain.pem")):
        assert host_path(spec.mounts, inside) == posixpath.join(LAYOUT.tls, name)
    assert host_path(spec.mounts, edge.acme_webroot) == LAYOUT.acme_webroot
    assert all(ro for _h, _t, ro in spec.mounts)


def test_certbot_writes_where_nginx_serves_and_the_renewer_reads() -> None:
    argv = certbot_argv(
        image="img", prefix="cgtest", network="net", state_dir=LAYOUT.acme_state, webroot=LAYOUT.acme_webroot,
        domain="gw.example.com", email="a@b.co", directory="https://ca/dir", ca_bundle=True,
    )
    volumes = tuple(
        (host, inside, mode == "ro")
        for host, inside, mode in (argv[i + 1].split(":") for i, a in enumerate(argv) if a == "--volume")
    )
    webroot = argv[argv.index("--webroot-path") + 1]
    assert host_path(volumes, webroot) == LAYOUT.acme_webroot
    bundle = argv[argv.index(f"REQUESTS_CA_BUNDLE={CA_BUNDLE_IN_CONTAINER}")].partition("=")[2]
    assert host_path(volumes, bundle).startswith(LAYOUT.acme_state + "/")

    nginx = docker_cli.nginx_spec(LAYOUT, "img", http_port=80, https_port=443, fixed_ip="10.0.0.2")
    renewer = renewer_spec(LAYOUT, image="img", nginx=nginx, nginx_id="nginx-id", domain="gw.example.com",
                           https_port=443, ca_bundle=False)
    args = list(renewer.args)
    live = args[args.index("--live") + 1]
    tls = args[args.index("--tls") + 1]
    assert host_path(renewer.mounts, live).startswith(LAYOUT.acme_state + "/")
    assert host_path(renewer.mounts, tls) == LAYOUT.tls
    assert tls == NGINX_TLS.inside and live.startswith(CERTBOT_STATE.inside)
    # The renewer may write the served certificate and the webroot; nginx's release stays read-only.
    writable = {target for _h, target, ro in renewer.mounts if not ro}
    assert NGINX_TLS.inside in writable
    assert host_path(renewer.mounts, args[args.index("--nginx-conf") + 1]).startswith(LAYOUT.releases + "/")


@pytest.mark.parametrize("inside", ["/etc", "/run/secrets-other/x"])
def test_a_path_outside_every_mount_is_caught(inside: str) -> None:
    spec = docker_cli.gateway_spec(LAYOUT, GATEWAY_ID, "img")
    with pytest.raises(AssertionError):
        host_path(spec.mounts, inside)
