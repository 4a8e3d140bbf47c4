"""Every command builder, as the exact argv it returns (no host involved)."""

from __future__ import annotations

from claudegate.deploy import docker_cli, host_cli, renewer_restore
from claudegate.deploy.layout import DirSpec, HostLayout
from claudegate.deploy.lock import acquire_argv, read_argv, release_argv
from claudegate.deploy.wheelhouse import download_argv

LAYOUT = HostLayout()


def test_engine_and_image_builders() -> None:
    assert docker_cli.docker_info() == ["docker", "info", "--format", "{{.ServerVersion}}"]
    assert docker_cli.image_inspect("claudegate/nginx:abc") == [
        "docker", "image", "inspect", "--format", "{{.Id}}", "claudegate/nginx:abc",
    ]  # fmt: skip
    assert docker_cli.build_image(
        "claudegate/gateway:0123456789ab",
        base_image="claudegate/debian-base:bookworm",
        labels={"org.claudegate.context": "ff"},
    ) == [
        "docker", "build", "--pull=false", "--force-rm", "--tag", "claudegate/gateway:0123456789ab",
        "--build-arg", "BASE_IMAGE=claudegate/debian-base:bookworm",
        "--label", "org.claudegate.context=ff", "-",
    ]  # fmt: skip
    assert docker_cli.image_load() == ["docker", "image", "load", "--quiet"]
    assert docker_cli.image_save("a:1") == ["docker", "image", "save", "a:1"]
    assert docker_cli.image_pull("debian:bookworm") == [
        "docker",
        "image",
        "pull",
        "--quiet",
        "debian:bookworm",
    ]
    assert docker_cli.image_remove("a:1", "b:2") == ["docker", "image", "rm", "a:1", "b:2"]
    assert docker_cli.image_list("claudegate/gateway") == [
        "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "claudegate/gateway",
    ]  # fmt: skip


def test_network_builders() -> None:
    assert docker_cli.network_create(
        "claudegate-internal",
        internal=True,
        subnet="10.213.71.0/28",
        ip_range="10.213.71.8/29",
        labels={"org.claudegate.instance": "claudegate"},
        options={"com.docker.network.bridge.inhibit_ipv4": "true"},
    ) == [
        "docker", "network", "create", "--driver", "bridge", "--internal",
        "--subnet", "10.213.71.0/28", "--ip-range", "10.213.71.8/29",
        "--opt", "com.docker.network.bridge.inhibit_ipv4=true",
        "--label", "org.claudegate.instance=claudegate", "claudegate-internal",
    ]  # fmt: skip
    assert docker_cli.network_create("claudegate-edge") == [
        "docker", "network", "create", "--driver", "bridge", "claudegate-edge",
    ]  # fmt: skip
    assert docker_cli.network_inspect("n") == ["docker", "network", "inspect", "--format", "{{json .}}", "n"]
    assert docker_cli.network_remove("a", "b") == ["docker", "network", "rm", "a", "b"]
    assert docker_cli.network_connect("claudegate-internal", "claudegate-nginx", ip="10.213.71.2") == [
        "docker", "network", "connect", "--ip", "10.213.71.2", "claudegate-internal", "claudegate-nginx",
    ]  # fmt: skip


def test_container_builders() -> None:
    assert docker_cli.container_inspect("c") == [
        "docker",
        "container",
        "inspect",
        "--format",
        "{{json .}}",
        "c",
    ]
    assert docker_cli.container_list("claudegate", role="gateway") == [
        "docker", "container", "ls", "--all", "--filter", "label=org.claudegate.instance=claudegate",
        "--filter", "label=org.claudegate.role=gateway", "--format", "{{.Names}}",
    ]  # fmt: skip
    assert docker_cli.container_start("c") == ["docker", "container", "start", "c"]
    assert docker_cli.container_stop("c") == ["docker", "container", "stop", "--time", "35", "c"]
    assert docker_cli.container_remove("c") == ["docker", "container", "rm", "--force", "--volumes", "c"]
    assert docker_cli.container_logs("c", tail=5) == ["docker", "container", "logs", "--tail", "5", "c"]
    assert docker_cli.exec_in("c", ["id"]) == ["docker", "exec", "c", "id"]
    assert docker_cli.exec_in("c", ["cat"], stdin=True) == ["docker", "exec", "--interactive", "c", "cat"]
    # A reload signals from inside (docker exec): `docker kill` would mark nginx manually stopped.
    argv = docker_cli.signal_nginx_master("n", 7, "HUP")
    assert argv[:5] == ["docker", "exec", "n", "sh", "-c"] and argv[-2:] == ["HUP", "7"]
    argv = docker_cli.nginx_workers("n")
    assert argv[:5] == ["docker", "exec", "n", "sh", "-c"] and len(argv) == 6


