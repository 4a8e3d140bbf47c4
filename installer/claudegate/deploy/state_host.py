"""The state tier on a host of its own: Redis and PostgreSQL that claudegate deploys (``state.host``).

Separate from the gateway's playbook on purpose: the fleet deploy calls
:func:`deploy_state_host` before it rolls the gateways, and
:func:`state_endpoints` tells it what to write into their ``state:`` section.

What ends up on the host (over the verified SSH connection, as for a gateway):

- two images built ``FROM images.base_image`` with Debian's ``redis-server``
  and ``postgresql`` packages (``assets/state/``), named by their build
  context's hash, so a second run builds nothing;
- two containers on the host's network stack (``--network host``) that
  listen on the private address only (``BIND``; never 0.0.0.0, never a
  published port that Docker's NAT would also answer on other addresses),
  every capability dropped, read-only root, restarted unless stopped;
- their data on named volumes (``claudegate-state-redis``,
  ``claudegate-state-postgres``), kept across re-creates and upgrades;
- their passwords: generated here once, kept in ``state_dir/state/`` (0600)
  and in ``/opt/claudegate-state/secrets`` on the host (0600, owned by the
  engine's fixed uid), mounted read-only. A changed password re-creates the
  container (its hash is part of the container's spec label).

The private address is ``state.host.private_address``, or the host's one
private IPv4 address that is not a Docker network's (several: the operator
must name one).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from claudegate.config.model import DeployConfig, SharedState, StateHost, StatePostgres, StateRedis
from claudegate.connectors.base import Connector
from claudegate.control.progress import Reporter, null_reporter
from claudegate.deploy import docker_cli
from claudegate.deploy.base_image import pull_or_build
from claudegate.deploy.build_contexts import BuildContext
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call, Change, Put, Run, Step, run_steps
from claudegate.deploy.facts import parse_container, parse_sha256
from claudegate.deploy.host_cli import ensure_dir, file_sha256
from claudegate.deploy.image_send import send_image
from claudegate.deploy.layout import LABEL_INSTANCE, LABEL_ROLE, DirSpec, HostLayout
from claudegate.deploy.steps.host import ConnectStep, DockerStep
from claudegate.deploy.steps.images import operator_has_image
from claudegate.deploy.tls_material import TLSMaterial, internal_ca
from claudegate.errors import ConfigError, DeployFailed
from claudegate.private_files import write_private
from claudegate.redact import Secret
from claudegate.resources import ASSETS_DIR

__all__ = [
    "ENGINES",
    "StateEndpoints",
    "StateEngine",
    "addresses_fact",
    "as_url_state",
    "deploy_state_host",
    "dump_postgres",
    "engine_spec",
    "operator_password",
    "pick_private_address",
    "restore_postgres",
    "state_endpoints",
]

HOST_ROOT = "/opt/claudegate-state"
HOST_SECRETS = f"{HOST_ROOT}/secrets"
INSTANCE = "claudegate-state"
LABEL_SECRET = "org.claudegate.secret-sha256"  # noqa: S105 - a label name, no secret
ENDPOINTS_FILE = "endpoints.json"


@dataclass(frozen=True)
class StateEngine:
    """One of the two engines: its image, uid, data volume and health probe."""

    name: str  # redis | postgres
    uid: int  # fixed in its image (assets/state/*.Dockerfile): owns the password file on the host
    data: str  # the named volume's mount point inside the container
    #: Run inside the container (sh -c): exits 0 once the engine answers with the password.
    probe: str

    @property
    def container(self) -> str:
        return f"{INSTANCE}-{self.name}"

    @property
    def volume(self) -> str:
        return f"{INSTANCE}-{self.name}"

    @property
    def secret_on_host(self) -> str:
        return f"{HOST_SECRETS}/{self.name}_password"

    @property
    def secret_in_container(self) -> str:
        return f"/run/secrets/{self.name}_password"

    @property
    def tls_on_host(self) -> tuple[str, str]:
        """(certificate chain, private key) on the host, each the engine's own copy (PostgreSQL owns its key)."""
        return f"{HOST_SECRETS}/{self.name}_tls.crt", f"{HOST_SECRETS}/{self.name}_tls.key"

    def context(self) -> BuildContext:
        state = ASSETS_DIR / "state"
        return BuildContext(
            f"state-{self.name}",
            {
                "Dockerfile": (state / f"{self.name}.Dockerfile").read_bytes(),
                f"{self.name}-start.sh": (state / f"{self.name}-start.sh").read_bytes(),
            },
        )


