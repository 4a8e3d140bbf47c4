"""One ACME certificate for several hosts: who issues, what each host holds, the one-shot commands.

With ``hosts:`` and ``tls.mode: acme`` the first host is the *issuer*: the
fleet's only ACME account, certbot, renewal. Every other host is a
*follower*: its nginx relays the HTTP-01 challenges it cannot answer to the
issuer (``EdgeSettings.acme_relay``), and it installs the certificate the
issuer seals into PostgreSQL (``assets/certbot/claudegate_share.py``: the
table, the checks a follower makes before installing, the rollback guard).

What each host gets, in ``<acme state>/claudegate-share/`` (root's, 0700;
every file 0600; mounted only into the certbot containers, never into the
gateway or nginx):

- ``share.key``: the fleet's share key (32 random bytes, hex), made on this
  side once and kept in ``<state_dir>/acme_share_key`` (0600) like the
  fleet's pepper; the private key is sealed under it in PostgreSQL, so the
  database never holds it in clear;
- ``share.json``: the host's role, the domain, how to reach PostgreSQL;
- ``pg_password`` / ``pg_ca.pem``: copies of the state tier's files (the
  certbot container does not get the gateway's secrets directory, which
  holds the Anthropic key).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from claudegate.containers import CERTBOT_STATE, NGINX_TLS
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import LOG_OPTIONS
from claudegate.deploy.layout import LABEL_INSTANCE, LABEL_ROLE, HostLayout
from claudegate.errors import ConfigError
from claudegate.private_files import write_private
from claudegate.redact import Secret

__all__ = [
    "SHARE_DIR",
    "SHARE_KEY",
    "Role",
    "ShareFile",
    "fleet_share_key",
    "host_role",
    "role",
    "share_argv",
    "share_dir",
    "share_files",
    "share_fingerprint",
    "share_json",
]

Role = Literal["issuer", "follower"]

#: Under certbot's state directory (root's, 0700) on every host.
SHARE_DIR = "claudegate-share"
#: The fleet's share key on the operator side, in ``state_dir``.
SHARE_KEY = "acme_share_key"
#: Exit codes of ``claudegate_share.py`` (keep in step with it).
EXIT_INSTALLED, EXIT_UNCHANGED, EXIT_NOTHING = 0, 3, 4


def role(target: tuple[str, int], fleet: list[tuple[str, int]], *, acme: bool) -> Role | None:
    """``issuer`` for the first of several hosts, ``follower`` for the others, None for one host or no ACME."""
    if not acme or len(fleet) < 2:
        return None
    return "issuer" if target == fleet[0] else "follower"


def host_role(ctx: Context) -> Role | None:
    cfg = ctx.cfg
    return role(
        (cfg.target.host, cfg.target.port), [(h.host, h.port) for h in cfg.fleet], acme=cfg.tls.mode == "acme"
    )


def share_dir(layout: HostLayout) -> str:
    return posixpath.join(layout.acme_state, SHARE_DIR)


def _inside(name: str) -> str:
    return CERTBOT_STATE.file(SHARE_DIR, name)


_SSLMODE = {"disable": "disable", "require": "require", "verify-full": "verify-full"}


def share_json(ctx: Context, host_role: Role) -> bytes:
    state = ctx.cfg.state
    if state is None or state.postgres is None:
        raise ConfigError("tls.mode acme with several hosts shares the certificate through state.postgres")
    pg = state.postgres
    doc = {
        "role": host_role,
        "domain": ctx.cfg.domain,
        "key_file": _inside("share.key"),
        "postgres": {
            "url": pg.url,
            "sslmode": _SSLMODE[pg.tls],
            "password_file": _inside("pg_password") if pg.password_file is not None else None,
            "ca_file": _inside("pg_ca.pem") if pg.tls_ca_file is not None else None,
        },
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def fleet_share_key(ctx: Context) -> Secret | None:
    """The fleet's share key, made here once (None in a dry run that would make it)."""
    path = Path(ctx.cfg.state_dir) / SHARE_KEY
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet's certificate share key {path}: {exc.strerror}") from None
    if not value:
        if ctx.options.dry_run:
            return None
        value = secrets.token_hex(32)
        write_private(path, value.encode() + b"\n")
        ctx.note(f"the fleet's certificate share key is kept in {path} (0600): every host gets the same")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(
            f"{path} is not a share key (64 hex digits)", hint="remove it: the next deploy makes a new one"
        )
    key = Secret(value)
    ctx.connector.add_secret(key)
    return key


@dataclass(frozen=True)
class ShareFile:
    path: str  # on the host
    data: bytes | None  # None: not known in a dry run (the key is made by the real run)
    what: str


def share_files(ctx: Context, host_role: Role) -> list[ShareFile]:
    """What ``claudegate-share/`` must hold on this host (all 0600, root's)."""
    state = ctx.cfg.state
    assert state is not None and state.postgres is not None
    where = share_dir(ctx.layout)
    key = fleet_share_key(ctx)
    files = [
        ShareFile(f"{where}/share.json", share_json(ctx, host_role), f"the certificate share's settings ({host_role})"),
        ShareFile(f"{where}/share.key", None if key is None else key.reveal_bytes() + b"\n",
                  "the fleet's certificate share key"),
    ]  # fmt: skip
    for name, source, what in (
        ("pg_password", state.postgres.password_file, "the PostgreSQL password (for the certificate share)"),
        ("pg_ca.pem", state.postgres.tls_ca_file, "the PostgreSQL CA (for the certificate share)"),
    ):
        if source is None:
            continue
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}") from None
        files.append(ShareFile(f"{where}/{name}", data, what))
    return files


def share_fingerprint(ctx: Context) -> str:
    """16 hex digits over the share's settings, which the renewer reads at its start ("" for one host)."""
    host = host_role(ctx)
    if host is None:
        return ""
    return hashlib.sha256(share_json(ctx, host)).hexdigest()[:16]


def share_argv(
    *, image: str, layout: HostLayout, command: Literal["publish", "sync"], live: str = "", script: str,
) -> list[str]:  # fmt: skip
    """A one-shot ``docker run`` of the share (the deploy's publish on the issuer, sync on a follower).

    The same hardening as the deploy's certbot run; the egress network (the
    state tier is reached as the gateway reaches it); certbot's state and,
    for ``sync``, nginx's TLS directory writable.
    """
    argv = [
        "docker", "run", "--rm", "--network", layout.egress_network,
        "--read-only", "--tmpfs", "/tmp",  # noqa: S108 - a tmpfs private to the container
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *LOG_OPTIONS,
        "--label", f"{LABEL_INSTANCE}={layout.prefix}", "--label", f"{LABEL_ROLE}=certbot",
        "--volume", f"{layout.acme_state}:{CERTBOT_STATE.inside}:rw",
    ]  # fmt: skip
    if command == "sync":
        argv += ["--volume", f"{layout.tls}:{NGINX_TLS.inside}:rw"]
    argv += ["--entrypoint", "python3", image, script, command, "--share", _inside("share.json")]
    argv += ["--live", live] if command == "publish" else ["--tls", NGINX_TLS.inside]
    return argv