def test_gateway_container_is_hardened_and_gets_secrets_as_read_only_files() -> None:
    spec = docker_cli.gateway_spec(LAYOUT, "0123456789ab", "claudegate/gateway:aaaaaaaaaaaa", secrets_gid=998)
    argv = docker_cli.create_container(spec)
    assert argv == [
        "docker", "create", "--name", "claudegate-gateway-0123456789ab",
        "--network", "claudegate-internal", "--network-alias", "gateway-0123456789ab",
        "--user", "10001:10001", "--group-add", "998",
        "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=16m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "512m", "--cpus", "1.0", "--pids-limit", "256", "--restart", "unless-stopped",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
        "--volume", "/opt/claudegate/gateways/0123456789ab/gateway.yaml:/etc/claudegate/gateway.yaml:ro",
        "--volume", "/opt/claudegate/shared/secrets:/run/secrets:ro",
        "--volume", "/opt/claudegate/shared/data:/var/lib/claudegate:rw",
        "--volume", "/opt/claudegate/shared/log/gateway:/var/log/claudegate:rw",
        "--label", "org.claudegate.gateway=0123456789ab",
        "--label", "org.claudegate.instance=claudegate",
        "--label", "org.claudegate.role=gateway",
        "--label", f"org.claudegate.spec={spec.digest()}",
        "claudegate/gateway:aaaaaaaaaaaa",
    ]  # fmt: skip
    assert "--publish" not in argv and "--env" not in argv and "-e" not in argv
    assert spec.extra_networks == (("claudegate-egress", None),)


def test_nginx_container_publishes_the_two_ports_with_few_capabilities() -> None:
    spec = docker_cli.nginx_spec(
        LAYOUT, "claudegate/nginx:bbbbbbbbbbbb", http_port=80, https_port=443, fixed_ip="10.213.71.2"
    )
    argv = docker_cli.create_container(spec)
    assert argv == [
        "docker", "create", "--name", "claudegate-nginx", "--network", "claudegate-edge", "--read-only",
        "--tmpfs", "/run:rw,nosuid,size=4m", "--tmpfs", "/var/lib/nginx:rw,nosuid,size=64m",
        "--tmpfs", "/tmp:rw,noexec,nosuid,size=16m", "--tmpfs", "/var/log/nginx:rw,noexec,nosuid,size=1m",
        "--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "NET_BIND_SERVICE",
        "--cap-add", "SETGID", "--cap-add", "SETUID",
        "--security-opt", "no-new-privileges",
        "--memory", "256m", "--cpus", "1.0", "--pids-limit", "256", "--restart", "unless-stopped",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
        "--health-cmd", "bash -c 'exec 3<>/dev/tcp/127.0.0.1/80'", "--health-interval", "10s",
        "--health-timeout", "3s", "--health-retries", "3",
        "--volume", "/opt/claudegate/releases:/etc/claudegate/releases:ro",
        "--volume", "/opt/claudegate/shared/tls:/etc/claudegate/tls:ro",
        "--volume", "/opt/claudegate/shared/acme:/var/www/acme:ro",
        "--publish", "80:80", "--publish", "443:443",
        "--label", "org.claudegate.instance=claudegate", "--label", "org.claudegate.role=nginx",
        "--label", f"org.claudegate.spec={spec.digest()}",
        "claudegate/nginx:bbbbbbbbbbbb", "-c", "/etc/claudegate/releases/current/nginx/nginx.conf",
    ]  # fmt: skip
    assert spec.extra_networks == (("claudegate-internal", "10.213.71.2"),)