# The probes read the password from the mounted file into the client's own
# environment variable inside the container: never argv, never `docker exec -e`.
REDIS = StateEngine(
    "redis", 10003, "/var/lib/redis",
    "REDISCLI_AUTH=$(cat /run/secrets/redis_password) exec redis-cli ${TLS:+--tls --cacert /run/secrets/tls.crt}"
    ' --no-auth-warning -h "$BIND" -p "$PORT" ping',
)  # fmt: skip
POSTGRES = StateEngine(
    "postgres", 10002, "/var/lib/postgresql/data",
    "PGPASSWORD=$(cat /run/secrets/postgres_password) exec /usr/local/lib/pgbin/psql -h \"$BIND\" -p \"$PORT\" -U claudegate"
    " -d claudegate -Atc 'SELECT 1'",
)  # fmt: skip
ENGINES = (REDIS, POSTGRES)


# pg_dump / pg_restore of the claudegate database, run inside the PostgreSQL
# container (its own binaries: the server's version), over the private address
# with the password from the mounted file. The dump is PostgreSQL's custom
# format on stdout; the restore reads it on stdin and replaces what is there,
# in one transaction (a failed restore leaves the database as it was).
_PG_DUMP = (
    'PGPASSWORD=$(cat /run/secrets/postgres_password) exec /usr/local/lib/pgbin/pg_dump -h "$BIND" -p "$PORT"'
    " -U claudegate -d claudegate --format=custom --no-owner"
)
_PG_RESTORE = (
    'PGPASSWORD=$(cat /run/secrets/postgres_password) exec /usr/local/lib/pgbin/pg_restore -h "$BIND" -p "$PORT"'
    " -U claudegate -d claudegate --clean --if-exists --single-transaction --no-owner --exit-on-error"
)


def pg_dump_argv() -> list[str]:
    return docker_cli.exec_in(POSTGRES.container, ["sh", "-c", _PG_DUMP])


def pg_restore_argv() -> list[str]:
    return docker_cli.exec_in(POSTGRES.container, ["sh", "-c", _PG_RESTORE], stdin=True)


def dump_postgres(cfg: DeployConfig, connector: Connector) -> bytes:
    """``pg_dump`` of the state host's database (custom format); ``connector`` reaches ``state.host``."""
    sudo = bool(_host(cfg).sudo) and not connector.is_root
    done = connector.run(pg_dump_argv(), sudo=sudo, timeout=900, check=False)
    if not done.ok or not done.stdout.startswith(b"PGDMP"):
        connector.raise_failed(pg_dump_argv(), done)
    return done.stdout


def restore_postgres(cfg: DeployConfig, connector: Connector, dump: bytes) -> None:
    """Load a :func:`dump_postgres` dump into the state host's database, replacing what it holds."""
    if not dump.startswith(b"PGDMP"):
        raise ConfigError("the PostgreSQL dump is not pg_dump's custom format; nothing was restored")
    sudo = bool(_host(cfg).sudo) and not connector.is_root
    connector.run(pg_restore_argv(), input=dump, sudo=sudo, timeout=900)


def _host(cfg: DeployConfig) -> StateHost:
    if cfg.state is None or cfg.state.host is None:
        raise ConfigError(
            "state.host is not set: there is no state host to deploy",
            hint="add state: {host: {host: ..., user: ...}} to deploy.yaml (docs/deploy.md, 'Shared state')",
        )
    return cfg.state.host


def state_config(cfg: DeployConfig) -> DeployConfig:
    """``cfg`` seen from the state host: its ``target`` is ``state.host`` (SSH, sudo, known_hosts)."""
    return cfg.model_copy(update={"target": _host(cfg)})


