"""The Anthropic model names the tool knows, and whether a client's model glob can ever match one.

A client's ``models`` globs are matched by the gateway with
:func:`fnmatch.fnmatchcase`. A typo in a glob (``claud-*``,
``claude-sonet-*``) does not fail anywhere: the key is simply refused for
every model, which looks like a gateway fault. So a glob must match at
least one name below, or be shaped like a later release of a known family
(``claude-<family>...`` with the family spelled right), since models are
released after this list was written and must not need a new claudegate.
"""

from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase

__all__ = ["FAMILIES", "KNOWN_MODELS", "close_model", "unknown_model_problem"]

#: Model ids and aliases as Anthropic lists them (aliases first: they are what people type).
KNOWN_MODELS: tuple[str, ...] = (
    "claude-opus-4-6", "claude-sonnet-4-6",
    "claude-opus-4-5", "claude-opus-4-5-20251101",
    "claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5", "claude-haiku-4-5-20251001",
    "claude-opus-4-1", "claude-opus-4-1-20250805",
    "claude-opus-4-0", "claude-opus-4-20250514",
    "claude-sonnet-4-0", "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219",
    "claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20240620",
    "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022",
    "claude-3-opus-latest", "claude-3-opus-20240229",
    "claude-3-haiku-20240307",
)

#: Model families: ``claude-<family>-...`` (or ``claude-<version>-<family>...``) is a name of the family.
FAMILIES = ("opus", "sonnet", "haiku")

_LATER_RELEASE = re.compile(r"^claude-(?:[0-9][0-9a-z.-]*-)?(?:" + "|".join(FAMILIES) + r")(?:$|[-*?\[])")

#: What the suggestion is picked from: the names, and the family globs people write.
_SUGGESTIONS = (*KNOWN_MODELS, "claude-*", *(f"claude-{f}-*" for f in FAMILIES))


def close_model(glob: str) -> str | None:
    """The known name or family glob closest to ``glob`` (a typo's likely meaning), if any is close."""
    close = difflib.get_close_matches(glob, _SUGGESTIONS, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_model_problem(glob: str) -> tuple[str, str] | None:
    """(problem, fix) when ``glob`` matches no known model and is not a later release's name, else None."""
    if any(fnmatchcase(name, glob) for name in KNOWN_MODELS) or _LATER_RELEASE.match(glob):
        return None
    close = close_model(glob)
    problem = f"{glob!r} matches no known model, so the key could use none"
    fix = f"did you mean {close}?" if close else "write a model name or a glob such as claude-sonnet-* (or * for any)"
    return problem, fix
