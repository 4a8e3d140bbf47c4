"""The gateway's wheels, downloaded on the operator side with hash checking.

The target host needs neither PyPI nor a registry: ``pip download`` runs
here, for the *target's* platform (from its ``uname -m``; a laptop on arm64
can deploy to an x86_64 server), checks every file against the hashes in
``requirements.lock``, and the result is cached by the lock's hash and the
architecture, so only the first deploy of a lock pays for the download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from claudegate.connectors.base import stderr_tail
from claudegate.errors import ConfigError, DeployFailed

__all__ = ["PYTHON_VERSION", "cache_root", "download_argv", "ensure_wheelhouse", "normalized_arch", "platform_tags"]

#: The python3 of Debian bookworm, which the gateway image installs from apt.
PYTHON_VERSION = "3.11"

_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def normalized_arch(machine: str) -> str | None:
    """``x86_64`` or ``aarch64`` for a ``uname -m`` or Docker architecture name, None when unsupported."""
    return _ARCHES.get(machine)


def platform_tags(machine: str) -> list[str]:
    """pip ``--platform`` tags for a ``uname -m``: manylinux wheels glibc 2.17+ and 2.28+."""
    arch = _ARCHES.get(machine)
    if arch is None:
        raise ConfigError(
            f"the target's architecture {machine!r} is not supported",
            hint="deploy to an x86_64 or aarch64 (arm64) Linux server",
        )
    return [f"manylinux2014_{arch}", f"manylinux_2_28_{arch}"]


def download_argv(lock: Path, dest: Path, machine: str, *, python: str = sys.executable) -> list[str]:
    """The ``pip download`` command for ``lock`` and the target's architecture."""
    argv = [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    for tag in platform_tags(machine):
        argv += ["--platform", tag]
    argv += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--require-hashes"]
    return [*argv, "-r", str(lock), "-d", str(dest)]


def cache_root() -> Path:
    """``$CLAUDEGATE_WHEELHOUSE_CACHE``, else ``$XDG_CACHE_HOME/claudegate/wheelhouse``."""
    explicit = os.environ.get("CLAUDEGATE_WHEELHOUSE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "claudegate" / "wheelhouse"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    # Two deploys (or test workers) filling the same cache wait for each other.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_wheelhouse(lock: Path, machine: str, *, root: Path | None = None, timeout: float = 600) -> Path:
    """The directory of wheels for ``lock`` on ``machine``, downloading it once."""
    platform_tags(machine)  # an unsupported architecture fails before any download
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    root = root or cache_root()
    final = root / f"{digest}-{_ARCHES[machine]}"
    marker = final / ".complete"
    if marker.exists():
        return final
    with _exclusive(root / f".{final.name}.lock"):
        if marker.exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            result = subprocess.run(
                download_argv(lock, tmp, machine), capture_output=True, timeout=timeout, check=False
            )
            if result.returncode != 0:
                raise DeployFailed(
                    f"downloading the gateway's wheels for {machine} failed:\n{stderr_tail(result.stderr)}",
                    hint="the operator machine needs access to PyPI (or a pip index set in pip.conf)",
                )
            (tmp / ".complete").write_text(digest + "\n")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
