"""``claudegate migrate-state``: a one-host SQLite keystore onto the PostgreSQL that ``state:`` names.

What moves: every client with its scopes, every credential's keyed hash (the
pepper stays the same, so every issued key keeps working), the owned
batches and files, the open batch charges and the daily usage (today's
included). The gateway's own ``migrate-state`` does the copy, in one
PostgreSQL transaction, and refuses a target that holds different data;
this module only brings it the inputs:

1. a consistent snapshot of the live keystore, taken inside the serving
   gateway (the same one ``backup`` takes);
2. a one-off container of the serving gateway's image on the gateway host,
   on the host's network (the gateway itself sits on an internal network),
   as the gateway's uid with its mounts read-only (the pepper, gateway.yaml);
   the PostgreSQL password and the snapshot arrive on its stdin and live in
   its private tmpfs only -- never argv, never a file on the host.

Run it again and nothing is copied twice (a day's usage is the larger of
the two totals, never their sum): run it once before the gateways switch to
``state:`` and once more right after, to carry what was used in between.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from claudegate.backup import keystore_snapshot
from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.containers import GATEWAY_CONFIG
from claudegate.deploy import docker_cli
from claudegate.deploy.docker_cli import GATEWAY_PYTHON
from claudegate.deploy.layout import GATEWAY_GID, GATEWAY_UID, HostLayout
from claudegate.deploy.serving import serving_gateway_container, uses_sudo
from claudegate.deploy.state_host import operator_password, state_endpoints
from claudegate.errors import ClaudegateError, ConfigError
from claudegate.redact import Secret

__all__ = ["MigrateResult", "StateConflictError", "migrate_argv", "migrate_state", "postgres_target"]

#: The gateway's ``migrate-state`` exit status for "the target holds different data".
EXIT_CONFLICT = 4

# Inside the one-off container: stdin is the password (a line), the CA's
# length in bytes (a line; 0: none), the CA, then the snapshot; all go to
# the container's tmpfs (umask 077). The deployed gateway.yaml plus a
# state.postgres section is the config (and state.redis's URL: the gateway's
# config wants both together; the copy itself never talks to Redis).
_SCRIPT = """set -eu
umask 077
IFS= read -r pw
IFS= read -r calen
printf '%s' "$pw" >/tmp/pg_password
if [ "$calen" -gt 0 ]; then head -c "$calen" >/tmp/ca.pem; fi
cat >/tmp/keys.db
{
  cat "$1"
  printf '\\nstate:\\n  postgres:\\n    url: "%s"\\n    password_file: /tmp/pg_password\\n    tls: %s\\n' "$2" "$3"
  if [ "$calen" -gt 0 ]; then printf '    tls_ca_file: /tmp/ca.pem\\n'; fi
  printf '  redis:\\n    url: "%s"\\n' "$5"
} >/tmp/gateway.yaml
exec "$4" -m claudegate_gateway migrate-state --config /tmp/gateway.yaml --from /tmp/keys.db"""


class StateConflictError(ClaudegateError):
    """The target PostgreSQL holds data that differs from this host's keystore; nothing was copied."""


@dataclass(frozen=True)
class MigrateResult:
    source: str
    target: str
    copied: str  # the gateway's own "copied N clients, ..." line

    def text(self) -> str:
        return f"{self.source} -> {self.target}: {self.copied}"


def postgres_target(cfg: DeployConfig) -> tuple[str, Secret, str, bytes]:
    """``(url, password, tls, CA PEM or b"")`` of the PostgreSQL that ``state:`` names (the URL, or the state host's)."""
    state = cfg.state
    if state is None:
        raise ConfigError(
            "state: is not set: there is nowhere to migrate to",
            hint="add state: (host: for claudegate to deploy Redis and PostgreSQL, or redis:/postgres: URLs)",
        )
    if state.host is not None:
        ends = state_endpoints(cfg)
        ca = _read(ends.tls_ca_file, "state_dir/state/ca.pem") if ends.tls_ca_file is not None else b""
        return ends.postgres_url, operator_password(cfg, "postgres"), ends.postgres_tls, ca
    pg = state.postgres
    assert pg is not None  # the model: host, or both URLs
    if pg.password_file is None:
        raise ConfigError("state.postgres.password_file: not set", hint="migrate-state needs the password")
    password = Secret(_read(Path(pg.password_file).expanduser(), "state.postgres.password_file").decode().strip())
    ca = _read(Path(pg.tls_ca_file).expanduser(), "state.postgres.tls_ca_file") if pg.tls_ca_file else b""
    return pg.url, password, pg.tls, ca


def _redis_url(cfg: DeployConfig) -> str:
    assert cfg.state is not None
    if cfg.state.host is not None:
        return state_endpoints(cfg).redis_url
    assert cfg.state.redis is not None
    return cfg.state.redis.url


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def migrate_argv(image: str, serving: str, groups: list[str], url: str, tls: str, redis_url: str) -> list[str]:
    """The one-off container that runs the gateway's ``migrate-state`` (stdin: password line, then the snapshot)."""
    argv = [docker_cli.DOCKER, "run", "--rm", "--interactive", "--network", "host",
            "--user", f"{GATEWAY_UID}:{GATEWAY_GID}"]  # fmt: skip
    for gid in groups:
        argv += ["--group-add", gid]
    argv += ["--volumes-from", f"{serving}:ro", "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=256m",  # noqa: S108
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *docker_cli.LOG_OPTIONS,
             "--entrypoint", "/bin/sh", image, "-c", _SCRIPT, "claudegate-migrate-state",
             GATEWAY_CONFIG, url, tls, GATEWAY_PYTHON[0], redis_url]  # fmt: skip
    return argv


def migrate_state(cfg: DeployConfig, connector: Connector, *, layout: HostLayout | None = None) -> MigrateResult:
    """Copy the deployed one-host keystore into ``state:``'s PostgreSQL; see the module docstring."""
    url, password, tls, ca = postgres_target(cfg)
    connector.add_secret(password)
    layout = layout or HostLayout()
    sudo = uses_sudo(cfg, connector)
    serving = serving_gateway_container(cfg, connector, layout)
    snapshot = keystore_snapshot(cfg, connector, serving)
    inspect = connector.run(
        [docker_cli.DOCKER, "container", "inspect", "--format", "{{json .Config.Image}} {{json .HostConfig.GroupAdd}}",
         serving], sudo=sudo, timeout=60,
    )  # fmt: skip
    image_json, _, groups_json = inspect.text.strip().partition(" ")
    image = str(json.loads(image_json))
    groups = [str(g) for g in (json.loads(groups_json) or [])]
    argv = migrate_argv(image, serving, groups, url, tls, _redis_url(cfg))
    stdin = password.reveal_bytes() + b"\n" + str(len(ca)).encode() + b"\n" + ca + snapshot
    done = connector.run(argv, input=stdin, sudo=sudo, timeout=600, check=False)
    if done.exit_status == EXIT_CONFLICT:
        # The gateway's own line, not the log lines before it.
        lines = connector.redact(done.stderr.decode(errors="replace")).strip().splitlines()
        said = [line for line in lines if line.startswith("claudegate-gateway: ")] or lines[-1:]
        message = said[-1].removeprefix("claudegate-gateway: ") if said else "the target holds different data"
        raise StateConflictError(
            message, hint="point state: at an empty database, or at the one an earlier migrate-state of this host filled"
        )
    if not done.ok:
        connector.raise_failed(argv, done)
    return MigrateResult(connector.target, url, done.text.strip().splitlines()[-1])
