"""Operator regexes: the shapes that backtrack super-linearly are refused; what passes runs in linear time."""

from __future__ import annotations

import re
import time

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from claudegate_gateway.config import ConfigError, parse_config
from claudegate_gateway.filters import FilterPolicy
from claudegate_gateway.filters import regex_safety as rs


@pytest.mark.parametrize("pattern", [
    r"(a+)+b", r"(a*)*b", r"(\w+\s?)*$", r"(a|a)+b", r"(a|ab)*c", r"(\d|\w)+x", r"(a?)*b", r"(.*a){3}",
    r"\d+\d+x", r"\w+\s*\w+!", r"a.*b", r"\w+@x", r".*secret", r"(x)\1", r"(?P<q>x)(?P=q)", r"[a-z]+@",
    r"(?:ab|a)+c", r"(?>a+)+b", r"a++b",
])
def test_super_linear_shapes_are_refused(pattern: str) -> None:
    with pytest.raises(rs.UnsafePattern) as info:
        rs.check(pattern, re.IGNORECASE)
    assert info.value.fix


@pytest.mark.parametrize("pattern", [
    r"project\s*x", r"ab+c", r"\b\d{3}-\d{2}-\d{4}\b", r"(foo|bar)\s+baz", r"\w{1,64}@\w{1,64}\.com",
    r"sk-[a-z]{1,40}", r"x\d+-\d+y", r"(?:ab|cd){1,4}x", r"blue\s{1,3}falcon", r"^ignore previous", r"a(?=b)",
    r"x(?>a+)b", r"xa++b",
])
def test_linear_shapes_are_accepted(pattern: str) -> None:
    rs.check(pattern, re.IGNORECASE)


def test_max_width() -> None:
    assert rs.max_width(r"ab{2,5}c") == 7
    assert rs.max_width(r"ab+c") is None


# A small regex grammar over {a, b}: whatever the checker accepts must run
# fast on long hostile inputs built from the same letters.
ATOMS = st.sampled_from(["a", "b", "[ab]", ".", r"\w", "a{1,3}", "(?:a|b)", "(?:ab|ba)"])


@st.composite
def regexes(draw: st.DrawFn, depth: int = 2) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        atom = draw(regexes(depth - 1)) if depth > 0 and draw(st.booleans()) else draw(ATOMS)
        if len(atom) > 1 and not atom.startswith("["):
            atom = f"(?:{atom})"
        parts.append(atom + draw(st.sampled_from(["", "", "*", "+", "?", "{1,4}", "{2,}"])))
    body = "".join(parts)
    if draw(st.integers(0, 4)) == 0:
        body += "|" + draw(regexes(depth - 1)) if depth > 0 else ""
    return body + "c"  # never matches the hostile inputs below: every start fails, the worst case


@st.composite
def operator_regexes(draw: st.DrawFn) -> str:
    # Half start with a literal x (as operator rules usually start with a word),
    # so unbounded repeats get past the first-character check and the nesting
    # checks are what stands between the pattern and exponential time.
    body = draw(regexes())
    return "x(?:" + body + ")" if draw(st.booleans()) else body


HOSTILE = ["a" * 20_000, "ab" * 10_000, "ba" * 10_000, "aab" * 7_000, "x" + "a" * 20_000, "x" + "ab" * 10_000,
           "xa" * 10_000]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pattern=operator_regexes())
def test_what_the_checker_accepts_runs_in_linear_time(pattern: str) -> None:
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return
    try:
        rs.check(pattern, re.IGNORECASE)
    except rs.UnsafePattern:
        return
    for text in HOSTILE:
        t0 = time.perf_counter()
        rx.search(text)
        # Linear is about a millisecond here; the quadratic shapes take seconds.
        assert time.perf_counter() - t0 < 0.3, (pattern, text[:8])


def test_unknown_client_rule_name_stops_the_gateway_with_file_and_key() -> None:
    cfg = parse_config({"filters": [{"name": "pii", "detectors": ["email"], "direction": "response"}],
                        "client_filters": {"tool": {"pi": "off"}}}, "gw.yaml")
    policy = FilterPolicy.from_config(cfg.filters or ())
    with pytest.raises(ConfigError, match=r"^gw.yaml: client_filters.tool.pi: names no rule in filters; did you mean pii\?"):
        policy.check_overrides(cfg.client_filters, cfg.source)
    # YAML 1.1 reads a bare `off` as false: it is still "off".
    assert parse_config({"client_filters": {"tool": {"pii": False}}}, "gw.yaml").client_filters == {"tool": {"pii": "off"}}
    with pytest.raises(ConfigError, match=r"client_filters.tool.pii: 'maybe' is not an override"):
        parse_config({"client_filters": {"tool": {"pii": "maybe"}}}, "gw.yaml")
