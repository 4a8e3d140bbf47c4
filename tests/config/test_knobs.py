"""The knob table (claudegate.knobs) is the one owner of each deploy.yaml limit.

Every reader is held to it here: the config model, EdgeSettings, the rules,
the derivation into nginx and gateway.yaml, the wizard form, the smoke and
audit targets, and the gateway's own config, which ships without this
package and so keeps its own copy of the defaults and minimums.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import annotated_types
import pytest
import yaml

from claudegate.audit.target import AuditTarget
from claudegate.config.derive import edge_settings, gateway_config, value_at
from claudegate.config.rules import EDGE_FIELDS as RULES_EDGE_FIELDS
from claudegate.edge.render import render_edge
from claudegate.edge.settings import EdgeSettings, RateLimit
from claudegate.knobs import EDGE_KNOBS, KNOBS, Knob, knob, probe_defaults, size_in_bytes
from claudegate.smoke import SmokeTarget
from claudegate.wizard import form
from claudegate_gateway.config import Config, ConfigError, Upstream, parse_config
from claudegate_gateway.reservation import ReservationLimits
from tests.config.common import LOCAL, load, problems

IDS = [k.path for k in KNOBS]
EDGE_IDS = [k.path for k in EDGE_KNOBS]


def _edge_value(settings: EdgeSettings, row: Knob) -> Any:
    node: Any = settings
    for part in row.edge.split("."):
        node = getattr(node, part)
    return node


def _bounds(model: type[Any], name: str) -> tuple[int | None, int | None]:
    low = high = None
    for meta in model.model_fields[name].metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low = meta.gt + 1
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
    return low, high


def _with(row: Knob, value: Any) -> str:
    """LOCAL's deploy.yaml with ``row`` set to ``value`` (a zone needs its sibling too)."""
    *parents, leaf = row.loc
    if row.loc[0] == "tls":
        return LOCAL.replace("  mode: internal-ca\n", f"  mode: internal-ca\n  {leaf}: {value}\n")
    if row.loc[:2] in (("limits", "per_ip"), ("limits", "per_key")):
        doc: Any = {"rate": knob(".".join((*parents, "rate"))).default,
                    "burst": knob(".".join((*parents, "burst"))).default, leaf: value}
    else:
        doc = {leaf: value}
    for part in reversed(parents):
        doc = {part: doc}
    return LOCAL + yaml.safe_dump(doc)


@pytest.mark.parametrize("row", KNOBS, ids=IDS)
def test_model_and_edge_defaults_are_the_tables(row: Knob) -> None:
    cfg = load("", base=LOCAL)
    assert value_at(cfg, row.loc) == row.default
    if not row.at_edge:  # a gateway-only knob: held to the gateway's own default below
        assert not row.nginx and row.gateway and row.path not in {k.path for k in EDGE_KNOBS}
        return
    assert _edge_value(EdgeSettings(domain="localhost"), row) == row.default
    assert _edge_value(edge_settings(cfg), row) == row.default


@pytest.mark.parametrize("row", [k for k in EDGE_KNOBS if k.kind == "int"], ids=lambda k: k.path)
def test_edge_bounds_are_the_tables(row: Knob) -> None:
    head, *rest = row.edge.split(".")
    model: type[Any] = RateLimit if rest else EdgeSettings
    assert _bounds(model, rest[0] if rest else head) == (row.minimum, row.maximum)


@pytest.mark.parametrize("row", [k for k in KNOBS if k.kind == "int"], ids=lambda k: k.path)
def test_deploy_yaml_refuses_values_outside_the_tables_bounds(row: Knob) -> None:
    assert row.minimum is not None and row.maximum is not None
    for good in (row.minimum, row.maximum):
        cfg = load(_with(row, good))
        assert value_at(cfg, row.loc) == good
        if row.at_edge:
            assert _edge_value(edge_settings(cfg), row) == good
    for bad in (row.minimum - 1, row.maximum + 1):
        found = problems(_with(row, bad))
        assert len(found) == 1 and f": {row.path}: " in found[0], found


def test_body_size_minimum_is_the_tables() -> None:
    row = knob("limits.max_body_size")
    assert row.minimum == 1024
    assert load(_with(row, "1k")).limits.max_body_size == "1k"
    assert problems(_with(row, "1023"))[0].split(": ")[1] == "limits.max_body_size"


def test_rules_map_edge_fields_with_the_tables_paths() -> None:
    assert "" not in RULES_EDGE_FIELDS  # a gateway-only row adds no edge field
    for row in EDGE_KNOBS:
        head, *rest = row.edge.split(".")
        assert RULES_EDGE_FIELDS[head] == row.loc[: len(row.loc) - len(rest)]