# -- operator side: passwords and endpoints ----------------------------------------


def operator_dir(cfg: DeployConfig) -> Path:
    return Path(cfg.state_dir) / "state"


def operator_password(cfg: DeployConfig, engine: str, *, create: bool = False) -> Secret:
    """The engine's password from ``state_dir/state/<engine>_password`` (0600), made once when ``create``."""
    path = operator_dir(cfg) / f"{engine}_password"
    if not path.exists():
        if not create:
            raise ConfigError(f"{path} does not exist", hint="run `claudegate state deploy --config ...` first")
        # URL-safe letters only: the start scripts refuse anything else (it ends up in a SQL string).
        write_private(path, (secrets.token_urlsafe(32) + "\n").encode(), exclusive=True)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others", hint=f"chmod 600 {path}")
    return Secret(path.read_text().strip())


@dataclass(frozen=True)
class StateEndpoints:
    """What a gateway needs for ``state:``: the URLs and the operator-side password files."""

    address: str
    redis_port: int
    postgres_port: int
    redis_password_file: Path
    postgres_password_file: Path
    #: With ``state.host.tls``: the private CA (state_dir/state/ca.pem) both certificates chain to.
    tls_ca_file: Path | None = None

    @property
    def redis_url(self) -> str:
        return f"{'rediss' if self.tls_ca_file else 'redis'}://{self.address}:{self.redis_port}/0"

    @property
    def postgres_tls(self) -> str:
        return "verify-full" if self.tls_ca_file else "disable"

    @property
    def postgres_url(self) -> str:
        return f"postgresql://claudegate@{self.address}:{self.postgres_port}/claudegate"


def state_endpoints(cfg: DeployConfig) -> StateEndpoints:
    """The endpoints the last ``state deploy`` recorded (the address may have been detected on the host)."""
    host = _host(cfg)
    path = operator_dir(cfg) / ENDPOINTS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"{path} is missing or unreadable", hint="run `claudegate state deploy --config ...` first"
        ) from None
    return StateEndpoints(
        address=str(recorded["address"]),
        redis_port=host.redis_port,
        postgres_port=host.postgres_port,
        redis_password_file=operator_dir(cfg) / "redis_password",
        postgres_password_file=operator_dir(cfg) / "postgres_password",
        tls_ca_file=operator_dir(cfg) / "ca.pem" if host.tls else None,
    )


def as_url_state(cfg: DeployConfig) -> SharedState:
    """``state.host`` as the URL form (what the fleet deploy already knows how to roll out).

    After :func:`deploy_state_host`: ``cfg.model_copy(update={"state": as_url_state(cfg)})`` is the
    config whose gateways use the state host, with the generated password files and (TLS) its CA.
    """
    ends = state_endpoints(cfg)
    redis = StateRedis(url=ends.redis_url, password_file=ends.redis_password_file, tls_ca_file=ends.tls_ca_file)
    postgres = StatePostgres(
        url=ends.postgres_url, password_file=ends.postgres_password_file, tls=ends.postgres_tls,  # type: ignore[arg-type]
        tls_ca_file=ends.tls_ca_file,
    )  # fmt: skip
    return SharedState(redis=redis, postgres=postgres)


# -- facts and decisions ---------------------------------------------------------------

# The host's IPv4 addresses (hostname is Essential in Debian: always there),
# then the subnets of Docker's own networks (their bridges hold addresses that
# are private too, and must never be picked).
_ADDRESSES = """hostname -I
echo ---
ids=$(docker network ls -q)
[ -z "$ids" ] || docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' $ids"""


def addresses_fact() -> list[str]:
    return ["sh", "-c", _ADDRESSES]


