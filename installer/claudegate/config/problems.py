"""Config problems: one line each, ``FILE:LINE:COL: FIELD: problem; fix``.

The bottom of the config package: the model's validators (:func:`fail`),
the rules (:class:`RuleProblem`) and the loader (:class:`Problem`) all say
what is wrong in these terms, so none of them imports another for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic_core import PydanticCustomError

from claudegate.errors import ConfigError

__all__ = ["DeployConfigError", "Loc", "Problem", "RuleProblem", "fail", "format_path", "mask_keys"]

#: A field's path, pydantic style: ``("clients", 1, "rpm")``.
Loc = tuple[str | int, ...]


def fail(problem: str, fix: str | None = None) -> PydanticCustomError:
    """A validation error that says what is wrong and how to fix it.

    The text goes through ``ctx`` (not the template) so braces in values are
    never read as placeholders.
    """
    return PydanticCustomError("claudegate", "{problem}", {"problem": problem, "fix": fix or ""})


@dataclass(frozen=True)
class RuleProblem:
    loc: Loc
    problem: str
    fix: str | None = None


def format_path(loc: Loc) -> str:
    """``('clients', 1, 'rpm')`` -> ``clients[1].rpm`` (list indices count from 0)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(ch.isalnum() or ch in "_-" for ch in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


# Anything shaped like an Anthropic key is masked in every message, whatever put it there.
_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]*")


def mask_keys(text: str) -> str:
    return _KEY_SHAPE.sub("sk-ant-********", text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (file, 1-based line and column), which field, what, the fix.

    ``line``/``column`` are None when the value did not come from a file
    (a model built in code), ``field`` is empty for file-level problems
    (YAML syntax).
    """

    source: str | None
    line: int | None
    column: int | None
    field: str
    problem: str
    fix: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        parts = [p for p in (where, self.field) if p]
        text = ": ".join([*parts, self.problem])
        return f"{text}; {self.fix}" if self.fix else text

    def sort_key(self) -> tuple[int, int, str]:
        return (self.line or 0, self.column or 0, self.field)


class DeployConfigError(ConfigError):
    """A deploy config with one or more problems; ``problems`` lists them sorted by position.

    ``str()`` gives one problem per line, ready for stderr.
    """

    def __init__(self, problems: Iterable[Problem], *, hint: str | None = None) -> None:
        ordered: list[Problem] = []
        masked = (
            replace(p, field=mask_keys(p.field), problem=mask_keys(p.problem), fix=p.fix and mask_keys(p.fix))
            for p in problems
        )
        for problem in sorted(masked, key=Problem.sort_key):
            if problem not in ordered:
                ordered.append(problem)
        self.problems = tuple(ordered)
        super().__init__("\n".join(str(p) for p in self.problems), hint=hint)
