"""``filters:`` in deploy.yaml: the gateway's content rules, both directions.

The shape (keys, types, choices) is checked here by pydantic, so the loader
gives its usual ``FILE:LINE:COL: field: problem; fix`` with did-you-mean.
What a rule *means* -- detector names, whether a regex is valid, safe from
catastrophic backtracking and bounded for the response window -- is owned by
the gateway's own filter package: :func:`filter_problems` runs the gateway's
validator on the rules and maps its messages back to the YAML positions, so
deploy.yaml and the gateway can never disagree about what is a valid rule.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from claudegate.config.problems import RuleProblem, fail
from claudegate.resources import ASSETS_DIR

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig

__all__ = ["DEFAULT_RULE_NAMES", "FilterRule", "Override", "filter_problems", "gateway_filters"]

Direction = Literal["request", "response", "both"]
Action = Literal["block", "redact", "log"]
_OVERRIDES = ("off", "block", "redact", "log")


def _override(value: object) -> str:
    if value is False:  # YAML 1.1 reads a bare off as false
        return "off"
    if value not in _OVERRIDES:

        close = difflib.get_close_matches(str(value), _OVERRIDES, n=1)
        raise fail(f"{value!r} is not an override; use one of {', '.join(_OVERRIDES)}",
                   f"did you mean {close[0]}?" if close else "off exempts the client from the rule")
    return str(value)


#: A client's override of one rule: its own action, or ``off`` (exempt).
Override = Annotated[str, BeforeValidator(_override)]
#: The rule the gateway applies when ``filters`` is left out.
DEFAULT_RULE_NAMES = ("secrets",)


class FilterRule(BaseModel):
    """One content rule: what to look for, in which direction, and what to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(examples=["secrets"], description="used in audit records and [REDACTED:<name>]")
    detectors: list[str] | None = Field(
        default=None,
        examples=[["all"]],
        description="built-in detectors: all (secrets and card numbers), anthropic_key, openai_key,"
        " aws_access_key, aws_secret_key, github_token, private_key, card_number; opt-in PII: email, phone",
    )
    pattern: str | None = Field(
        default=None,
        examples=["project\\s{0,3}falcon"],
        description="a regex (case-insensitive), instead of detectors",
    )
    direction: Direction = Field(
        default="request", examples=["both"], description="request, response or both"
    )
    action: Action = Field(default="block", examples=["redact"], description="block, redact or log")
    status: StrictInt | None = Field(
        default=None, examples=[403], description="block only: 400 (default) or 403"
    )

    def gateway_form(self) -> dict[str, Any]:
        """The rule as the gateway's config writes it (defaults left out)."""
        return self.model_dump(exclude_none=True, exclude_defaults=False)


def gateway_filters() -> Any:
    """The gateway's ``claudegate_gateway.filters`` package (the one owner of rule semantics).

    Importable in a checkout (editable install); from an installed wheel it is
    loaded from the shipped gateway sources. It needs only pyyaml.
    """
    try:
        return importlib.import_module("claudegate_gateway.filters")
    except ImportError:
        sys.path.append(str(ASSETS_DIR / "gateway"))
        return importlib.import_module("claudegate_gateway.filters")


_WHERE = re.compile(r"^filters\[(\d+)\](?:\.([a-z_]+))?(?:\[(\d+)\])?: (.*)$", re.DOTALL)


def filter_problems(cfg: DeployConfig) -> Iterator[RuleProblem]:
    """The gateway's verdict on ``filters``, and client overrides that name no rule."""

    names = list(DEFAULT_RULE_NAMES)
    if cfg.filters is not None:
        filters = gateway_filters()
        config_error = importlib.import_module("claudegate_gateway.config").ConfigError
        try:
            filters.FilterPolicy.from_config([r.gateway_form() for r in cfg.filters], "deploy.yaml")
        except config_error as exc:
            text = str(exc).removeprefix("deploy.yaml: ")
            match = _WHERE.match(text)
            problem, _, fix = (match.group(4) if match else text).partition("; ")
            loc: tuple[str | int, ...] = ("filters",)
            if match:
                loc += (int(match.group(1)),)
                if match.group(2):
                    loc += (match.group(2),)
                if match.group(3):
                    loc += (int(match.group(3)),)
            yield RuleProblem(loc, problem, fix or None)
            return
        names = [r.name for r in cfg.filters]
    for index, client in enumerate(cfg.clients):
        for rule in client.filters:
            if rule not in names:
                close = difflib.get_close_matches(rule, names, n=1)
                fix = f"did you mean {close[0]}?" if close else f"the rules are: {', '.join(names)}"
                yield RuleProblem(("clients", index, "filters", rule), f"names no rule in filters ({rule!r})", fix)
