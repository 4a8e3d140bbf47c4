"""``filters:`` and ``clients[].filters`` in deploy.yaml: errors with FILE:LINE:COL, and what the gateway gets."""

from __future__ import annotations

import pytest
import yaml

from claudegate.config import gateway_config
from claudegate_gateway.config import parse_config
from claudegate_gateway.filters import FilterPolicy
from tests.config.common import BASE, load, problems

RULES = """\
filters:
  - name: secrets
    detectors: [all]
    direction: both
    action: redact
  - name: pii
    detectors: [email, phone]
    direction: response
    action: redact
"""
# BASE is 9 lines: filters: is line 10, the first rule line 11, the second rule line 15.


def rule(body: str) -> str:
    return "filters:\n  - name: r\n" + "".join(f"    {line}\n" for line in body.splitlines())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("detectors: [al]", "deploy.yaml:12:17: filters[0].detectors[0]: unknown detector 'al'; did you mean all?"),
        ("detectors: [emial]", "deploy.yaml:12:17: filters[0].detectors[0]: unknown detector 'emial'; did you mean email?"),
        ("pattern: '(unclosed'", "deploy.yaml:12:5: filters[0].pattern: not a valid regular expression"),
        ("pattern: '(a+)+b'", "deploy.yaml:12:5: filters[0].pattern: has a repeat inside a repeat"),
        ("pattern: '\\d+\\d+'", "deploy.yaml:12:5: filters[0].pattern: has two unbounded repeats"),
        ("pattern: 'a.*b'", "deploy.yaml:12:5: filters[0].pattern: has an unbounded repeat that can match"),
        ("pattern: '(x)\\1'", "deploy.yaml:12:5: filters[0].pattern: uses a back-reference"),
        ("pattern: 'a(?=b)'", "deploy.yaml:12:5: filters[0].pattern: uses a look-around ((?=...), (?<=...)),"
         " which the gateway's linear-time regex engine (RE2) cannot run"),
        ("pattern: 'x\\w{1,100}\\w{1,100}\\w{1,100}y'",
         "deploy.yaml:12:5: filters[0].pattern: has bounded repeats in a row that can match the same characters"),
        ("pattern: 'ab+c'\ndirection: response",
         "deploy.yaml:12:5: filters[0].pattern: a response rule must have a bounded match length"),
        ("pattern: x\naction: redcat", "deploy.yaml:13:5: filters[0].action: must be one of block, redact, log;"
         " got 'redcat'; did you mean redact?"),
        ("pattern: x\ndirection: out", "deploy.yaml:13:5: filters[0].direction: must be one of request,"
         " response, both; got 'out'"),
        ("pattern: x\npatern: y", "deploy.yaml:13:5: filters[0].patern: is not a known key; did you mean pattern?"),
        ("pattern: x\ndetectors: [all]", "deploy.yaml:11:5: filters[0]: has both detectors and pattern"),
        ("pattern: x\naction: redact\nstatus: 403", "deploy.yaml:14:5: filters[0].status: status only applies"),
    ],
)
def test_each_bad_rule_is_named_with_its_line(body: str, expected: str) -> None:
    lines = problems(rule(body), base=BASE)
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]


def test_unknown_client_rule_name_points_at_the_override() -> None:
    text = RULES + "clients:\n  - name: tool\n    filters:\n      pi: off\n"
    assert problems(text, base=BASE) == [
        "deploy.yaml:22:7: clients[0].filters.pi: names no rule in filters ('pi'); did you mean pii?"
    ]


def test_client_override_of_the_default_rule_and_bad_value() -> None:
    cfg = load("clients:\n  - name: tool\n    filters: {secrets: log}\n", base=BASE)
    assert cfg.clients[0].filters == {"secrets": "log"}
    lines = problems("clients:\n  - name: tool\n    filters: {secrets: of}\n", base=BASE)
    assert lines == [
        "deploy.yaml:12:15: clients[0].filters.secrets: 'of' is not an override; use one of off, block, redact,"
        " log; did you mean off?"
    ]


def test_duplicate_rule_names_are_refused() -> None:
    text = "filters:\n  - {name: a, pattern: x}\n  - {name: a, pattern: y}\n"
    assert problems(text, base=BASE)[0].startswith("deploy.yaml:12:6: filters[1].name: duplicate rule name 'a'")


def test_gateway_config_carries_rules_and_overrides_and_loads_in_the_gateway() -> None:
    cfg = load(RULES + "clients:\n  - name: tool\n    filters: {pii: off}\n", base=BASE)
    rendered = gateway_config(cfg)
    assert rendered["filters"][1] == {"name": "pii", "detectors": ["email", "phone"], "direction": "response",
                                      "action": "redact"}
    assert rendered["client_filters"] == {"tool": {"pii": "off"}}
    # What the release writes is what the gateway reads back, and accepts.
    gw = parse_config(yaml.safe_load(yaml.safe_dump(rendered)), "gateway.yaml")
    policy = FilterPolicy.from_config(gw.filters or ())
    policy.check_overrides(gw.client_filters, gw.source)
    assert [r.name for r in policy.for_client(gw.client_filters["tool"]).response_rules] == ["secrets"]


def test_filters_left_out_renders_nothing_and_empty_list_renders_empty() -> None:
    assert "filters" not in gateway_config(load("", base=BASE))
    assert gateway_config(load("filters: []\n", base=BASE))["filters"] == []


def test_a_filters_change_changes_the_rendered_gateway_config() -> None:
    # plan diffs the rendered gateway.yaml of the release: a rule change must show there.
    before = yaml.safe_dump(gateway_config(load(RULES, base=BASE)))
    after = yaml.safe_dump(gateway_config(load(RULES.replace("action: redact\n", "action: block\n", 1), base=BASE)))
    assert before != after
