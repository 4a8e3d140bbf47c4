"""``claudegate try``: the whole local stack in front of an echo upstream, with no Anthropic key.

A demo is an ordinary local deploy with three differences, each visible:

- its upstream is the **demo echo upstream**, a separate container named
  ``claudegate-demo-upstream`` (label ``org.claudegate.demo=echo-upstream``)
  that answers ``echo: <your text>`` in the Messages API's shape (see
  ``claudegate_gateway.demo_upstream``). Only this module starts it, and only
  when the operator asked for the demo; a real deploy never falls back to it;
- it is its own installation (prefix ``claudegate-demo``, root
  ``/opt/claudegate-demo``, its own subnet), so it never touches a real local
  deploy, and ``try --stop`` removes exactly it;
- its config, CA and keys live in ``~/.config/claudegate/demo/``.

The echo container runs from the gateway image (``python -m
claudegate_gateway.demo_upstream``): no other image is built. It sits on the
demo's egress network, which is where the gateway looks for its upstream, so
this module makes that network (with the arguments the networks step uses)
and the gateway image (the images step then finds it) before the deploy.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from claudegate.config.model import config_home
from claudegate.connectors.base import stderr_tail
from claudegate.connectors.local import LocalConnector
from claudegate.control.interaction import ConsentQuestion, Interaction
from claudegate.deploy import docker_cli
from claudegate.deploy.base_image import base_image_build_argv
from claudegate.deploy.build_contexts import gateway_context
from claudegate.deploy.layout import LABEL_INSTANCE, HostLayout
from claudegate.deploy.steps.clients import read_saved_key
from claudegate.deploy.steps.images import LABEL_CONTEXT
from claudegate.deploy.wheelhouse import ensure_wheelhouse
from claudegate.errors import Declined, DeployFailed
from claudegate.private_files import write_private
from claudegate.resources import ASSETS_DIR

if TYPE_CHECKING:
    from claudegate.deploy.progress import Reporter
    from claudegate.redact import Secret

__all__ = [
    "DEMO_CLIENT",
    "DEMO_LAYOUT",
    "LOCAL_BASE",
    "PULL_BASE",
    "UPSTREAM_CONTAINER",
    "Demo",
    "DemoResult",
    "base_image_build_argv",
    "upstream_run_argv",
]

DEMO_LAYOUT = HostLayout(root="/opt/claudegate-demo", prefix="claudegate-demo")
UPSTREAM_CONTAINER = "claudegate-demo-upstream"
LABEL_DEMO = "org.claudegate.demo"
DEMO_CLIENT = "demo"
DEMO_SUBNET = "10.213.72.0/28"
#: The upstream key the demo gateway injects; the echo refuses any key without this prefix.
DEMO_KEY_PREFIX = "sk-ant-demo-"
PULL_BASE = "debian:bookworm-slim"
#: What ``assets/base/build-base-image.sh`` (debootstrap, no registry) makes.
LOCAL_BASE = "claudegate/debian-base:bookworm"
BUILD_TIMEOUT = 1200.0
_FORCE_REMOVE_UPSTREAM = [docker_cli.DOCKER, "rm", "--force", UPSTREAM_CONTAINER]


def demo_directory() -> Path:
    return config_home() / "demo"


def upstream_run_argv(image: str, network: str) -> list[str]:
    """``docker run`` of the echo upstream: labelled, on the demo's egress network, nothing published."""
    return [
        docker_cli.DOCKER, "run", "--detach", "--name", UPSTREAM_CONTAINER,
        "--label", f"{LABEL_DEMO}=echo-upstream",
        "--network", network, "--restart", "unless-stopped",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--no-healthcheck",
        "--entrypoint", "/opt/claudegate/venv/bin/python",
        image, "-m", "claudegate_gateway.demo_upstream", "--listen", "0.0.0.0:8080",
    ]  # fmt: skip


