"""One deployed stack on a fresh server, shared by the end-to-end modules that need *a* deployment.

A fresh deploy (Docker installed on an sshd-only server, images sent, a
smoke test) costs half a minute or more; the audit and day-2 modules each
paid it for a stack that is not what they test. They share this one instead
(the ``shared_stack`` session fixture of ``tests/deploy/conftest.py``).

How they share it (``tests/conftest.py`` enforces the first two):

- one pytest-xdist group, so the stack is deployed once per run and not once
  per worker;
- a fixed order of modules, ``STACK_MODULES`` in tests/conftest.py: the modules that leave the
  stack as deployed come first, the chains that change it for good come after;
- a test that changes the stack and is not in a module ordered after it
  restores it (:meth:`Stack.restore`) before it ends.

Any module runs alone as well: the fixture then deploys the stack for it.

Not here: the ACME renewal module (its first deploy is a *fresh* server's,
failed on purpose, which must still save the client keys it issued; it then
restarts dockerd), the fresh-server, local and multi-host modules (the
install path is what they test) and the wizard's (the wizard makes the
deploy.yaml).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
from typer.testing import CliRunner, Result

from claudegate.cli import app
from claudegate.config import DeployConfig
from claudegate.deploy.api import connector_for, deploy
from tests.deploy.support import fresh_server_and_fake, fresh_server_doc, sdk_client, timer, write_config
from tests.support.fake_anthropic import FakeProcess
from tests.support.fresh_server import FreshServer

#: The upstream key, which must never show up in anything the tool prints.
CANARY = "sk-ant-api03-CANARY-" + secrets.token_hex(20)
#: The fake upstream's pause between streamed events (a test that slows it puts this back).
EVENT_DELAY = 0.01

runner = CliRunner()


def stack_clients(team_a_rpm: int = 600, *, with_old: bool = True) -> list[dict[str, Any]]:
    """The stack's clients (``deploy.yaml``: the defaults), or the day-2 tests' variants of them."""
    clients: list[dict[str, Any]] = [{"name": "team-a", "models": ["claude-haiku-*"], "rpm": team_a_rpm}]
    if with_old:
        clients.append({"name": "old-team"})
    return clients


@dataclass
class Stack:
    """The shared server, its fake upstream, the directory of its deploy.yaml and state, its keys."""

    server: FreshServer
    fake: FakeProcess
    dir: Path
    base: dict[str, Any]
    #: The keys the stack's first deploy issued (client name -> key).
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.dir / "deploy.yaml"

    def write(self, name: str = "deploy.yaml", **sections: Any) -> tuple[Path, DeployConfig]:
        """The base config with ``sections`` replaced, written as ``name`` beside deploy.yaml."""
        doc = {**self.base, **sections}
        cfg = write_config(self.dir, doc, name)
        return self.dir / name, cfg

    def cli(self, *args: str, config: Path | None = None) -> Result:
        path = config or self.config_path
        return runner.invoke(app, [*args, "--config", str(path)])

    def sdk(self, key: str) -> anthropic.Anthropic:
        return sdk_client(self.server.ip, 443, self.dir / "state" / "ca.pem", key)

    def ask(self, key: str, model: str = "claude-haiku-4-5") -> anthropic.types.Message:
        return self.sdk(key).messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "reply with 3 words"}]
        )

    def restore(self) -> None:
        """Deploy the base config again (deploy.yaml rewritten from it): the stack as the fixture left it."""
        _path, cfg = self.write()
        with connector_for(cfg) as connector:
            result = deploy(cfg, connector)
        assert result.smoke is not None and result.smoke.ok, result.smoke.table() if result.smoke else None


@contextlib.contextmanager
def deployed_stack(directory: Path) -> Iterator[Stack]:
    """A fresh server with the base config deployed and smoke-tested; everything removed after."""
    # Docker is already installed (not started): installing it is the fresh-server module's subject.
    with fresh_server_and_fake(
        directory, CANARY, name_prefix="claudegate-stack", event_delay=EVENT_DELAY, docker_installed=True
    ) as (server, fake):
        # Short client timeouts: the audit's slow-client probes wait them out.
        limits = {"per_ip": {"rate": "50r/s", "burst": 40}, "timeouts": {"client_header": 4, "client_body": 4}}
        base = fresh_server_doc(server, directory, fake, CANARY, clients=stack_clients(), limits=limits)
        stack = Stack(server, fake, directory, base)
        _path, cfg = stack.write()
        with timer() as took, connector_for(cfg) as connector:
            result = deploy(cfg, connector)
        print(f"\nshared stack: fresh deploy in {took['seconds']:.1f}s")
        assert result.smoke is not None and result.smoke.ok, result.smoke.table() if result.smoke else None
        stack.keys = {name: key.reveal() for name, key in result.new_client_keys.items()}
        yield stack
