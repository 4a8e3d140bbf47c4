"""Where everything lives on the target host, and what Docker objects are called.

One :class:`HostLayout` names every path under the root (default
``/opt/claudegate``) and every container, network and label of one
installation. The defaults are what a real deploy uses; tests pass another
``root`` and ``prefix`` so a deploy onto this machine's own Docker cannot
touch anything else. Where these directories appear inside the containers
is :mod:`claudegate.containers` (:meth:`HostLayout.mount`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from claudegate.containers import API_KEY, AUDIT_LOG, KEYSTORE, NGINX_RELEASES, PEPPER, Mount

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_ROOT",
    "GATEWAY_GID",
    "GATEWAY_UID",
    "LABEL_GATEWAY",
    "LABEL_INSTANCE",
    "LABEL_ROLE",
    "LABEL_SPEC",
    "NGINX_CONF_DIR",
    "DirSpec",
    "HostLayout",
]

DEFAULT_ROOT = "/opt/claudegate"
DEFAULT_PREFIX = "claudegate"

#: The gateway image's user (see assets/gateway/Dockerfile); its secrets,
#: keystore and audit log belong to it.
GATEWAY_UID = 10001
GATEWAY_GID = 10001

LABEL_INSTANCE = "org.claudegate.instance"
LABEL_ROLE = "org.claudegate.role"
LABEL_GATEWAY = "org.claudegate.gateway"
#: A gateway's replica number, on replicas after the first (``state:``: two per host).
LABEL_REPLICA = "org.claudegate.replica"
#: Hash of the arguments a container was created with: a container whose
#: label differs from what the deploy would create now is recreated.
LABEL_SPEC = "org.claudegate.spec"

#: Where the releases directory appears inside the nginx container.
NGINX_CONF_DIR = NGINX_RELEASES.inside

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class DirSpec:
    """A directory the layout step makes sure of: path, mode, owner.

    ``group`` names a host group instead of a fixed ``gid``: the host gave
    it its number, so ``chown`` is told the name (``gid`` is then what the
    host reported, or -1 while the group does not exist yet).
    """

    path: str
    mode: int
    uid: int = 0
    gid: int = 0
    group: str | None = None

    @property
    def owner(self) -> str:
        return f"{self.uid}:{self.group if self.group is not None else self.gid}"


@dataclass(frozen=True)
class HostLayout:
    """Paths and Docker names of one installation on one host."""

    root: str = DEFAULT_ROOT
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not posixpath.isabs(self.root) or self.root.rstrip("/") != posixpath.normpath(self.root):
            raise ValueError(f"host root {self.root!r} must be a normalised absolute path")
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"instance prefix {self.prefix!r} must be lower-case letters, digits and '-'")

    # -- paths -------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @property
    def releases(self) -> str:
        return self.path("releases")

    def release_dir(self, rid: str) -> str:
        return self.path("releases", rid)

    @property
    def current_link(self) -> str:
        """``releases/current``: the symlink nginx's configuration path goes through."""
        return self.path("releases", "current")

    @property
    def previous_link(self) -> str:
        return self.path("releases", "previous")

    @property
    def gateways(self) -> str:
        return self.path("gateways")

    def gateway_dir(self, gateway_id: str) -> str:
        return self.path("gateways", gateway_id)

    @property
    def secrets(self) -> str:
        return self.path("shared", "secrets")

    @property
    def api_key_file(self) -> str:
        return posixpath.join(self.secrets, API_KEY)

    @property
    def pepper_file(self) -> str:
        return posixpath.join(self.secrets, PEPPER)

    @property
    def tls(self) -> str:
        return self.path("shared", "tls")

    @property
    def data(self) -> str:
        return self.path("shared", "data")

    @property
    def keystore(self) -> str:
        return posixpath.join(self.data, KEYSTORE)

    @property
    def acme_webroot(self) -> str:
        return self.path("shared", "acme")

    @property
    def acme_state(self) -> str:
        """certbot's own directory (account, keys, renewal config)."""
        return self.path("shared", "letsencrypt")

    @property
    def gateway_log(self) -> str:
        return self.path("shared", "log", "gateway")

    @property
    def audit_log(self) -> str:
        return posixpath.join(self.gateway_log, AUDIT_LOG)

    @property
    def state(self) -> str:
        return self.path("state")

    @property
    def journal(self) -> str:
        return self.path("state", "journal.json")

    @property
    def lock_dir(self) -> str:
        return self.path("state", "lock")

    @property
    def secrets_group(self) -> str:
        """The host's system group that may read the secrets (the gateway joins it with --group-add).

        A system group made for this installation, not the image's uid/gid
        10001, which a host account could hold.
        """
        return self.prefix

    def directories(self, secrets_gid: int | None = None) -> list[DirSpec]:
        """Every directory of the layout, parents first, with mode and owner.

        The secrets directory belongs to root and to the installation's
        system group (``secrets_gid``: its number on the host, None while it
        does not exist), which the gateway's container joins: no host account
        can own it. The data and audit log directories belong to the
        gateway's user, which writes them through its mounts.
        """
        uid, gid = GATEWAY_UID, GATEWAY_GID
        return [
            DirSpec(self.root, 0o755),
            DirSpec(self.releases, 0o755),
            DirSpec(self.gateways, 0o755),
            DirSpec(self.path("shared"), 0o755),
            DirSpec(self.secrets, 0o750, 0, -1 if secrets_gid is None else secrets_gid, self.secrets_group),
            DirSpec(self.tls, 0o750),
            DirSpec(self.data, 0o700, uid, gid),
            DirSpec(self.path("shared", "log"), 0o755),
            DirSpec(self.gateway_log, 0o750, uid, gid),
            DirSpec(self.acme_webroot, 0o755),
            DirSpec(self.acme_state, 0o700),
            DirSpec(self.state, 0o700),
        ]

    def mount(self, mount: Mount) -> tuple[str, str, bool]:
        """``(host dir, container dir, read-only)`` of ``mount``, as a container spec lists it."""
        host = getattr(self, mount.host)
        assert isinstance(host, str), mount.host
        return host, mount.inside, mount.read_only

    # -- docker names ------------------------------------------------------
    @property
    def nginx_container(self) -> str:
        return f"{self.prefix}-nginx"

    def gateway_container(self, gateway_id: str, replica: int = 1) -> str:
        """Replica 1 keeps the one-replica name (an upgrade restarts nothing); replica 2 is ``...-r2``."""
        return f"{self.prefix}-gateway-{gateway_id}" + (f"-r{replica}" if replica > 1 else "")

    @staticmethod
    def gateway_alias(gateway_id: str) -> str:
        """The name nginx's upstream uses for a gateway on the internal network."""
        return f"gateway-{gateway_id}"

    @property
    def internal_network(self) -> str:
        return f"{self.prefix}-internal"

    @property
    def egress_network(self) -> str:
        return f"{self.prefix}-egress"

    @property
    def edge_network(self) -> str:
        return f"{self.prefix}-edge"

    @property
    def certbot_container(self) -> str:
        return f"{self.prefix}-certbot"
