"""Checks of the operator-side files a config names, run by the deploy (not by load/render/plan).

:func:`check_secret_files` looks at the files' metadata only -- existence,
type, owner, mode, size -- and never reads a secret's content, so it can run
before the operator is asked for anything and its messages cannot leak one.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from claudegate.config.load import Origin, problem_at
from claudegate.config.model import DeployConfig, Target
from claudegate.config.problems import DeployConfigError, Problem
from claudegate.config.rules import Loc

__all__ = ["check_secret_files"]


def check_secret_files(cfg: DeployConfig, *, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`DeployConfigError` listing every secret or TLS file that is missing or too open.

    - ``upstream.api_key_file``: a regular, non-empty file of yours, mode 0600
      (or stricter); or ``upstream.api_key_env`` set and non-empty in ``environ``
      (default ``os.environ``);
    - ``tls.key_file`` likewise (0600), ``tls.cert_file`` / ``tls.chain_file`` present;
    - ``target.ssh_key``: present and 0600, as ssh itself insists.
    """
    environ = os.environ if environ is None else environ
    origin = cfg.origin
    problems: list[Problem] = []
    up = cfg.upstream
    if up.api_key_file is not None:
        problems += _secret_file(
            origin, ("upstream", "api_key_file"), up.api_key_file, "the Anthropic API key"
        )
    elif up.api_key_env is not None and not environ.get(up.api_key_env):
        problems.append(
            problem_at(
                origin,
                ("upstream", "api_key_env"),
                f"the environment variable {up.api_key_env} is not set or is empty",
                f"export {up.api_key_env} in the shell that runs claudegate, or use upstream.api_key_file",
            )
        )
    tls = cfg.tls
    if tls.mode == "files":
        if tls.key_file is not None:
            problems += _secret_file(origin, ("tls", "key_file"), tls.key_file, "the TLS private key")
        for name, path in (("cert_file", tls.cert_file), ("chain_file", tls.chain_file)):
            if path is not None:
                problems += _plain_file(origin, ("tls", name), path)
    if cfg.state is not None:
        for engine, section in (("redis", cfg.state.redis), ("postgres", cfg.state.postgres)):
            if section is None:
                continue
            if section.password_file is not None:
                problems += _secret_file(
                    origin, ("state", engine, "password_file"), section.password_file, f"the {engine} password"
                )
            if section.tls_ca_file is not None:
                problems += _plain_file(origin, ("state", engine, "tls_ca_file"), section.tls_ca_file)
    hosts: list[tuple[Loc, Target]] = [(("hosts", i), h) for i, h in enumerate(cfg.hosts)] if cfg.hosts else [(("target",), cfg.target)]
    checked: set[Path] = set()
    for where, host in hosts:
        if host.ssh_key is not None and not host.is_local and host.ssh_key not in checked:
            checked.add(host.ssh_key)  # one line per key file, however many hosts share it
            problems += _secret_file(origin, (*where, "ssh_key"), host.ssh_key, "the SSH private key")
    state_host = cfg.state.host if cfg.state is not None else None
    if state_host is not None and state_host.ssh_key is not None and not state_host.is_local and state_host.ssh_key not in checked:
        problems += _secret_file(origin, ("state", "host", "ssh_key"), state_host.ssh_key, "the SSH private key")
    if problems:
        raise DeployConfigError(problems)


def _stat(
    origin: Origin | None, loc: Loc, path: Path, what: str
) -> tuple[os.stat_result | None, list[Problem]]:
    quoted = shlex.quote(str(path))
    try:
        st = path.stat()
    except FileNotFoundError:
        fix = f"create it: (umask 077; cat > {quoted}), paste {what}, then press Ctrl-D"
        return None, [problem_at(origin, loc, f"{path} does not exist", fix)]
    except PermissionError:
        return None, [
            problem_at(
                origin,
                loc,
                f"{path} cannot be reached (permission denied)",
                "check the directories' permissions",
            )
        ]
    except OSError as exc:
        return None, [problem_at(origin, loc, f"{path} cannot be checked: {exc.strerror}", None)]
    if not stat.S_ISREG(st.st_mode):
        return None, [
            problem_at(origin, loc, f"{path} is not a regular file", f"point it at the file holding {what}")
        ]
    return st, []


def _plain_file(origin: Origin | None, loc: Loc, path: Path) -> Iterator[Problem]:
    st, problems = _stat(origin, loc, path, "the PEM data")
    yield from problems
    if st is not None and not os.access(path, os.R_OK):
        yield problem_at(
            origin,
            loc,
            f"{path} is not readable by you",
            f"check its owner and mode (ls -l {shlex.quote(str(path))})",
        )


def _secret_file(origin: Origin | None, loc: Loc, path: Path, what: str) -> Iterator[Problem]:
    st, problems = _stat(origin, loc, path, what)
    yield from problems
    if st is None:
        return
    quoted = shlex.quote(str(path))
    euid = os.geteuid()
    if euid != 0 and st.st_uid != euid:
        yield problem_at(
            origin,
            loc,
            f"{path} holds {what} but belongs to another user (uid {st.st_uid})",
            f"use a file of your own: (umask 077; cp {quoted} ~/.config/claudegate/) and point to the copy",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        readers = "everyone" if mode & 0o007 else "its group"
        yield problem_at(
            origin,
            loc,
            f"{path} holds {what} but is mode {mode:04o}, readable by {readers}",
            f"run: chmod 600 {quoted}",
        )
    elif not mode & stat.S_IRUSR:
        yield problem_at(
            origin, loc, f"{path} is mode {mode:04o}, not readable by you", f"run: chmod 600 {quoted}"
        )
    elif st.st_size == 0:
        yield problem_at(origin, loc, f"{path} is empty", f"write {what} into it")
