"""A "fresh server" for tests: a container running only sshd, with its own IP.

The image (``tests/infra/fresh-server/``) is minimal Debian bookworm with
openssh-server and sudo, a user ``deploy`` with passwordless sudo, no root
login and no passwords. This module builds it if needed (from the
debootstrap-made base image, see ``tests/infra/build-base-image.sh``), starts
it on a private docker network with the flags that let Docker run *inside* it,
and tears everything down again.

Keys are made here with ``cryptography`` rather than inside the container, so
a test knows the server's host-key fingerprint from a trusted source and can
check that the code under test verifies it:

- a client ed25519 key pair, written into the caller's temporary directory
  (private key mode 0600, OpenSSH format);
- the server's ed25519 host key, copied into the container before it starts.

Use as a context manager (pytest: wrap it in a fixture)::

    with start_fresh_server(tmp_path) as server:
        connect(server.host, port=server.port, user=server.user,
                key_filename=server.key_path,
                expected_fingerprint=server.host_key_fingerprint)

or by hand, for poking around (prints an ``ssh`` command line)::

    python -m tests.support.fresh_server

A missing Docker engine is an error here, never a skip: CI starts the engine
with ``tests/infra/start-services.sh``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import os
import secrets
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.parallel import bridge_subnet, worker_index

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "tests" / "infra"
CONTEXT_DIR = INFRA_DIR / "fresh-server"

BASE_IMAGE = os.environ.get("CLAUDEGATE_BASE_IMAGE", "claudegate/debian-base:bookworm")
FRESH_SERVER_IMAGE = os.environ.get("CLAUDEGATE_FRESH_SERVER_IMAGE", "claudegate/fresh-server:bookworm")
#: The same server with docker.io installed (not started): the Dockerfile's ``with-docker`` target.
WITH_DOCKER_IMAGE = f"{FRESH_SERVER_IMAGE}-docker"
CONTEXT_LABEL = "org.claudegate.test.context-sha256"
RESOURCE_LABEL = "org.claudegate.test"

USER = "deploy"

#: What makes Docker work inside the container on this kind of machine
#: (``--privileged`` does not): every capability except SYS_RESOURCE, no
#: seccomp/apparmor confinement, and the host's cgroup tree writable.
DOCKER_IN_DOCKER_RUN_KWARGS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
}
CGROUP_MOUNT = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair in OpenSSH formats."""

    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` exactly as ``ssh-keygen -lf`` prints it."""
        return sha256_fingerprint(self.public_line)


def generate_ed25519(comment: str) -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private, f"{public.decode()} {comment}")


def sha256_fingerprint(public_line: str) -> str:
    """Fingerprint of an OpenSSH public key line, like ``ssh-keygen -lf``."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass
class FreshServer:
    """A running fresh-server container and how to reach it."""

    container_id: str
    name: str
    network: str
    ip: str
    key_path: Path
    client_key: KeyPair
    host_key: KeyPair
    # This machine's own address on the server's network: where a test
    # service listening on 0.0.0.0 (the fake upstream) is reached from it.
    host_address: str = ""
    port: int = 22
    user: str = USER
    _client: Any = field(default=None, repr=False)
    # exec's output directories that a later exec removes (see _exec_files).
    _exec_dirs: list[str] = field(default_factory=list, repr=False)
    _exec_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def host(self) -> str:
        return self.ip

    @property
    def host_key_fingerprint(self) -> str:
        return self.host_key.fingerprint

    @property
    def host_public_key(self) -> str:
        return self.host_key.public_line

    def known_hosts_line(self) -> str:
        key_type, key_b64 = self.host_key.public_line.split()[:2]
        host = self.ip if self.port == 22 else f"[{self.ip}]:{self.port}"
        return f"{host} {key_type} {key_b64}\n"

    def ssh_argv(self, known_hosts: Path, *command: str) -> list[str]:
        """An OpenSSH client command line, for shell pipelines in tests."""
        return [
            "ssh",
            "-i",
            str(self.key_path),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{self.user}@{self.ip}",
            *command,
        ]

    def exec(
        self, argv: list[str], *, user: str = "root", environment: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Run a command through ``docker exec`` (a channel independent of SSH): exit code, stdout+stderr."""
        code, out, _ = self._exec_files(argv, user=user, environment=environment, merge=True)
        return code, out

    def exec_split(
        self, argv: list[str], *, user: str = "root", environment: dict[str, str] | None = None
    ) -> tuple[int, bytes, bytes]:
        """Like :meth:`exec`, with stdout and stderr apart."""
        return self._exec_files(argv, user=user, environment=environment, merge=False)

    def _exec_files(
        self, argv: list[str], *, user: str, environment: dict[str, str] | None, merge: bool
    ) -> tuple[int, bytes, bytes]:
        # docker exec's attached stream drops the output of a command now and then under load
        # (docker-py #2042, moby #27289: a CI run saw `ls` of a full directory come back empty
        # with exit code 0). So the command writes its output to files first, and the wrapper
        # sends them down the stream followed by a marker with the exit code. With the marker
        # there the stream was whole; without it, the files are read through the archive API.
        # Each call's directory is removed by the next call's wrapper (an exec of its own for the
        # removal would double the cost), so only the newest calls' are ever left on the server.
        token = secrets.token_hex(8)
        base = f"/tmp/.fresh-exec-{token}"
        marker = f"\n.fresh-exec-{token}-exit="
        with self._exec_lock:  # only finished calls' directories: another thread's may be in use
            stale, self._exec_dirs[:] = list(self._exec_dirs), []
        err = '2>&1' if merge else '2>"$d/err"'
        script = (
            f'd=$1; m=$2; shift 2; rm -rf {" ".join(stale)}; mkdir -m 777 "$d" || exit 125; '
            f'"$@" >"$d/out" {err} </dev/null; echo $? >"$d/rc"; '
            'cat "$d/out"; [ -f "$d/err" ] && cat "$d/err" >&2; printf "%s%s\\n" "$m" "$(cat "$d/rc")"'
        )
        container = self._client.containers.get(self.container_id)
        result = container.exec_run(["sh", "-c", script, "sh", base, marker, *argv], user=user,
                                    environment=environment, demux=True)  # fmt: skip
        with self._exec_lock:
            self._exec_dirs.append(base)
        out, err_out = (result.output[0] or b""), (result.output[1] or b"")
        at = out.rfind(marker.encode())
        if at >= 0:
            rc = out[at + len(marker):].strip()
            return (int(rc) if rc.isdigit() else int(result.exit_code)), out[:at], err_out
        files = _read_dir(self._client.api, self.container_id, base)  # the stream lost it: the files have it
        rc = files.get("rc", b"").strip()
        return (int(rc) if rc.isdigit() else int(result.exit_code)), files.get("out", b""), files.get("err", b"")

    def refuse_tcp_forwarding(self) -> None:
        """``AllowTcpForwarding no`` in sshd (a common hardening), applied by SIGHUP; SSH answers again after."""
        code, out = self.exec(["sh", "-c",
                               "echo 'AllowTcpForwarding no' > /etc/ssh/sshd_config.d/10-no-forwarding.conf"
                               " && kill -HUP \"$(cat /run/sshd.pid)\""])  # fmt: skip
        assert code == 0, out
        _wait_for_ssh(self.ip, self.port, timeout=30)
        code, out = self.exec(["sshd", "-T"])
        assert code == 0 and b"allowtcpforwarding no" in out.lower(), out[-500:]

    def set_host_key(self, key: KeyPair) -> None:
        """Replace the ed25519 host key and restart sshd (simulates a changed host)."""
        container = self._client.containers.get(self.container_id)
        container.put_archive("/etc/ssh", _host_key_tar(key))
        self.host_key = key
        container.restart(timeout=5)
        _wait_for_ssh(self.ip, self.port, timeout=30)


def _read_dir(api: Any, container_id: str, path: str) -> dict[str, bytes]:
    """The files of a directory in a container (by name), through the archive API; {} when it is not there."""
    try:
        stream, _stat = api.get_archive(container_id, path)
    except docker.errors.APIError:  # NotFound included: the command never made it
        return {}
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                out[member.name.rpartition("/")[2]] = handle.read()
    return out


def docker_client() -> Any:
    """The Docker SDK client; fails loudly (never skips) if no engine answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(
            f"no Docker engine answers ({exc}); start one with tests/infra/start-services.sh"
        ) from exc
    return client


def _context_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(CONTEXT_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(CONTEXT_DIR).as_posix().encode() + b"\0")
            digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    digest.update(BASE_IMAGE.encode())
    return digest.hexdigest()


def ensure_images(client: Any | None = None, *, with_docker: bool = False) -> str:
    """Make sure the base and the fresh-server image exist; return the latter's tag.

    The base comes from ``build-base-image.sh`` (cached rootfs, quick on
    re-run). A fresh-server image is rebuilt only when its build context
    changed (a digest of the context is kept as an image label). With
    ``with_docker`` it is the image that already has docker.io installed,
    built only by the first test that asks for it.
    """
    client = client or docker_client()
    # One builder at a time on this machine: parallel test workers (and other
    # runs) that need the image wait for the first to build it, then find it.
    with open(os.path.join(tempfile.gettempdir(), "claudegate-test-images.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(BASE_IMAGE)
        except docker.errors.ImageNotFound:
            subprocess.run(["bash", str(INFRA_DIR / "build-base-image.sh")], check=True)
        digest = _context_digest()
        tag = _ensure_target(client, FRESH_SERVER_IMAGE, "fresh", digest)
        if with_docker:
            # Built on the image above: docker's layer cache shares its layers.
            tag = _ensure_target(client, WITH_DOCKER_IMAGE, "with-docker", digest)
        return tag


def _ensure_target(client: Any, tag: str, target: str, digest: str) -> str:
    previous = None
    try:
        previous = client.images.get(tag)
        if previous.labels.get(CONTEXT_LABEL) == digest:
            return tag
    except docker.errors.ImageNotFound:
        pass
    client.images.build(
        path=str(CONTEXT_DIR),
        tag=tag,
        target=target,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        labels={CONTEXT_LABEL: digest},
        rm=True,
        forcerm=True,
    )
    if previous is not None:
        # The outdated image is now untagged; drop it unless a container still uses it.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(previous.id)
    return tag


def _tar(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode, uid, gid in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid, info.gid = uid, gid
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _host_key_tar(key: KeyPair) -> bytes:
    return _tar(
        [
            ("ssh_host_ed25519_key", key.private_openssh, 0o600, 0, 0),
            ("ssh_host_ed25519_key.pub", (key.public_line + "\n").encode(), 0o644, 0, 0),
        ]
    )


def _wait_for_ssh(ip: str, port: int, timeout: float) -> None:
    """Wait until sshd sends its banner (a bare TCP accept is not enough)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"sshd on {ip}:{port} did not answer within {timeout:.0f}s ({last})")


def create_bridge(client: Any, name: str, labels: dict[str, str]) -> tuple[Any, str]:
    """A bridge network whose subnet and gateway address the test chooses; (network, gateway).

    Tests reach this machine from containers at the network's gateway
    address. Whether ``docker network inspect`` reports it, and which one
    Docker picks, differs between engine versions (Debian's 20.10 leaves
    ``IPAM.Config[].Gateway`` out for the default bridge), so nothing reads
    it back: the address is set here, and the host holds it on the bridge.
    """
    for _ in range(40):
        subnet, gateway = bridge_subnet()  # this worker's stripe: parallel workers cannot draw the same
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gateway)])
        try:
            network = client.networks.create(name, driver="bridge", ipam=ipam, labels=labels)
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                continue  # another test's network holds this subnet: draw again
            raise
        return network, gateway
    raise RuntimeError(f"no free 10.214.X.0/24 subnet for a test network (worker {worker_index()})")


@contextlib.contextmanager
def start_fresh_server(
    tmp_dir: Path,
    *,
    docker_in_docker: bool = True,
    docker_installed: bool = False,
    client: Any | None = None,
    name_prefix: str = "claudegate-fresh",
    network: tuple[Any, str] | None = None,
) -> Iterator[FreshServer]:
    """Start a fresh server on its own network; remove container, volume and network after.

    ``tmp_dir`` receives the client key (``id_ed25519``, mode 0600, and
    ``id_ed25519.pub``). With ``docker_in_docker`` (the default) the
    container gets the flags Docker needs inside it and a volume for
    ``/var/lib/docker`` (overlay2 cannot sit on the container's own overlay
    root; a real server has it on a plain filesystem too). With
    ``docker_installed`` the server already has docker.io, its engine not
    started: for tests whose subject is not installing Docker (the deploy
    then only starts the engine).
    """
    client = client or docker_client()
    image = ensure_images(client, with_docker=docker_installed)
    suffix = secrets.token_hex(4)
    name = f"{name_prefix}-{suffix}"
    labels = {RESOURCE_LABEL: "fresh-server"}

    client_key = generate_ed25519(f"claudegate-test-{suffix}")
    host_key = generate_ed25519(f"root@{name}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    key_path = tmp_dir / "id_ed25519"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(client_key.private_openssh)
    (tmp_dir / "id_ed25519.pub").write_text(client_key.public_line + "\n")

    # Several servers may share one network (a fleet: ``(network, this machine's address on it)``,
    # from create_bridge); a network given is the caller's to remove.
    own_network = network is None
    bridge, host_address = create_bridge(client, name, labels) if network is None else network
    volume = None
    container = None
    try:
        kwargs: dict[str, Any] = {}
        if docker_in_docker:
            volume = client.volumes.create(name=f"{name}-docker", labels=labels)
            kwargs.update(DOCKER_IN_DOCKER_RUN_KWARGS)
            kwargs["volumes"] = {**CGROUP_MOUNT, volume.name: {"bind": "/var/lib/docker", "mode": "rw"}}
        container = client.containers.create(
            image,
            name=name,
            hostname=name,
            network=bridge.name,
            labels=labels,
            detach=True,
            # /run is a tmpfs on a real server: pid files do not survive a reboot
            # (here: a container restart), so a restarted dockerd is not refused.
            tmpfs={"/run": "rw,exec,nosuid,nodev,mode=755"},
            **kwargs,
        )
        container.put_archive("/etc/ssh", _host_key_tar(host_key))
        container.put_archive(
            "/etc/ssh/authorized_keys",
            _tar([(USER, (client_key.public_line + "\n").encode(), 0o644, 0, 0)]),
        )
        container.start()
        container.reload()
        ip = container.attrs["NetworkSettings"]["Networks"][bridge.name]["IPAddress"]
        if not ip:
            raise RuntimeError(f"container {name} got no IP on network {bridge.name}")
        try:
            _wait_for_ssh(ip, 22, timeout=30)
        except TimeoutError as exc:
            logs = container.logs(tail=40).decode(errors="replace")
            raise TimeoutError(f"{exc}\ncontainer log:\n{logs}") from exc
        yield FreshServer(
            container_id=container.id,
            name=name,
            network=bridge.name,
            ip=ip,
            key_path=key_path,
            client_key=client_key,
            host_key=host_key,
            host_address=host_address,
            _client=client,
        )
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        if volume is not None:
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)
        if own_network:
            with contextlib.suppress(docker.errors.NotFound):
                bridge.remove()


@contextlib.contextmanager
def start_fresh_servers(
    tmp_dir: Path, count: int, *, client: Any | None = None, docker_installed: bool = False
) -> Iterator[list[FreshServer]]:
    """``count`` fresh servers on one bridge network (several hosts of one deployment); all removed after."""
    client = client or docker_client()
    ensure_images(client, with_docker=docker_installed)
    labels = {RESOURCE_LABEL: "fresh-server"}
    network = create_bridge(client, f"claudegate-fleet-{secrets.token_hex(4)}", labels)
    try:
        with contextlib.ExitStack() as stack:
            yield [
                stack.enter_context(
                    start_fresh_server(
                        tmp_dir / f"server{i}", client=client, network=network, docker_installed=docker_installed
                    )
                )
                for i in range(count)
            ]
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            network[0].remove()


def _main() -> None:  # pragma: no cover - manual use
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fresh-server-") as tmp:
        tmp_path = Path(tmp)
        with start_fresh_server(tmp_path) as server:
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(server.known_hosts_line())
            print(f"fresh server {server.name} at {server.ip} (host key {server.host_key_fingerprint})")
            print(" ".join(server.ssh_argv(known_hosts)))
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input("press Enter to tear down ")


if __name__ == "__main__":  # pragma: no cover
    _main()
