"""The secrets a deploy with ``state:`` adds on every host: the state tier's files and one pepper.

- ``state.*.password_file`` and ``tls_ca_file`` go to the host's secrets
  directory like the Anthropic key (root's, 0640, the secrets group), compared
  by hash so they never travel back.
- Client keys are stored in PostgreSQL as HMACs keyed with the pepper, and
  any host may check any key: every host needs the same pepper. The fleet's
  pepper is kept on the operator side (``<state_dir>/key_pepper``, 0600). The
  first deploy takes it from the first host when that host already has one
  (a one-host installation growing into several: keys copied with
  ``migrate-state`` keep working), else makes a new one; every host whose
  pepper differs gets the fleet's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from claudegate.config.state_files import state_files
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Change, Put
from claudegate.deploy.secret_inputs import new_pepper
from claudegate.errors import ConfigError
from claudegate.private_files import write_private
from claudegate.redact import Secret

__all__ = ["FLEET_PEPPER", "fleet_pepper", "state_file_changes"]

#: The fleet's pepper on the operator side, in ``state_dir``.
FLEET_PEPPER = "key_pepper"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_file_changes(
    ctx: Context, digests: dict[str, str], *, mode: int, owner: str, wanted_ok: dict[str, bool]
) -> list[Change]:
    """Uploads of the ``state:`` files that are missing, different, or have the wrong mode/owner."""
    changes: list[Change] = []
    for item in state_files(ctx.cfg):
        path = f"{ctx.layout.secrets}/{item.name}"
        try:
            data = item.source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {item.what} from {item.source}: {exc.strerror}") from None
        if item.name.endswith("password"):
            ctx.connector.add_secret(Secret(data.decode(errors="replace").strip()))
        if digests.get(path) == _sha(data) and wanted_ok.get(path, False):
            continue
        what = "replace" if path in digests else "upload"
        changes.append(Change(f"{what} {item.what} ({path}, {mode:04o})", (Put(path, data, mode, owner),)))
    return changes


def state_paths(ctx: Context) -> list[str]:
    return [f"{ctx.layout.secrets}/{item.name}" for item in state_files(ctx.cfg)]


def fleet_pepper(ctx: Context, *, host_has_one: bool) -> Secret | None:
    """The pepper every host must hold (None in a dry run that would take or make it)."""
    path = Path(ctx.cfg.state_dir) / FLEET_PEPPER
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet's client-key pepper {path}: {exc.strerror}") from None
    if value:
        return Secret(value)
    if ctx.options.dry_run:
        return None
    if host_has_one:
        data = ctx.read_file(ctx.layout.pepper_file) or b""
        value = data.decode(errors="replace").strip()
    pepper = Secret(value) if value else new_pepper()
    ctx.connector.add_secret(pepper)
    write_private(path, pepper.reveal_bytes() + b"\n")
    ctx.note(f"the fleet's client-key pepper is kept in {path} (0600): every host gets the same")
    return pepper


def pepper_change(ctx: Context, digests: dict[str, str], *, mode: int, owner: str, exists: bool) -> list[Change]:
    """With ``state:``: the host's pepper becomes the fleet's (when it differs)."""
    pepper = fleet_pepper(ctx, host_has_one=exists)
    path = ctx.layout.pepper_file
    if pepper is None:
        return [] if exists else [Change(f"create the fleet's client-key pepper ({path}, {mode:04o})")]
    data = pepper.reveal_bytes()
    if digests.get(path) == _sha(data):
        return []
    verb = "replace the host's client-key pepper with the fleet's" if exists else "upload the fleet's client-key pepper"
    return [Change(f"{verb} ({path}, {mode:04o})", (Put(path, data, mode, owner),))]


def state_fingerprint(cfg_files: list[Path]) -> str:
    """16 hex digits over the ``state:`` files' contents: a new password makes a new gateway (read at start)."""
    sha = hashlib.sha256(b"claudegate-state-files-v1\0")
    for path in cfg_files:
        try:
            data = path.read_bytes()
        except OSError:
            data = b"unreadable"
        sha.update(len(data).to_bytes(8, "big") + data)
    return sha.hexdigest()[:16]
