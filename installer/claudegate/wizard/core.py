"""Every call the wizard makes into the core, in one place.

The screens call only this module; it calls the config loader and the
deploy API (the same functions the CLI uses) and turns their answers into
plain values the screens show. It holds no deploy logic and parses no CLI
output. Functions here block (SSH, HTTP): the screens run them in worker
threads, and the questions the core needs answered go through an
:class:`~claudegate.wizard.interaction.Interaction`.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from claudegate.errors import ConfigError
from claudegate.private_files import write_private
from claudegate.redact import Secret

if TYPE_CHECKING:
    from claudegate.config import DeployConfig
    from claudegate.control.progress import StepEvent
    from claudegate.deploy.every_host import EveryHost
    from claudegate.deploy.results import DeployResult, StatusReport
    from claudegate.session import ConnectionReport, Interaction, Session
    from claudegate.smoke import SmokeReport

__all__ = [
    "build_config",
    "check_document",
    "config_yaml",
    "generate_deploy_key",
    "load_document",
    "save",
    "test_connection",
    "verify_upstream_key",
]

#: Lines short enough for the Review screen at 80 columns (a wrapped comment line showed as YAML), and no
#: examples/ path, which a pip install does not have.
YAML_HEADER = """\
# claudegate deploy config, written by `claudegate init`.
# Redeploy:  claudegate deploy --config {path}
# Every key is explained in the example this command writes:
#   claudegate init --example remote --out example.yaml
# The Anthropic key is not in this file: it is read from
# upstream.api_key_file (mode 0600).
"""


# --- the document -----------------------------------------------------------------------------


def check_document(doc: dict[str, Any], *, base_dir: Path | None = None) -> list[tuple[str, str]]:
    """The core's problems with a deploy.yaml document, as (field, "problem; fix") pairs."""
    from claudegate.session.document import validate_document

    return [(p.field, f"{p.problem}; {p.fix}" if p.fix else p.problem) for p in validate_document(doc, base_dir=base_dir)]


def build_config(doc: dict[str, Any], *, base_dir: Path | None = None) -> DeployConfig:
    """The typed config of a document (raises :class:`ConfigError` listing every problem)."""
    from claudegate.session.document import config_from_document

    return config_from_document(doc, base_dir=base_dir)


def config_yaml(doc: dict[str, Any], path: Path) -> str:
    from claudegate.session.document import document_yaml

    return YAML_HEADER.format(path=path) + document_yaml(doc)