def pick_private_address(text: str, named: ipaddress.IPv4Address | None, where: str) -> str:
    """The address to listen on, from :func:`addresses_fact`'s output; a clear error when there is none."""
    mine, _, nets = text.partition("---")
    docker_nets = []
    for word in nets.split():
        try:
            docker_nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    addresses = []
    for word in mine.split():
        try:
            addr = ipaddress.ip_address(word)
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv4Address):
            addresses.append(addr)
    if named is not None:
        if named not in addresses:
            raise ConfigError(
                f"state.host.private_address: {named} is not an address of {where}"
                f" (it has {', '.join(map(str, addresses)) or 'none'})",
                hint="name one of the host's own private addresses",
            )
        return str(named)
    private = [
        a for a in addresses
        if a.is_private and not a.is_loopback and not a.is_link_local and not any(a in n for n in docker_nets)
    ]  # fmt: skip
    if len(private) != 1:
        found = ", ".join(map(str, private)) or "none"
        raise ConfigError(
            f"state.host: cannot choose the private address of {where} (private addresses: {found})",
            hint="set state.host.private_address to the address the gateway hosts reach it on",
        )
    return str(private[0])


def engine_spec(
    engine: StateEngine, image: str, address: str, port: int, secret_digest: str, tls_digest: str | None = None
) -> docker_cli.ContainerSpec:
    """The container of one engine: host network, listening on ``address`` only, data on its named volume.

    ``tls_digest`` (a hash of the certificate and key): TLS on, with the engine's copies mounted.
    """
    mounts = [(engine.volume, engine.data, False), (engine.secret_on_host, engine.secret_in_container, True)]
    labels = {
        LABEL_INSTANCE: INSTANCE,
        LABEL_ROLE: f"state-{engine.name}",
        LABEL_SECRET: secret_digest,
        "org.claudegate.bind": f"{address}:{port}",
    }
    if tls_digest is not None:
        cert, key = engine.tls_on_host
        mounts += [(cert, "/run/secrets/tls.crt", True), (key, "/run/secrets/tls.key", True)]
        labels["org.claudegate.tls"] = tls_digest
    return docker_cli.ContainerSpec(
        name=engine.container,
        image=image,
        # The host's network stack: the engine binds the private address
        # itself (no NAT rule that could answer on another address).
        network="host",
        user=f"{engine.uid}:{engine.uid}",
        tmpfs=("/tmp:rw,noexec,nosuid,size=16m",),  # noqa: S108 - private to the container
        mounts=tuple(mounts),
        memory="1g",
        cpus="1.0",
        args=(),
        labels=labels,
    )


def create_argv(spec: docker_cli.ContainerSpec, address: str, port: int) -> list[str]:
    """``docker create`` for ``spec`` with where to listen (``BIND``/``PORT``, ``TLS``; not secret) in its environment."""
    argv = docker_cli.create_container(spec)
    at = argv.index(spec.image)
    env = ["--env", f"BIND={address}", "--env", f"PORT={port}"]
    if "org.claudegate.tls" in spec.labels:
        env += ["--env", "TLS=1"]
    return [*argv[:at], *env, *argv[at:]]


# -- the steps ------------------------------------------------------------------------------


@dataclass
class StateRun:
    """What the steps find out and share (the gateway's Context knows nothing of the state tier)."""

    address: str = ""
    passwords: dict[str, Secret] = field(default_factory=dict)
    tls: TLSMaterial | None = None  # state.host.tls: the private CA's server certificate for the address

    def tls_files(self) -> tuple[bytes, bytes] | None:
        return (self.tls.fullchain, self.tls.privkey) if self.tls is not None else None


class AddressStep(Step):
    name = "state-address"
    title = "The private address Redis and PostgreSQL listen on"

    def plan(self, ctx: Context) -> list[Change]:
        run: StateRun = self.options["run"]
        host = ctx.cfg.target
        assert isinstance(host, StateHost)
        text = ctx.fact(addresses_fact(), sudo=True).text
        run.address = pick_private_address(text, host.private_address, ctx.connector.target)
        ctx.note(f"Redis on {run.address}:{host.redis_port}, PostgreSQL on {run.address}:{host.postgres_port} only")
        return []


