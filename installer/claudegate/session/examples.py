"""The commented example configs (``examples/*.yaml``), shipped inside the wheel.

``claudegate init --example local|remote`` writes one of them; the wizard
starts its form from the same text. They live under ``share/claudegate/examples``
in an installed wheel (see :mod:`claudegate.resources`).
"""

from __future__ import annotations

import os
from pathlib import Path

from claudegate.errors import ConfigError
from claudegate.resources import EXAMPLES_DIR

__all__ = ["EXAMPLES", "example_path", "example_text", "write_example"]

#: Name -> what it is for (one line, for --help and the wizard).
EXAMPLES: dict[str, str] = {
    "local": "this machine, with a private CA (a trial, or a server you are logged into)",
    "remote": "a server over SSH, every key documented",
}


def example_path(name: str) -> Path:
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example {name!r}", hint=f"use one of: {', '.join(EXAMPLES)}")
    path = EXAMPLES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"the example {name} is missing from this installation ({path})",
            hint="reinstall claudegate (the wheel carries share/claudegate/examples)",
        )
    return path


def example_text(name: str) -> str:
    return example_path(name).read_text(encoding="utf-8")


#: How each example's header names its own file, in the commands it shows.
_SELF_NAMES = {"local": "examples/local.yaml", "remote": "remote.yaml"}


def header_for(text: str, name: str, path: Path) -> str:
    """The example's text with the commands in its header naming ``path``, where it is written."""
    return text.replace(f"--config {_SELF_NAMES[name]}", f"--config {path}")


def write_example(name: str, out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write example ``name`` to ``out`` (0644); refuses to overwrite a file unless ``force``."""
    path = Path(out)
    text = header_for(example_text(name), name, path)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; nothing was written", hint="choose another --out, or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
    return path