def load_document(path: Path) -> tuple[dict[str, Any], DeployConfig]:
    """A saved deploy.yaml: its document (for the form) and its checked config."""
    import yaml

    from claudegate.config import load_config

    cfg = load_config(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return doc, cfg


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte, atomically."""
    write_private(path, data)


def save(doc: dict[str, Any], path: Path, *, upstream_key: Secret | None) -> None:
    """Save the key (0600, where ``upstream.api_key_file`` says) and then deploy.yaml.

    The config is checked first: nothing is written for a document with problems.
    """
    save_problem = where_to_save_problem(path)
    if save_problem is not None:
        raise ConfigError(f"cannot save to {path}: {save_problem[0]}", hint=save_problem[1])
    cfg = build_config(doc, base_dir=path.parent)
    if upstream_key is not None:
        key_file = cfg.upstream.api_key_file
        if key_file is None:
            raise ConfigError("upstream.api_key_file is not set", hint="choose where the key is saved")
        try:
            _write_private(Path(key_file), upstream_key.reveal_bytes() + b"\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the key file {key_file}: {exc.strerror}",
                              hint="choose another Key file on the Upstream screen") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(config_yaml(doc, path), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # gone after the replace; a leftover only after a failure
    except OSError as exc:
        raise ConfigError(f"cannot save to {path}: {exc.strerror}", hint="choose another Save as path") from None


def where_to_save_problem(path: Path) -> tuple[str, str] | None:
    """Why deploy.yaml cannot be saved at ``path`` (problem, fix), before anything is written; else None."""
    if path.is_dir():
        return "it is a directory", f"give a file name, e.g. {path / 'deploy.yaml'}"
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{parent} is a file, not a directory", "choose a path in an existing directory"
    if parent is not None and not os.access(parent, os.W_OK):
        return f"{parent} is not writable", "choose a directory you can write to"
    return None


def default_key_file() -> Path:
    from claudegate.config import config_home

    return config_home() / "anthropic_api_key"


def read_key_file(path: str) -> Secret | None:
    """The key already in ``path`` (for Verify key when nothing was typed), or None."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Secret(text) if text else None


def key_on_file(path: str) -> bool:
    """Whether a key file already exists (then the key box may stay empty); a directory is none."""
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def exists(path: str) -> bool:
    """Whether a file box's text names something that exists (~ expanded)."""
    try:
        return Path(path).expanduser().exists()
    except OSError:
        return True  # cannot tell: say nothing


def open_key_file_problem(path: str) -> str | None:
    """Why the deploy would refuse an existing key file for its mode (group or others may read it), as the
    deploy's own check says it; None when it is private or absent. Made with ``echo KEY > FILE`` it is 0644."""
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode) or not mode & 0o077:
        return None
    readers = "everyone" if mode & 0o007 else "its group"
    return (f"{path} holds the key but is mode {mode:04o}, readable by {readers}, and the deploy refuses it;"
            f" run: chmod 600 {shlex.quote(path)}, or paste the key above to write it again (0600)")


def is_directory(path: str) -> bool:
    """Whether a file box's text names a directory (relative to the current directory, ~ expanded)."""
    try:
        return Path(path).expanduser().is_dir()
    except OSError:
        return False


# --- keys -------------------------------------------------------------------------------------


def public_key_line(path: Path) -> str | None:
    """The public line of an existing key pair (``path`` and ``path.pub``), or None."""
    try:
        if not path.is_file():
            return None
        line = path.with_name(path.name + ".pub").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return line if line.startswith(("ssh-", "ecdsa-", "sk-")) and "\n" not in line else None