class PasswordsStep(Step):
    name = "state-passwords"
    title = "Passwords (0600, here and on the host)"

    def plan(self, ctx: Context) -> list[Change]:
        run: StateRun = self.options["run"]
        changes: list[Change] = []
        if not ctx.fact(["test", "-d", HOST_SECRETS]).ok:
            changes.append(Change(f"create {HOST_SECRETS} (root's, 0700)",
                                  (Run(tuple(ensure_dir(DirSpec(HOST_ROOT, 0o755)))),
                                   Run(tuple(ensure_dir(DirSpec(HOST_SECRETS, 0o700)))))))  # fmt: skip
        host = ctx.cfg.target
        assert isinstance(host, StateHost)
        if host.tls and run.tls is None and not ctx.options.dry_run:
            # A private CA for this address only (name-constrained to it), made once in state_dir/state.
            run.tls = internal_ca(operator_dir(self.options["cfg"]), run.address)
        wanted: dict[str, tuple[str, bytes, int]] = {}
        for engine in ENGINES:
            wanted[engine.secret_on_host] = (engine.name, (run.passwords[engine.name].reveal() + "\n").encode(), engine.uid)
            files = run.tls_files()
            if files is not None:
                for path, data in zip(engine.tls_on_host, files, strict=True):
                    wanted[path] = (engine.name, data, engine.uid)
        on_host = parse_sha256(ctx.fact(file_sha256(list(wanted))).text)
        for path, (name, data, uid) in wanted.items():
            if on_host.get(path) != hashlib.sha256(data).hexdigest():
                changes.append(Change(f"write {path} (the {name} secret, 0600)", (Put(path, data, 0o600, f"{uid}:{uid}"),)))
        if host.tls and run.tls is None:
            changes.append(Change("make the private CA and the TLS certificate for the private address"))
        return changes


def _ensure_base(ctx: Context, *, base: str) -> None:
    if ctx.fact(docker_cli.image_inspect(base)).ok:
        return
    if not ctx.cfg.target.is_local and operator_has_image(base):
        send_image(ctx, base)  # no registry needed: the operator's own base goes over the connection
    else:
        pull_or_build(ctx, base)


class StateImagesStep(Step):
    name = "state-images"
    title = "Redis and PostgreSQL images (Debian's packages, FROM images.base_image)"

    def plan(self, ctx: Context) -> list[Change]:
        base = ctx.cfg.images.base_image
        changes: list[Change] = []
        for engine in ENGINES:
            context = engine.context()
            tag = context.tag(base)
            if ctx.fact(docker_cli.image_inspect(tag)).ok:
                continue
            build = docker_cli.build_image(tag, base_image=base, labels={"org.claudegate.context": context.digest(base)})
            changes.append(Change(f"build {tag}", (
                Call(f"{base} on the host", functools.partial(_ensure_base, base=base)),
                Run(tuple(build), input=context.tar(), timeout=1200, progress=f"building {context.name}"),
            )))  # fmt: skip
        return changes


class StateContainersStep(Step):
    name = "state-containers"
    title = "Redis and PostgreSQL containers"

    def plan(self, ctx: Context) -> list[Change]:
        run: StateRun = self.options["run"]
        host = ctx.cfg.target
        assert isinstance(host, StateHost)
        changes: list[Change] = []
        for engine in ENGINES:
            port = host.redis_port if engine is REDIS else host.postgres_port
            digest = hashlib.sha256(run.passwords[engine.name].reveal_bytes()).hexdigest()[:16]
            files = run.tls_files()
            tls_digest = hashlib.sha256(b"".join(files)).hexdigest()[:16] if files is not None else None
            if host.tls and files is None:
                tls_digest = "to-be-made"  # a dry run: the certificate is made by a real one
            image = engine.context().tag(ctx.cfg.images.base_image)
            spec = engine_spec(engine, image, run.address, port, digest, tls_digest)
            found = parse_container(ctx.fact(docker_cli.container_inspect(engine.container)).text)
            create = (Run(tuple(create_argv(spec, run.address, port))), Run(tuple(docker_cli.container_start(spec.name))))
            if found is None:
                changes.append(Change(f"create and start {spec.name} on {run.address}:{port}", create))
            elif found.labels.get("org.claudegate.spec") != spec.digest():
                # The data is on the named volume: a re-create keeps it.
                changes.append(Change(f"re-create {spec.name} (image, address or password changed)",
                                      (Run(tuple(docker_cli.container_remove(spec.name))), *create)))  # fmt: skip
            elif not found.running:
                changes.append(Change(f"start {spec.name}", (Run(tuple(docker_cli.container_start(spec.name))),)))
        return changes


