"""The SSH connector against the fresh-server container (needs a Docker engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from claudegate.connectors import SSHConnector
from claudegate.errors import CommandFailed, ConnectionFailed
from tests.support.fresh_server import FreshServer, start_fresh_server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshServer]:
    with start_fresh_server(tmp_path_factory.mktemp("fresh-server")) as fresh:
        yield fresh


def connect(server: FreshServer, known_hosts: Path, **overrides: object) -> SSHConnector:
    options: dict[str, object] = {
        "port": server.port,
        "user": server.user,
        "key_filename": server.key_path,
        "known_hosts": known_hosts,
        "expected_fingerprint": server.host_key_fingerprint,
        "use_agent": False,
        "look_for_keys": False,
        "connect_timeout": 10.0,
    }
    options.update(overrides)
    return SSHConnector(server.host, **options)  # type: ignore[arg-type]


def test_uname_and_sudo_over_ssh(server: FreshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with connect(server, known_hosts) as target:
        assert target.run(["uname", "-m"]).text.strip() in {"x86_64", "aarch64"}
        assert target.run(["id", "-un"]).text == "deploy\n"
        assert target.prepare_argv(["id", "-u"], sudo=True) == ["sudo", "-n", "--", "id", "-u"]
        assert target.run(["id", "-u"], sudo=True).text == "0\n"
        # A root-owned secret file, written through sudo, atomically and 0600.
        target.run(["mkdir", "-p", "/etc/claudegate"], sudo=True)
        target.put_file("/etc/claudegate/upstream.key", b"sk-ant-test", 0o600, owner="root:root", sudo=True)
        assert target.get_file("/etc/claudegate/upstream.key", sudo=True) == b"sk-ant-test"
    code, out = server.exec(["stat", "-c", "%a %U %G", "/etc/claudegate/upstream.key"])
    assert (code, out) == (0, b"600 root root\n")
    assert known_hosts.read_text() == server.known_hosts_line()


def test_get_file_permissions_over_ssh(server: FreshServer, tmp_path: Path) -> None:
    with connect(server, tmp_path / "known_hosts") as target:
        target.put_file("/root-only", b"x", 0o600, sudo=True)
        with pytest.raises(CommandFailed, match="Permission denied"):
            target.get_file("/root-only")  # exists but unreadable: an error, not "missing"
        assert target.get_file("/root-only", sudo=True) == b"x"


def test_root_login_is_refused(server: FreshServer, tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailed, match="authentication"):
        connect(server, tmp_path / "known_hosts", user="root").connect()


@pytest.mark.e2e
def test_docker_start_and_image_load_over_the_connector(tmp_path: Path) -> None:
    """The recipe the deploy needs on a host without systemd, end to end over our connector.

    apt-get install docker.io does not start the engine here (invoke-rc.d: no
    runlevel) and Debian's /etc/init.d/docker fails in this container (its
    ``ulimit -n 1048576`` needs CAP_SYS_RESOURCE), so the engine is started
    with start-stop-daemon, compatible with that init script's pid file. The
    server comes with docker.io installed by that apt-get (the image's
    ``with-docker`` target); the deploy's own install runs in the fresh-server
    deploy module.
    """
    import subprocess
    import time

    from tests.support.fresh_server import BASE_IMAGE

    with start_fresh_server(tmp_path / "srv", docker_installed=True) as fresh, \
            connect(fresh, tmp_path / "known_hosts") as target:  # fmt: skip
        assert target.run(["test", "-x", "/usr/sbin/dockerd"], check=False).exit_status == 0
        assert target.run(["docker", "info"], sudo=True, check=False).exit_status != 0, "not started by apt"
        target.run(
            ["start-stop-daemon", "--start", "--background", "--make-pidfile",
             "--pidfile", "/var/run/docker-ssd.pid", "--output", "/var/log/docker.log",
             "--exec", "/usr/sbin/dockerd", "--", "-p", "/var/run/docker.pid"],
            sudo=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while target.run(["docker", "info"], sudo=True, check=False).exit_status != 0:
            assert time.monotonic() < deadline, target.get_file("/var/log/docker.log", sudo=True)
            time.sleep(0.2)
        driver = target.run(["docker", "info", "--format", "{{.Driver}}"], sudo=True).text.strip()
        assert driver == "overlay2"
        with subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE) as save:
            assert save.stdout is not None
            target.run(["docker", "load"], input=save.stdout, sudo=True, timeout=300)
        assert save.returncode == 0
        out = target.run(["docker", "run", "--rm", BASE_IMAGE, "cat", "/etc/debian_version"], sudo=True)
        assert out.text.startswith("12.")