def generate_deploy_key(path: Path) -> str:
    """A new ed25519 key pair at ``path`` (0600) and ``path.pub``; returns the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = path.expanduser()
    if path.exists():
        raise ConfigError(f"{path} already exists", hint="choose another file name, or use that key")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode() + " claudegate-deploy"
    _write_private(path, private)
    path.with_name(path.name + ".pub").write_text(line + "\n", encoding="utf-8")
    return line


def verify_upstream_key(base_url: str, key: Secret, *, timeout: float = 10.0) -> tuple[bool, str, str]:
    """One free call (GET /v1/models) from this machine: (works, what happened, how to fix it).

    Never echoes the key, never names an exception class.
    """
    import httpx

    url = base_url.rstrip("/") + "/v1/models"
    try:
        response = httpx.get(
            url,
            headers={"x-api-key": key.reveal(), "anthropic-version": "2023-06-01"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return (False, *_unreachable(url, exc))
    if response.status_code == 200:
        return True, "the key works (GET /v1/models answered 200)", ""
    if response.status_code in (401, 403):
        return (False, f"the API refused the key ({response.status_code})",
                "paste the key again, whole (sk-ant-...), or make a new one in the Anthropic console")
    return (False, f"GET /v1/models answered {response.status_code}",
            "check the API URL; a later try may work if the API is having trouble")


def _unreachable(url: str, exc: Exception) -> tuple[str, str]:
    """A failed request in words, with what to do (never a class name)."""
    import httpx

    text = str(exc).lower()
    if isinstance(exc, httpx.TimeoutException):
        return (f"no answer from {url} in time",
                "check this machine's network (a proxy? set HTTPS_PROXY) and the API URL")
    if isinstance(exc, httpx.ConnectError):
        if "name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
            return (f"the name in {url} does not resolve from this machine",
                    "check the API URL for typos, and this machine's DNS")
        if "certificate" in text or "ssl" in text:
            return (f"the TLS certificate of {url} is not trusted here",
                    "check the API URL; behind an inspecting proxy set SSL_CERT_FILE to its CA")
        if "refused" in text:
            return (f"{url} refused the connection", "check the API URL's host and port")
        return (f"could not connect to {url}", "check this machine's network (a proxy? set HTTPS_PROXY) and the"
                " API URL")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"{url} is not a valid http(s) URL", "give the API URL as https://host"
    return f"the request to {url} failed", "check the API URL and this machine's network"


# --- the session ------------------------------------------------------------------------------


def open_session(
    cfg: DeployConfig, interaction: Interaction, *, progress: Callable[[StepEvent], None] | None = None
) -> Session:
    """One session per config: Test connection, plan and deploy reuse its verified connection."""
    from claudegate.session import Session

    return Session(cfg, interaction, progress=progress)


def test_connection(session: Session) -> ConnectionReport:
    """SSH and the host key (asked through the interaction), sudo, distro, Docker, ports 80/443."""
    _one_host(session)
    return cast("ConnectionReport", session.test_connection())


def _one_host(session: Session) -> None:
    if session.config.several_hosts:
        refuse_several_hosts(session.config, None)


def refuse_several_hosts(cfg: DeployConfig, path: Path | None) -> None:
    """The setup screens edit one host: a file listing several is edited as a file, not half-read here."""
    if not cfg.several_hosts:
        return
    names = ", ".join(t.host for t in cfg.fleet)
    where = str(path) if path is not None else "deploy.yaml"
    raise ConfigError(
        f"{where} lists {len(cfg.fleet)} hosts (hosts: {names}); the setup wizard sets up one host",
        hint=f"edit hosts: and state: in the file itself (docs/multihost.md), then run claudegate plan --config"
        f" {where} and claudegate deploy --config {where}; claudegate console --config {where} opens the"
        " day-2 console on every host",
    )


def plan(session: Session) -> DeployResult:
    _one_host(session)
    return cast("DeployResult", session.plan())


def deploy(session: Session) -> DeployResult:
    """The deploy; asks (through the interaction) before installing Docker or replacing a certificate."""
    _one_host(session)
    return cast("DeployResult", session.deploy())


def cancel(session: Session) -> None:
    """Stop the running method at its next safe point (any thread); the host's journal says where."""
    session.cancel("cancelled in the wizard")


def status(session: Session) -> StatusReport | EveryHost[StatusReport]:
    """Every host's under its own header when the file lists several (``hosts:``)."""
    return session.status()


def list_clients(session: Session) -> str:
    """``claudegate keys list``: the same session method, the same table."""
    from claudegate.keys import clients_table

    table = clients_table(session.list_clients())
    answered = session.answered_by  # several hosts: which one answered
    return table if answered is None else f"{table}\n{answered.note()}"


def create_client(session: Session, entry: dict[str, Any]) -> str:
    """``claudegate keys create`` with the scopes of a ``clients[]`` entry: the key, saved 0600 under keys/."""
    from claudegate.keys import client_spec

    issued = session.create_client(client_spec(**entry))  # checked before connecting
    return (f"created client {issued.name}; its key is shown once (a copy is in {issued.saved_to}, 0600):\n"
            f"{issued.key.reveal()}")


def rotate_client(session: Session, name: str, overlap: str) -> str:
    """``claudegate keys rotate NAME --overlap OVERLAP``: the new key, saved 0600 under keys/."""
    from claudegate.keys import parse_duration

    issued = session.rotate_client(name, overlap_seconds=parse_duration(overlap or "0s", field="overlap"))
    ends = issued.old_keys_end.strftime("%Y-%m-%d %H:%M UTC") if issued.old_keys_end else "now"
    return (f"rotated client {name}; the old key works until {ends}. The new key is shown once (a copy is in"
            f" {issued.saved_to}, 0600):\n{issued.key.reveal()}")