def test_spec_digest_follows_every_setting() -> None:
    a = docker_cli.nginx_spec(LAYOUT, "img:1", http_port=80, https_port=443, fixed_ip="10.0.0.2")
    assert (
        a.digest()
        == docker_cli.nginx_spec(LAYOUT, "img:1", http_port=80, https_port=443, fixed_ip="10.0.0.2").digest()
    )
    assert (
        a.digest()
        != docker_cli.nginx_spec(LAYOUT, "img:2", http_port=80, https_port=443, fixed_ip="10.0.0.2").digest()
    )
    assert (
        a.digest()
        != docker_cli.nginx_spec(LAYOUT, "img:1", http_port=80, https_port=8443, fixed_ip="10.0.0.2").digest()
    )


def test_host_builders() -> None:
    assert host_cli.uname_machine() == ["uname", "-m"]
    assert host_cli.os_release() == ["cat", "/etc/os-release"]
    assert host_cli.sudo_check() == ["true"]
    assert host_cli.command_path("docker") == ["sh", "-c", 'command -v -- "$1"', "claudegate-which", "docker"]
    assert host_cli.apt_install("docker.io") == [
        "env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c",
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends -- "$@"', "claudegate-apt", "docker.io",
    ]  # fmt: skip
    start = host_cli.start_docker()
    assert start[:2] == ["sh", "-c"] and "systemctl enable --now docker.service" in start[2]
    assert "start-stop-daemon --start --oknodo" in start[2]
    argv = host_cli.ensure_dir(DirSpec("/opt/x y", 0o700, 10001, 10001))
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["claudegate-dir", "/opt/x y", "10001:10001", "0700"]
    assert 'chown -h -- "$2" "$1"' in argv[2] and '[ -L "$1" ]' in argv[2]
    # A host group is named (the host chose its number).
    assert host_cli.ensure_dir(DirSpec("/s", 0o750, 0, -1, "claudegate"))[4:] == ["/s", "0:claudegate", "0750"]
    assert host_cli.ensure_group("claudegate") == [
        "sh", "-c", 'getent group "$1" >/dev/null || groupadd --system -- "$1"', "claudegate-group", "claudegate",
    ]  # fmt: skip
    assert host_cli.group_entry("claudegate") == ["getent", "group", "claudegate"]
    assert host_cli.set_symlink("/r/current", "abc") == [
        "sh", "-c", 'ln -sfn -- "$2" "$1.tmp" && mv -fT -- "$1.tmp" "$1"', "claudegate-link", "/r/current", "abc",
    ]  # fmt: skip
    assert host_cli.file_stats(["/a", "/b"])[3:] == ["claudegate-stat", "/a", "/b"]
    assert host_cli.file_sha256(["/a"])[3:] == ["claudegate-sha256", "/a"]
    assert host_cli.read_links(["/a"])[3:] == ["claudegate-readlink", "/a"]
    assert host_cli.extract_tar("/r/abc")[3:] == ["claudegate-untar", "/r/abc"]
    assert host_cli.list_dir("/r") == ["ls", "-1A", "--", "/r"]
    assert host_cli.remove_paths("/a", "/b") == ["rm", "-rf", "--", "/a", "/b"]


def test_lock_builders_take_every_value_as_an_argument() -> None:
    argv = acquire_argv("/opt/claudegate/state/lock", "tok", 600, "old")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "claudegate-lock",
        "/opt/claudegate/state/lock",
        "tok",
        "600",
        "old",
    ]
    assert read_argv("/l")[3:] == ["claudegate-lock-read", "/l"]
    assert release_argv("/l", "tok")[3:] == ["claudegate-unlock", "/l", "tok"]