def demo_document(*, base_image: str, upstream_key_file: Path, state_dir: Path, sudo: bool) -> dict[str, Any]:
    """The demo's deploy.yaml (written beside its state, so ``status``/``keys`` could read it too)."""
    return {
        "target": {"host": "local", "sudo": sudo},
        "domain": "localhost",
        "tls": {"mode": "internal-ca"},
        "upstream": {
            # The echo container, by its name on the demo's egress network (never api.anthropic.com).
            "base_url": f"http://{UPSTREAM_CONTAINER}:8080",
            "api_key_file": str(upstream_key_file),
        },
        "ports": {"http": 8080, "https": 8443},
        "network": {"subnet": DEMO_SUBNET},
        "clients": [{"name": DEMO_CLIENT, "models": ["*"], "rpm": 60}],
        "images": {"base_image": base_image, "transfer": "build"},
        "state_dir": str(state_dir),
    }


@dataclass(frozen=True)
class DemoResult:
    """What the operator needs to call the demo: URL, CA, a client key (shown once)."""

    url: str
    ca_file: Path
    config: Path
    key: Secret | None
    key_file: Path
    notes: list[str] = field(default_factory=list)

    def snippets(self) -> str:
        key = self.key.reveal() if self.key is not None else f"$(cat {self.key_file})"
        ca = self.ca_file
        return f"""\
curl:
  curl -sS --cacert {ca} {self.url}/v1/messages \\
    -H "x-api-key: {key}" -H "anthropic-version: 2023-06-01" -H "content-type: application/json" \\
    -d '{{"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{{"role": "user", "content": "Hello"}}]}}'

Python (pip install anthropic):
  SSL_CERT_FILE={ca} python3 -c 'import anthropic; c = anthropic.Anthropic(base_url="{self.url}", \\
    api_key="{key}"); print(c.messages.create(model="claude-sonnet-4-6", max_tokens=64, \\
    messages=[{{"role": "user", "content": "Hello"}}]).content[0].text)'

Claude Code:
  ANTHROPIC_BASE_URL={self.url} ANTHROPIC_AUTH_TOKEN={key} NODE_EXTRA_CA_CERTS={ca} claude

The answers come from the demo echo upstream (container {UPSTREAM_CONTAINER}), not from Claude.
Remove everything: claudegate try --stop"""


