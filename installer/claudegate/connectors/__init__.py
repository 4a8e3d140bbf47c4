"""Connectors: how the core runs commands and writes files on a target.

- :class:`LocalConnector` -- "this machine", via :mod:`subprocess`.
- :class:`SSHConnector` -- a server over SSH (paramiko), with host keys
  verified against the tool's own known_hosts file (strict by default,
  ``accept-new``, or an operator-confirmed ``SHA256:`` fingerprint).

Both implement :class:`Connector`::

    with SSHConnector("gw.example.com", user="deploy", key_filename="~/.ssh/id_ed25519",
                      expected_fingerprint="SHA256:...") as target:
        target.run(["uname", "-m"]).text                 # argv list, never a shell string
        target.run(["tee", "/dev/null"], input=b"...")   # secrets go over stdin ...
        target.put_file("/opt/claudegate/shared/secrets/anthropic_api_key", key.reveal_bytes(), 0o640,
                        owner="0:claudegate", sudo=True)  # ... or into a file, atomically
        target.get_file("/opt/claudegate/state/journal.json")  # -> bytes, or None if missing

Commands are data: playbook steps build argv lists with pure functions
(tested as exact lists); connectors only execute them. The SSH connector
joins argv with :func:`shlex.join` for the remote POSIX shell.

Docker on the target
--------------------
All Docker work on a target goes through the same verified connection, as
the ``docker`` CLI run by the connector::

    target.run(["docker", "create", "--name", name, ...], sudo=True)    # deploy/docker_cli.py builds these
    target.run(["docker", "load"], input=image_tar_stream, sudo=True)   # save|load, streamed
    target.run(["docker", "inspect", name], check=False)                # a fact: parse JSON

We deliberately do *not* use the Docker SDK's ``ssh://`` transport: it opens
its own paramiko connection that reads only ``~/.ssh/config`` and the user's
``~/.ssh/known_hosts`` with paramiko's own policy, so it cannot use this
tool's known_hosts or a fingerprint the operator confirmed, and making it
work would mean weakening host-key checking. The CLI over our connector keeps
one connection, one host-key decision, one sudo story and one place that
redacts errors, and its commands are plain argv lists that tests can assert.
(The product does not use the Docker SDK at all: see docs/deploy.md.)

The SSH names are imported lazily (paramiko takes ~100 ms to import, which
``claudegate --help`` should not pay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claudegate.connectors.base import Connector, Input, Result, get_file_argv, put_file_argv, sudo_argv
from claudegate.connectors.known_hosts import KnownHostsFile, fingerprint_sha256, host_id
from claudegate.connectors.local import LocalConnector

if TYPE_CHECKING:
    from claudegate.connectors.ssh import HostKeyPolicy, SSHConnector, default_known_hosts

__all__ = [
    "Connector",
    "HostKeyPolicy",
    "Input",
    "KnownHostsFile",
    "LocalConnector",
    "Result",
    "SSHConnector",
    "default_known_hosts",
    "fingerprint_sha256",
    "get_file_argv",
    "host_id",
    "put_file_argv",
    "sudo_argv",
]


_LAZY = {"HostKeyPolicy", "SSHConnector", "default_known_hosts"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from claudegate.connectors import ssh

        return getattr(ssh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
