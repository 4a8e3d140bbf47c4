"""Config problems: one line each, ``FILE:LINE:COL: FIELD: problem; fix``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from claudegate.errors import ConfigError

__all__ = ["DeployConfigError", "Problem", "mask_keys"]


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