class Demo:
    """Start and stop the demo through the same core session a deploy uses."""

    def __init__(
        self,
        interaction: Interaction,
        *,
        progress: Reporter | None = None,
        say: Callable[[str], None] = print,
        directory: Path | None = None,
        base_image: str | None = None,
        layout: HostLayout = DEMO_LAYOUT,
    ) -> None:
        self.interaction = interaction
        self.progress = progress
        self.say = say
        self.directory = directory or demo_directory()
        self.base_image = base_image
        self.layout = layout
        self.sudo = os.geteuid() != 0
        self.host = LocalConnector()

    @property
    def config_path(self) -> Path:
        return self.directory / "deploy.yaml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    # -- docker on this machine ------------------------------------------------------
    def _docker(self, argv: list[str], **kwargs: Any) -> Any:
        return self.host.run(argv, sudo=self.sudo, check=False, **kwargs)

    def _has_image(self, ref: str) -> bool:
        return bool(self._docker(docker_cli.image_inspect(ref), timeout=60).ok)

    def _require_docker(self) -> None:
        if shutil.which("docker") is None:
            raise DeployFailed("the demo runs on this machine's Docker, and there is no docker command",
                               hint="install Docker (Debian/Ubuntu: apt-get install docker.io), then re-run")  # fmt: skip
        probe = self._docker(docker_cli.docker_info(), timeout=60)
        if not probe.ok:
            raise DeployFailed(f"Docker is not usable here: {stderr_tail(probe.stderr)}",
                               hint="start dockerd (or join the docker group / allow sudo), then re-run")  # fmt: skip

    # -- the base image ----------------------------------------------------------------
    def ensure_base_image(self) -> str:
        """A Debian base on this machine: present, pulled, or (with a yes) built with debootstrap."""
        if self.base_image is not None:
            if not self._has_image(self.base_image) and not self._pull(self.base_image):
                raise DeployFailed(f"the base image {self.base_image} is not here and cannot be pulled",
                                   hint=f"leave out --base-image to be offered a local build ({LOCAL_BASE})")  # fmt: skip
            return self.base_image
        for ref in (PULL_BASE, LOCAL_BASE):
            if self._has_image(ref):
                self.say(f"base image: {ref} (already on this machine)")
                return ref
        if self._pull(PULL_BASE):
            return PULL_BASE
        return self.build_base_image(LOCAL_BASE)

    def _pull(self, ref: str) -> bool:
        self.say(f"base image: pulling {ref}")
        pulled = self._docker(docker_cli.image_pull(ref), timeout=600)
        if not pulled.ok:
            last = (stderr_tail(pulled.stderr).strip().splitlines() or ["no reason given"])[-1]
            self.say(f"base image: cannot pull {ref}: {last}")
        return bool(pulled.ok)

    def build_base_image(self, tag: str) -> str:
        """Build ``tag`` with debootstrap from the Debian mirror, after a yes (it needs root and ~2 minutes)."""
        question = ConsentQuestion(
            topic="build-base-image",
            target="this machine",
            detail=f"no image registry answered; build the base image {tag} here with debootstrap "
            "from the Debian mirror (root, about 2 minutes, ~120 MB)",
        )
        if not self.interaction.consent(question):
            raise Declined(f"{question.text()} -- answered no", flag=question.flag,
                           hint=f"make a base image yourself and pass --base-image REF, or re-run with {question.flag}")  # fmt: skip
        if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
            raise DeployFailed("debootstrap is not installed",
                               hint="apt-get install debootstrap (Debian/Ubuntu), then re-run")  # fmt: skip
        cache = Path("/var/cache/claudegate/base") if not self.sudo else Path.home() / ".cache" / "claudegate" / "base"
        self.say(f"base image: building {tag} with debootstrap (cache {cache})")
        built = self.host.run(base_image_build_argv(tag, cache), sudo=self.sudo, check=False, timeout=BUILD_TIMEOUT)
        if not built.ok:
            raise DeployFailed(f"building {tag} with debootstrap failed:\n{stderr_tail(built.stderr)}",
                               hint="check that deb.debian.org (or $DEBIAN_MIRROR) is reachable")  # fmt: skip
        return tag

    # -- what the demo adds to a local deploy ----------------------------------------
    def _ensure_gateway_image(self, base: str) -> str:
        context = gateway_context()
        tag = context.tag(base)
        if self._has_image(tag):
            return tag
        self.say(f"building the gateway image {tag} (the echo upstream runs from it too)")
        wheels = ensure_wheelhouse(ASSETS_DIR / "gateway" / "requirements.lock", platform.machine())
        argv = docker_cli.build_image(tag, base_image=base, labels={LABEL_CONTEXT: context.digest(base)})
        built = self._docker(argv, input=context.tar(wheels), timeout=BUILD_TIMEOUT)
        if not built.ok:
            raise DeployFailed(f"building {tag} failed:\n{stderr_tail(built.stderr)}")
        return tag

    def _ensure_egress_network(self) -> str:
        # Exactly what the networks step creates, so the deploy finds it as its own.
        name = self.layout.egress_network
        if not self._docker(docker_cli.network_inspect(name), timeout=60).ok:
            made = self._docker(docker_cli.network_create(name, labels={LABEL_INSTANCE: self.layout.prefix}), timeout=60)
            if not made.ok:
                raise DeployFailed(f"creating the network {name} failed: {stderr_tail(made.stderr)}")
        return name

    def _ensure_upstream(self, image: str, network: str) -> None:
        found = self._docker(docker_cli.container_inspect(UPSTREAM_CONTAINER), timeout=60)
        if found.ok and image in found.text and '"Running": true' in found.text:
            return
        if found.ok:
            self._docker(_FORCE_REMOVE_UPSTREAM, timeout=60)
        self.say(f"starting the demo echo upstream ({UPSTREAM_CONTAINER}; answers 'echo: ...', not Claude)")
        started = self._docker(upstream_run_argv(image, network), timeout=120)
        if not started.ok:
            raise DeployFailed(f"starting {UPSTREAM_CONTAINER} failed: {stderr_tail(started.stderr)}")

    def _write_config(self, base: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_file = self.directory / "demo_upstream_key"
        if not key_file.exists():
            write_private(key_file, (DEMO_KEY_PREFIX + secrets.token_hex(16) + "\n").encode(), exclusive=True)
        doc = demo_document(base_image=base, upstream_key_file=key_file, state_dir=self.state_dir, sudo=self.sudo)
        header = (
            f"# {self.config_path}: the claudegate demo (claudegate try), written by it.\n"
            f"# Its upstream is the demo echo container {UPSTREAM_CONTAINER}, NOT the Anthropic API.\n"
            "# Remove the demo with: claudegate try --stop\n"
        )
        self.config_path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
        return self.config_path

    def _installed(self) -> bool:
        """Anything of the demo installation on this machine: a container or network of its prefix, or its root."""
        names = self._docker([docker_cli.DOCKER, "ps", "--all", "--format", "{{.Names}}"], timeout=60).text.split()
        names += self._docker([docker_cli.DOCKER, "network", "ls", "--format", "{{.Name}}"], timeout=60).text.split()
        return any(n.startswith(self.layout.prefix + "-") for n in names) or Path(self.layout.root).exists()

    def _stand_in_config(self) -> Any:
        from claudegate.config import load_config_text

        doc = demo_document(base_image=PULL_BASE, upstream_key_file=self.directory / "demo_upstream_key",
                            state_dir=self.state_dir, sudo=self.sudo)  # fmt: skip
        return load_config_text(yaml.safe_dump(doc), source="(the demo's config, rebuilt)")

    # -- the two commands ------------------------------------------------------------
    def start(self) -> DemoResult:
        from claudegate.config import load_config
        from claudegate.session.core import Session

        self._require_docker()
        base = self.ensure_base_image()
        config = self._write_config(base)
        image = self._ensure_gateway_image(base)
        self._ensure_upstream(image, self._ensure_egress_network())
        cfg = load_config(config)
        with Session(cfg, self.interaction, progress=self.progress, layout=self.layout) as session:
            result = session.deploy()
        key = result.new_client_keys.get(DEMO_CLIENT)
        key_file = self.state_dir / "keys" / f"{DEMO_CLIENT}.key"
        notes = []
        if key is None:
            key = read_saved_key(self.state_dir / "keys", DEMO_CLIENT)
            notes.append(f"the demo was already running; its key is the one saved in {key_file}")
        return DemoResult(
            url="https://localhost:8443", ca_file=self.state_dir / "ca.pem", config=config,
            key=key, key_file=key_file, notes=notes,
        )  # fmt: skip

    def stop(self) -> list[str]:
        """Remove the echo container, the demo installation (with its data) and the demo's directory."""
        from claudegate.config import load_config
        from claudegate.session.core import Session

        done: list[str] = []
        if self._docker(docker_cli.container_inspect(UPSTREAM_CONTAINER), timeout=60).ok:
            removed = self._docker(_FORCE_REMOVE_UPSTREAM, timeout=120)
            if not removed.ok:
                raise DeployFailed(f"removing {UPSTREAM_CONTAINER} failed: {stderr_tail(removed.stderr)}")
            done.append(f"removed the container {UPSTREAM_CONTAINER}")
        if self.config_path.exists() or self._installed():
            # Without its config (a deleted directory) the demo is still found by its own prefix and root.
            cfg = load_config(self.config_path) if self.config_path.exists() else self._stand_in_config()
            with Session(cfg, self.interaction, progress=self.progress, layout=self.layout) as session:
                session.uninstall(keep_data=False)
            done.append(f"uninstalled the demo stack ({self.layout.prefix}-*, {self.layout.root})")
        # The egress network outlives an uninstall when a deploy never ran on it.
        if self._docker(docker_cli.network_inspect(self.layout.egress_network), timeout=60).ok:
            self._docker(docker_cli.network_remove(self.layout.egress_network), timeout=60)
            done.append(f"removed the network {self.layout.egress_network}")
        if self.directory.exists():
            shutil.rmtree(self.directory)
            done.append(f"removed {self.directory} (config, CA, keys)")
        return done

