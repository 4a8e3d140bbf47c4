"""Whatever the file holds, the loader answers with a ConfigError (or a config), never a crash."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claudegate.config import DeployConfig, load_config_text
from claudegate.errors import ConfigError
from tests.config.common import BASE
from tests.config.test_examples import model_keys

# Key names the schema knows, so the fuzzer reaches deep validation, plus noise.
KNOWN = sorted({key.rsplit(".", 1)[-1].removesuffix("[]") for key in model_keys()})
KEYS = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(["api_key", "TLS", "rpm ", "host-key", "x" * 300]),
    st.text(max_size=12),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "local", "gw.example.com", "acme", "files", "internal-ca", "203.0.113.0/24", "10.0.0.1/8",
            "2001:db8::1/32", "20r/s", "32m", "~/x", "", "sk-ant-api03-xyz", "2027-06-30T00:00:00Z",
            "http://10.0.0.1", "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", "claude-*", "/v1/*",
        ]
    ),
    st.dates(min_value=dt.date(1, 1, 1)),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
)  # fmt: skip
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)


def check(text: str) -> None:
    try:
        cfg = load_config_text(text)
    except ConfigError as exc:
        assert str(exc)
        assert "sk-ant-api03-xyz" not in str(exc)
    else:
        assert isinstance(cfg, DeployConfig)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_random_mappings_never_crash(data: dict[Any, Any]) -> None:
    check(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(yaml.safe_load(BASE))), VALUES)
def test_one_section_of_a_valid_config_replaced_never_crashes(section: str, value: Any) -> None:
    data = yaml.safe_load(BASE)
    data[section] = value
    check(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab: -[]{}&*!|>'\"#\n\t?,%@`~0123456789.\\")), max_size=80))
def test_random_text_never_crashes(text: str) -> None:
    check(text)


def test_deep_nesting_is_a_config_error() -> None:
    check("a: " + "[" * 5000 + "]" * 5000 + "\n")
    check("a:\n" + "".join("  " * i + "- \n" for i in range(1, 300)))


def test_core_imports_no_ui_library() -> None:
    code = (
        "import sys, claudegate.config;"
        "bad = sorted(m for m in ('textual', 'typer', 'rich', 'paramiko') if m in sys.modules);"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
