"""A deploy config built in code (the wizard's form), checked exactly like a file.

A *document* is the plain data a deploy.yaml parses to (dicts, lists, str,
int, bool). :func:`validate_document` returns the same
:class:`~claudegate.config.problems.Problem` list a file gets -- field,
problem, fix -- without file positions, so a form can show each problem next
to its field; :func:`config_from_document` returns the
:class:`~claudegate.config.model.DeployConfig` or raises
:class:`~claudegate.config.problems.DeployConfigError` with those problems;
:func:`document_yaml` is the text to save (it loads back to the same config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claudegate.config.load import validate_data
from claudegate.config.problems import DeployConfigError

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig
    from claudegate.config.problems import Problem

__all__ = ["config_from_document", "document_yaml", "validate_document"]


def config_from_document(
    document: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
) -> DeployConfig:
    """Validate ``document``; relative paths in it are relative to ``base_dir`` (default: the cwd)."""
    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    return validate_data(_plain(document), None, [], base_dir=base)


def validate_document(
    document: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
) -> list[Problem]:
    """Every problem of ``document`` (empty: it is a valid config)."""
    try:
        config_from_document(document, base_dir=base_dir)
    except DeployConfigError as exc:
        return list(exc.problems)
    return []


def document_yaml(document: Mapping[str, Any]) -> str:
    """``document`` as deploy.yaml text (key order kept)."""
    import yaml

    return yaml.safe_dump(_plain(document), sort_keys=False, allow_unicode=True, default_flow_style=False)


def _plain(value: Any) -> Any:
    """Mappings to dicts and tuples to lists, so the document looks exactly like parsed YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
