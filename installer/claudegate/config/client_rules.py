"""Client entries that validate one by one but can never work as written.

- ``expires`` already in the past: the key would be refused from its first
  request, so a deploy would hand out a dead key;
- a model glob that matches no model name: the gateway matches scopes with
  :func:`fnmatch.fnmatchcase`, where a ``[`` without its ``]`` (or a stray
  ``]``) stands for itself, and model names never contain either, so
  ``claude-[sonnet`` silently allows nothing;
- a model glob that matches no model the tool knows and is not shaped like a
  later release of a known family (``claud-*``, ``claude-sonet-*``): a typo
  that would refuse the key for every model
  (:func:`claudegate.model_names.unknown_model_problem`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from claudegate.config.problems import RuleProblem
from claudegate.model_names import unknown_model_problem

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig

__all__ = ["client_problems", "glob_problem"]


def glob_problem(glob: str) -> str | None:
    """Why ``glob`` can match no model name under fnmatch, or None when it can."""
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "[":
            # fnmatch: a set may start with '!' and then a ']' that is a member.
            j = i + 1
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            close = glob.find("]", j)
            if close < 0:
                return f"the '[' at position {i + 1} has no closing ']', so it stands for itself"
            i = close + 1
            continue
        if ch == "]":
            return f"the ']' at position {i + 1} closes no '[', so it stands for itself"
        i += 1
    return None


def client_problems(cfg: DeployConfig, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[RuleProblem]:
    moment = now()
    for index, client in enumerate(cfg.clients):
        if client.expires is not None and client.expires <= moment:
            yield RuleProblem(
                ("clients", index, "expires"),
                f"{client.expires:%Y-%m-%d %H:%M} UTC is in the past: the key would be refused from its first request",
                "set a later date, or remove expires: for a key that does not expire",
            )
        for position, glob in enumerate(client.models):
            why = glob_problem(glob)
            if why is not None:
                yield RuleProblem(
                    ("clients", index, "models", position),
                    f"{glob!r} can match no model name ({why}; model names never contain brackets)",
                    "write a name or a * glob, e.g. claude-sonnet-*, or a full set such as claude-[sh]*",
                )
                continue
            unknown = unknown_model_problem(glob)
            if unknown is not None:
                yield RuleProblem(("clients", index, "models", position), *unknown)
