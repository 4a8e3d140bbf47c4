"""A config built in code gets the same Problems (field, problem, fix) as the same config in a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from claudegate.config import load_config
from claudegate.config.problems import DeployConfigError, Problem
from claudegate.session import ScriptedInteraction, Session
from claudegate.session.document import (
    config_from_document,
    document_yaml,
    validate_document,
)


def good(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "key"
    key.write_text("sk-ant-api03-doc\n")
    key.chmod(0o600)
    return {
        "target": {"host": "203.0.113.9", "user": "deploy", "known_hosts": str(tmp_path / "kh")},
        "domain": "gw.example.com",
        "tls": {"mode": "internal-ca"},
        "upstream": {"api_key_file": str(key)},
        "clients": [{"name": "team-a", "models": ["claude-haiku-*"], "rpm": 60}],
        "state_dir": str(tmp_path / "state"),
    }


def _triples(problems: list[Problem]) -> set[tuple[str, str, str | None]]:
    return {(p.field, p.problem, p.fix) for p in problems}


def test_a_valid_document_has_no_problems_and_round_trips_through_yaml(tmp_path: Path) -> None:
    doc = good(tmp_path)
    assert validate_document(doc) == []
    cfg = config_from_document(doc)
    assert cfg.domain == "gw.example.com" and cfg.clients[0].rpm == 60
    path = tmp_path / "deploy.yaml"
    path.write_text(document_yaml(doc))
    assert load_config(path).model_dump() == cfg.model_dump()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["tls"].update(mode="internl-ca"), "tls.mode"),
        (lambda d: d.update(domain="not a domain"), "domain"),
        (lambda d: d["clients"][0].update(rpm=-1), "clients[0].rpm"),
        (lambda d: d["clients"][0].update(rmp=5), "clients[0].rmp"),
        (lambda d: d["target"].update(port=70000), "target.port"),
        (lambda d: d.pop("domain"), "domain"),
        (lambda d: d["upstream"].update(api_key="sk-ant-api03-" + "q" * 40), "upstream.api_key"),
    ],
)
def test_each_problem_names_its_field_like_a_file_does(tmp_path: Path, change: Any, field: str) -> None:
    doc = good(tmp_path)
    change(doc)
    in_code = validate_document(doc)
    assert in_code, "the document should have a problem"
    assert all(p.source is None and p.line is None for p in in_code)
    assert field in {p.field for p in in_code}, [str(p) for p in in_code]
    assert all(p.fix for p in in_code if p.field == field), "every problem says how to fix it"

    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(DeployConfigError) as from_file:
        load_config(path)
    assert _triples(in_code) == _triples(list(from_file.value.problems))
    assert "sk-ant-api03-qqqq" not in "\n".join(str(p) for p in in_code)


def test_several_problems_at_once_and_cross_field_rules(tmp_path: Path) -> None:
    doc = good(tmp_path)
    doc["tls"] = {"mode": "acme"}  # acme needs an email
    doc["clients"].append({"name": "team-a"})  # duplicate name
    problems = validate_document(doc)
    fields = {p.field for p in problems}
    assert problems and all(p.source is None for p in problems), [str(p) for p in problems]
    assert any(f.startswith("tls") or f.startswith("clients") for f in fields)


def test_a_session_on_a_document_raises_with_the_problems(tmp_path: Path) -> None:
    doc = good(tmp_path)
    doc["tls"]["mode"] = "nope"
    with pytest.raises(DeployConfigError) as bad:
        Session(config_from_document(doc), ScriptedInteraction())
    assert [p.field for p in bad.value.problems] == ["tls.mode"]
    doc["tls"]["mode"] = "internal-ca"
    with Session(config_from_document(doc), ScriptedInteraction()) as session:
        assert session.config.tls.mode == "internal-ca" and session.connector is None
