"""Playbooks: the ordered step lists in ``playbooks/*.yaml``.

::

    name: deploy
    description: From nothing (or any earlier release) to a smoke-tested release.
    steps:
      - connect
      - lock
      - step: smoke          # the long form, for options
        with: {}

Every name must be a step of :data:`claudegate.deploy.steps.STEP_TYPES`;
a playbook that names an unknown step, or is not shaped like this, is a
:class:`~claudegate.errors.ConfigError` naming the file and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from claudegate.deploy.engine import Step
from claudegate.deploy.steps.registry import STEP_TYPES
from claudegate.errors import ConfigError
from claudegate.resources import PLAYBOOKS_DIR

__all__ = ["PLAYBOOKS_DIR", "Playbook", "StepRef", "load_playbook"]

#: ``<repo>/playbooks`` in a source checkout (next to ``assets/``).


@dataclass(frozen=True)
class StepRef:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Playbook:
    name: str
    description: str
    steps: tuple[StepRef, ...]
    source: Path

    def build(self) -> list[Step]:
        return [STEP_TYPES[ref.name](**ref.options) for ref in self.steps]


def _fail(source: Path, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {problem}", hint=fix)


def load_playbook(name: str, directory: Path | None = None) -> Playbook:
    source = (directory or PLAYBOOKS_DIR) / f"{name}.yaml"
    try:
        raw = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise _fail(source, f"cannot read the playbook ({exc.strerror})", "reinstall claudegate") from None
    except yaml.YAMLError as exc:
        raise _fail(source, f"not valid YAML ({exc})", "fix the syntax") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise _fail(
            source, "a playbook is a mapping with a non-empty 'steps' list", "see playbooks/deploy.yaml"
        )
    unknown = set(raw) - {"name", "description", "steps"}
    if unknown:
        raise _fail(source, f"unknown keys {sorted(unknown)}", "use only name, description and steps")
    refs: list[StepRef] = []
    for index, item in enumerate(raw["steps"]):
        if isinstance(item, str):
            ref = StepRef(item)
        elif isinstance(item, dict) and isinstance(item.get("step"), str) and set(item) <= {"step", "with"}:
            options = item.get("with") or {}
            if not isinstance(options, dict):
                raise _fail(source, f"steps[{index}].with must be a mapping", "write with: {key: value}")
            ref = StepRef(item["step"], {str(k): v for k, v in options.items()})
        else:
            raise _fail(
                source,
                f"steps[{index}] is neither a step name nor {{step: NAME, with: {{...}}}}",
                "write the step's name",
            )
        if ref.name not in STEP_TYPES:
            close = difflib.get_close_matches(ref.name, sorted(STEP_TYPES), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known steps: {', '.join(sorted(STEP_TYPES))}"
            raise _fail(source, f"steps[{index}]: unknown step {ref.name!r}", hint)
        refs.append(ref)
    return Playbook(str(raw.get("name", name)), str(raw.get("description", "")), tuple(refs), source)
