"""deploy.yaml's ``state:`` as the gateway sees it: its secret files on the host and its config section.

The operator's password and CA files (``state.redis.password_file`` ...)
travel to every host's secrets directory like the Anthropic key (root's,
readable by the installation's secrets group), under fixed names
(:mod:`claudegate.containers`); the gateway's ``state:`` section names them
where its container mounts that directory. The URLs carry no password
(the model refuses one), so ``gateway.yaml`` stays free of secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claudegate.containers import GATEWAY_SECRETS, POSTGRES_CA, POSTGRES_PASSWORD, REDIS_CA, REDIS_PASSWORD
from claudegate.errors import ConfigError

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig, StatePostgres, StateRedis

__all__ = ["StateFile", "gateway_state", "state_files"]


@dataclass(frozen=True)
class StateFile:
    """One file of ``state:`` to put on every host: its name there, where it is read here, what it is."""

    name: str
    source: Path
    what: str


def _urls(cfg: DeployConfig) -> tuple[StateRedis, StatePostgres] | None:
    """``state:``'s two engines by URL; ``state.host`` must have been turned into them first."""
    state = cfg.state
    if state is None:
        return None
    if state.redis is None or state.postgres is None:
        # state.host: the deploy swaps in the URLs `claudegate state deploy` recorded
        # (deploy.state_host.as_url_state) before anything reads them here.
        raise ConfigError(
            "state.host: the gateways' Redis and PostgreSQL URLs are known only after the state host is set up",
            hint="run `claudegate state deploy --config ...` first",
        )
    return state.redis, state.postgres


def state_files(cfg: DeployConfig) -> list[StateFile]:
    """The files ``cfg.state`` names, in a fixed order (none without ``state:``)."""
    engines = _urls(cfg)
    if engines is None:
        return []
    redis, postgres = engines
    wanted = [
        (REDIS_PASSWORD, redis.password_file, "the Redis password"),
        (REDIS_CA, redis.tls_ca_file, "the Redis CA certificate"),
        (POSTGRES_PASSWORD, postgres.password_file, "the PostgreSQL password"),
        (POSTGRES_CA, postgres.tls_ca_file, "the PostgreSQL CA certificate"),
    ]
    return [StateFile(name, Path(path), what) for name, path, what in wanted if path is not None]


def gateway_state(cfg: DeployConfig) -> dict[str, Any] | None:
    """The gateway's ``state:`` section (None without ``state:``)."""
    engines = _urls(cfg)
    if engines is None:
        return None
    red, pg = engines
    redis: dict[str, Any] = {"url": red.url, "lease_seconds": red.lease_seconds}
    if red.password_file is not None:
        redis["password_file"] = GATEWAY_SECRETS.file(REDIS_PASSWORD)
    if red.tls_ca_file is not None:
        redis["tls_ca_file"] = GATEWAY_SECRETS.file(REDIS_CA)
    postgres: dict[str, Any] = {
        "url": pg.url, "tls": pg.tls, "cache_entries": pg.cache_entries, "cache_seconds": pg.cache_seconds,
    }  # fmt: skip
    if pg.password_file is not None:
        postgres["password_file"] = GATEWAY_SECRETS.file(POSTGRES_PASSWORD)
    if pg.tls_ca_file is not None:
        postgres["tls_ca_file"] = GATEWAY_SECRETS.file(POSTGRES_CA)
    return {"redis": redis, "postgres": postgres}