def test_wheel_download_is_for_the_targets_platform(tmp_path: object) -> None:
    from pathlib import Path

    argv = download_argv(Path("/a/requirements.lock"), Path("/cache/x"), "aarch64", python="/venv/bin/python")
    assert argv == [
        "/venv/bin/python", "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
        "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
        "--python-version", "3.11", "--implementation", "cp", "--require-hashes",
        "-r", "/a/requirements.lock", "-d", "/cache/x",
    ]  # fmt: skip


def test_layout_names() -> None:
    layout = HostLayout(root="/srv/cg", prefix="cgtest")
    assert layout.gateway_container("abc") == "cgtest-gateway-abc"
    assert layout.nginx_container == "cgtest-nginx"
    assert layout.internal_network == "cgtest-internal"
    assert layout.journal == "/srv/cg/state/journal.json"
    assert layout.directories()[0].path == "/srv/cg"
    # Secrets: root's, readable through the installation's own system group, never uid 10001's.
    secrets = next(d for d in layout.directories(998) if d.path == layout.secrets)
    assert (secrets.mode, secrets.uid, secrets.gid, secrets.owner) == (0o750, 0, 998, "0:cgtest")
    assert next(d for d in layout.directories() if d.path == layout.secrets).gid == -1
    assert layout.secrets_group == "cgtest"


def test_certbot_runs_without_capabilities_on_the_webroot() -> None:
    from claudegate.deploy.steps.acme import certbot_argv

    argv = certbot_argv(
        image="claudegate/certbot:cccccccccccc", prefix="claudegate", network="claudegate-egress",
        state_dir="/opt/claudegate/shared/letsencrypt", webroot="/opt/claudegate/shared/acme",
        domain="gw.example.com", email="ops@example.com",
        directory="https://acme-v02.api.letsencrypt.org/directory", ca_bundle=False,
    )  # fmt: skip
    assert argv == [
        "docker", "run", "--rm", "--network", "claudegate-egress",
        "--read-only", "--tmpfs", "/var/lib/letsencrypt", "--tmpfs", "/var/log/letsencrypt", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
        "--label", "org.claudegate.instance=claudegate", "--label", "org.claudegate.role=certbot",
        "--volume", "/opt/claudegate/shared/letsencrypt:/etc/letsencrypt:rw",
        "--volume", "/opt/claudegate/shared/acme:/var/www/acme:rw",
        "claudegate/certbot:cccccccccccc", "certonly", "--non-interactive", "--agree-tos",
        "--email", "ops@example.com", "--webroot", "--webroot-path", "/var/www/acme",
        "--domain", "gw.example.com", "--cert-name", "claudegate",
        "--server", "https://acme-v02.api.letsencrypt.org/directory", "--keep-until-expiring",
    ]  # fmt: skip
    with_bundle = certbot_argv(
        image="i", prefix="p", network="n", state_dir="/s", webroot="/w", domain="d.example", email="e@x.io",
        directory="https://ca/dir", ca_bundle=True,
    )  # fmt: skip
    assert (
        with_bundle[with_bundle.index("--env") + 1]
        == "REQUESTS_CA_BUNDLE=/etc/letsencrypt/claudegate-acme-ca.pem"
    )


def test_the_renewer_restore_hook_retries_only_failed_starts_and_never_fails_dockerd() -> None:
    script = renewer_restore.start_failed_renewers_script()
    assert "label=org.claudegate.role=certbot" in script and "{{.State.Error}}" in script
    assert script.rstrip().endswith("exit 0") and "exit 1" not in script
    # The deploy's own start of dockerd (hosts without systemd) runs it in the background.
    start = host_cli.start_docker()
    assert start[-1] == script and 'setsid sh -c "$1"' in start[2]
    install = renewer_restore.install_hook()
    assert install[-2:] == [renewer_restore.HOOK_PATH, renewer_restore.SYSTEMD_DROPIN]
    # systemd: a failing hook ("-" prefix) does not fail docker.service.
    assert f"ExecStartPost=-{renewer_restore.HOOK_PATH}" in install[-3]