def overlap_problem(text: str) -> str | None:
    """What is wrong with a Rotate overlap as typed (empty is 0s), in the console's words; None if fine."""
    from claudegate.keys import parse_duration

    try:
        parse_duration(text.strip() or "0s", field="overlap")
    except ConfigError as exc:
        return f"{text.strip()!r} is not a duration; {exc.hint}" if exc.hint else str(exc)
    return None


def revoke_client(session: Session, name: str) -> str:
    """``claudegate keys revoke NAME`` (the console asked first)."""
    session.revoke_client(name)
    return f"revoked client {name}"


def usage(session: Session, days: int = 7) -> str:
    """Recent usage per client per day (the last ``days`` UTC days), as ``claudegate usage`` prints it."""
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(days=days - 1)).date()
    report = session.usage(since=since)
    hosts = report.hosts_text()  # several hosts: where the figures come from, and any not counted
    return report.text() if not hosts else f"{report.text()}\n{hosts}"


def backup(session: Session, out: str, passphrase_file: str) -> str:
    """``claudegate backup --out OUT [--passphrase-file FILE]``: what was written."""
    from claudegate.backup import read_passphrase

    if not out:
        raise ConfigError("no backup file given", hint="type where to write it, e.g. gw.cgbackup")
    passphrase = read_passphrase(Path(passphrase_file).expanduser() if passphrase_file else None)
    return session.backup(Path(out).expanduser(), passphrase=passphrase).text()


def restore(session: Session, source: str, passphrase_file: str) -> str:
    """``claudegate restore --from SOURCE``: the session asks first (a dialog here), then restores."""
    from claudegate.backup import read_passphrase

    if not source:
        raise ConfigError("no backup file given", hint="type the file claudegate backup wrote")
    passphrase = read_passphrase(Path(passphrase_file).expanduser() if passphrase_file else None)
    result = session.restore(Path(source).expanduser(), passphrase=passphrase)
    return result.text() + "\nnext: Deploy again (converges the clients, re-keys the smoke test)"


def logs(session: Session, service: str, tail: int = 200) -> str | EveryHost[str]:
    return session.logs(service, tail)


def rollback(session: Session) -> DeployResult | EveryHost[DeployResult]:
    """Several hosts: each in turn, once a dry run showed they all go back to the same release."""
    return session.rollback()


def smoke_test(session: Session) -> SmokeReport | EveryHost[SmokeReport]:
    return session.smoke_test()


def result_text(result: Any, render: Callable[[Any], str]) -> str:
    """A day-2 result as text: one host's with ``render``; several hosts' each under its header, then the
    error naming the hosts that failed."""
    from claudegate.deploy.every_host import EveryHost

    if not isinstance(result, EveryHost):
        return render(result)
    text = result.text(render)
    error = result.error()
    if error is not None:
        # Each failing host said its error under its header already: only the count here.
        text += f"failed: {error.message.splitlines()[0].rstrip(':')}"
    return text


# --- checks the form asks for -----------------------------------------------------------------


def check_tls_files(domain: str, cert_file: Path, key_file: Path, chain_file: Path | None) -> str:
    """The operator's certificate: readable, key matches, not expired, names the domain. Its summary."""
    from claudegate.deploy.tls_material import from_files

    return from_files(domain, cert_file, key_file, chain_file).summary


def resolve(name: str) -> list[str]:
    """The addresses ``name`` resolves to from here (the ACME pre-check compares them with the target)."""
    import socket

    try:
        infos = socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def own_address(host: str, port: int) -> str | None:
    """The address this machine uses to reach ``host`` (what the target sees without NAT). No packet is sent."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except OSError:
        return None