def _answering(ctx: Context, engine: StateEngine) -> bool:
    return ctx.fact(docker_cli.exec_in(engine.container, ["sh", "-c", engine.probe]), timeout=20).ok


class StateReadyStep(Step):
    name = "state-ready"
    title = "Redis and PostgreSQL answer with their passwords"

    def perform(self, ctx: Context) -> None:
        deadline = time.monotonic() + 90
        for engine in ENGINES:
            while not _answering(ctx, engine):
                if time.monotonic() > deadline:
                    logs = ctx.fact(docker_cli.container_logs(engine.container, tail=30))
                    tail = ctx.connector.redact((logs.stdout + logs.stderr).decode(errors="replace")[-1500:])
                    raise DeployFailed(f"{engine.container} does not answer on the private address:\n{tail}")
                ctx.work(f"waiting for {engine.name}")
                ctx.sleep(0.5)


@dataclass(frozen=True)
class StateDeployResult:
    target: str
    endpoints: StateEndpoints
    changes: tuple[str, ...]
    dry_run: bool

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def text(self) -> str:
        e = self.endpoints
        done = "would change" if self.dry_run else "changed"
        lines = [f"state host {self.target}: {done} {len(self.changes)}" + (": " if self.changes else " (no changes)")]
        lines += [f"  - {c}" for c in self.changes]
        lines.append(f"  Redis: {e.redis_url} (password: {e.redis_password_file})")
        lines.append(f"  PostgreSQL: {e.postgres_url} (password: {e.postgres_password_file}, tls: {e.postgres_tls})")
        if e.tls_ca_file is not None:
            lines.append(f"  CA for both (tls_ca_file): {e.tls_ca_file}")
        return "\n".join(lines)


def state_steps(run: StateRun, cfg: DeployConfig) -> Sequence[Step]:
    return [
        ConnectStep(),
        DockerStep(),
        AddressStep(run=run),
        PasswordsStep(run=run, cfg=cfg),
        StateImagesStep(),
        StateContainersStep(run=run),
        StateReadyStep(),
    ]


def deploy_state_host(
    cfg: DeployConfig, connector: Connector, *, dry_run: bool = False, reporter: Reporter | None = None
) -> StateDeployResult:
    """Deploy (or converge) Redis and PostgreSQL on ``state.host``; ``connector`` reaches that host.

    Idempotent: a second run changes nothing. The passwords are made on the
    first run and then only read; the address used is recorded in
    ``state_dir/state/endpoints.json`` for :func:`state_endpoints`.
    """
    host = _host(cfg)
    run = StateRun()
    for engine in ENGINES:
        if dry_run:
            run.passwords[engine.name] = _existing_or_placeholder(cfg, engine.name)
        else:
            run.passwords[engine.name] = operator_password(cfg, engine.name, create=True)
        connector.add_secret(run.passwords[engine.name])
    ctx = Context(cfg=state_config(cfg), connector=connector, layout=HostLayout(),
                  options=RunOptions("state", dry_run=dry_run), reporter=reporter or null_reporter)  # fmt: skip
    outcomes = run_steps(ctx, state_steps(run, cfg))
    endpoints = StateEndpoints(
        run.address, host.redis_port, host.postgres_port,
        operator_dir(cfg) / "redis_password", operator_dir(cfg) / "postgres_password",
        operator_dir(cfg) / "ca.pem" if host.tls else None,
    )  # fmt: skip
    if not dry_run:
        write_private(operator_dir(cfg) / ENDPOINTS_FILE, json.dumps({"address": run.address}).encode())
    changes = tuple(c.summary for o in outcomes for c in o.changes)
    return StateDeployResult(connector.target, endpoints, changes, dry_run)


def _existing_or_placeholder(cfg: DeployConfig, engine: str) -> Secret:
    try:
        return operator_password(cfg, engine)
    except ConfigError:
        return Secret(secrets.token_urlsafe(32))  # a dry run writes nothing: the plan shows the password as new