@pytest.mark.parametrize("row", EDGE_KNOBS, ids=EDGE_IDS)
def test_a_changed_knob_changes_its_nginx_directive(row: Knob) -> None:
    """Each row's edge field is rendered into the directive the row names."""
    other: Any = {"int": lambda v: v + 1 if v + 1 != 80 else v + 2, "size": lambda v: "8m",
                  "rate": lambda v: "7r/s", "choice": lambda v: "modern"}[row.kind](row.default)
    cfg_default = load("", base=LOCAL)
    cfg_other = load(_with(row, other))
    directive = row.nginx.split()[0]

    def lines(cfg: Any) -> set[str]:
        rendered = render_edge(edge_settings(cfg))
        return {line.strip() for text in rendered.values() for line in text.splitlines()
                if line.strip().startswith(directive)}

    assert lines(cfg_default) != lines(cfg_other)


def test_gateway_defaults_and_minimums_are_the_tables() -> None:
    """The gateway cannot import the table: its own defaults and minimums are held to it here."""
    reservations = ReservationLimits()
    defaults = {"max_body_bytes": Config.max_body_bytes, "max_upload_bytes": Config.max_upload_bytes,
                "upstream.read_timeout": Upstream.read_timeout, "drain_seconds": Config.drain_seconds,
                "limits.url_source_tokens": reservations.url_source_tokens,
                "limits.server_tool_use_tokens": reservations.server_tool_use_tokens,
                "limits.server_tool_default_uses": reservations.server_tool_default_uses,
                "models_cache_seconds": Config.models_cache_seconds,
                "max_held_download_bytes": Config.max_held_download_bytes,
                "max_held_download_bytes_per_key": Config.max_held_download_bytes_per_key}
    assert parse_config({}).reservations == reservations  # what a gateway.yaml without limits gets
    rows = [(row, key) for row in KNOBS for key in row.gateway]
    assert sorted(key for _row, key in rows) == sorted(defaults)
    for row, key in rows:
        assert defaults[key] == row.gateway_value(row.default), key
        assert row.minimum is not None
        minimum = row.gateway_value(f"{row.minimum}" if row.kind == "size" else row.minimum)

        def raw(value: Any, key: str = key) -> dict[str, Any]:
            head, _, leaf = key.partition(".")
            return {head: {leaf: value}} if leaf else {head: value}

        assert parse_config(raw(minimum))  # the table's minimum is the gateway's ...
        with pytest.raises(ConfigError, match=key.rpartition(".")[2]):
            parse_config(raw(minimum - 1))  # ... and one less is refused


def test_gateway_yaml_carries_the_knobs() -> None:
    cfg = load("limits: {max_body_size: 8m, timeouts: {upstream_read: 900}, url_source_tokens: 7000,"
               " server_tool_use_tokens: 3000, server_tool_default_uses: 4}\n", base=LOCAL)
    config = parse_config(gateway_config(cfg))
    assert config.max_body_bytes == config.max_upload_bytes == 8 * 1024 * 1024
    assert config.upstream.read_timeout == 900.0
    assert config.reservations == ReservationLimits(7000, 3000, 4)
    # Whole numbers, as the gateway requires of them (a float would be refused there).
    assert gateway_config(cfg)["limits"] == {"url_source_tokens": 7000, "server_tool_use_tokens": 3000,
                                             "server_tool_default_uses": 4}


def test_a_row_sets_the_edge_or_the_gateway() -> None:
    with pytest.raises(ValueError, match=r"edge field, gateway\.yaml keys, or both"):
        Knob("limits.nothing", "int", 1, 1, 2)
    with pytest.raises(ValueError, match="nginx directive"):
        Knob("limits.half", "int", 1, 1, 2, edge="half")
    with pytest.raises(ValueError, match="unit"):
        Knob("limits.unitless", "int", 1, 1, 2, gateway=("limits.unitless",))


def test_smoke_and_audit_targets_default_to_the_table() -> None:
    defaults = probe_defaults()
    assert defaults["max_body_bytes"] == size_in_bytes(str(knob("limits.max_body_size").default))
    audit = {f.name: f.default for f in dataclasses.fields(AuditTarget)}
    assert {name: audit[name] for name in defaults} == defaults
    assert SmokeTarget(base_url="https://x").max_body_bytes == defaults["max_body_bytes"]


def test_the_wizard_asks_with_the_tables_words_and_defaults() -> None:
    asked = [f for screen in form.SCREENS for f in screen.fields if f.key in {k.path for k in KNOBS}]
    assert {f.key for f in asked} >= {"limits.max_body_size", "limits.per_ip.burst", "tls.profile"}
    for spec in asked:
        row = knob(spec.key)
        assert (spec.label, spec.help, spec.default) == (row.label, row.help, row.form_default)


def test_the_wizard_leaves_out_what_equals_the_tables_default() -> None:
    """Compared with the table, not the input's own default: a stale input default is still left out."""
    state = form.WizardState(values={"target.mode": "local", "limits.max_body_size": "32m",
                                     "limits.per_ip.burst": "40", "limits.connections_per_ip": "31"})
    doc = form.document(state)
    assert doc["limits"] == {"connections_per_ip": 31}
    stale = dataclasses.replace(form.LIMITS.fields[5], default="16m")
    assert stale.key == "limits.max_body_size"
    bad: dict[str, str] = {}
    out: dict[str, Any] = {}
    form._fill(out, (stale,), {"limits.max_body_size": "32m"}, bad)
    assert out == {} and bad == {}
