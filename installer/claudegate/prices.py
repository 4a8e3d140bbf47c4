"""The price table ``claudegate usage`` estimates cost from: the one place prices live.

US dollars per million tokens, standard (non-batch) rates for input and
output, as Anthropic listed them on :data:`PRICES_AS_OF`. Prompt-caching,
batch discounts and long-context surcharges are not applied: the gateway's
audit log records input and output tokens only, so the estimate is what the
same tokens cost at standard rates. Check https://www.anthropic.com/pricing
and edit :data:`PRICES` when they change; a model that matches no row is
reported with no cost rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["PRICES", "PRICES_AS_OF", "Price", "price_for"]

PRICES_AS_OF = "2025-11-24"


@dataclass(frozen=True)
class Price:
    model_glob: str
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


# First match wins: the specific names before the family globs.
PRICES: tuple[Price, ...] = (
    Price("claude-opus-4-5*", 5.00, 25.00),
    Price("claude-opus-4*", 15.00, 75.00),
    Price("claude-3-opus*", 15.00, 75.00),
    Price("claude-sonnet-4*", 3.00, 15.00),
    Price("claude-3-7-sonnet*", 3.00, 15.00),
    Price("claude-3-5-sonnet*", 3.00, 15.00),
    Price("claude-haiku-4*", 1.00, 5.00),
    Price("claude-3-5-haiku*", 0.80, 4.00),
    Price("claude-3-haiku*", 0.25, 1.25),
)


def price_for(model: str | None) -> Price | None:
    if not model:
        return None
    return next((p for p in PRICES if fnmatchcase(model, p.model_glob)), None)
