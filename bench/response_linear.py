"""The response filter's cost on a streamed tool input that is one long token (issue 17).

A channel in json mode with the secret detectors plus e-mail, fed the tool
input in 3-character deltas: one long number, a long run of whitespace
between tokens, one long string; 1,000 to 8,000 characters. Linear cost
doubles with the length; the decoder before issue 17 was quadratic.

    .venv/bin/python bench/response_linear.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from claudegate_gateway.filters import FilterPolicy
from claudegate_gateway.filters.response import ResponseFilter, Tally

RULES = [
    {"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"},
    {"name": "pii", "detectors": ["email"], "action": "redact", "direction": "response"},
]
SHAPES: dict[str, Callable[[int], str]] = {
    "number": lambda n: '{"n": ' + "7" * n + "}",
    "whitespace": lambda n: '{"a": "AKIA", ' + " " * n + '"b": 1}',
    "string": lambda n: '{"s": "' + "a" * n + '"}',
}


def main() -> None:
    rf = ResponseFilter.from_policy(FilterPolicy.from_config(RULES))
    assert rf is not None
    for kind, make in SHAPES.items():
        row = []
        for n in (1000, 2000, 4000, 8000):
            src = make(n)
            t = time.perf_counter()
            ch = rf.channel("json", Tally())
            out = "".join(ch.feed(src[i : i + 3]) for i in range(0, len(src), 3)) + ch.flush()
            row.append(f"{(time.perf_counter() - t) * 1000:.0f} ms")
            assert out == src
        print(f"{kind:12}", " | ".join(row))


if __name__ == "__main__":
    main()
