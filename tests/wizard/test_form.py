"""The form model without Textual: documents, defaults left out, problems mapped to their fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from claudegate.redact import Secret
from claudegate.wizard import core
from claudegate.wizard.draft import load_draft, save_draft
from claudegate.wizard.form import (
    SCREENS,
    WizardState,
    client_problems,
    document,
    field_problems,
    map_problems,
)


def _state(**values: object) -> WizardState:
    return WizardState(values={"target.host": "203.0.113.10", "domain": "gw.example.com", **values})


def test_defaults_are_left_out_and_a_changed_burst_keeps_its_rate() -> None:
    doc = document(_state(**{"limits.per_ip.burst": "40", "limits.per_key.burst": "99", "target.port": "22"}))
    assert "port" not in doc["target"]
    assert doc["limits"] == {"per_key": {"rate": "10r/s", "burst": 99}}


def test_local_target_has_no_ssh_fields() -> None:
    doc = document(_state(**{"target.mode": "local", "target.user": "deploy", "target.port": "2222"}))
    assert doc["target"] == {"host": "local"}
    assert field_problems(_state(**{"target.mode": "local"}), 0, core.check_document) == {}


def test_problems_about_list_entries_name_the_entry() -> None:
    mapped = map_problems([("allowlist[2]", "bad"), ("clients[0].rpm", "no"), ("tls", "whole")],
                          ["allowlist", "tls.mode", "clients"])
    assert mapped == {"allowlist": "entry 3: bad", "clients": "entry 1: no", "tls.mode": "whole"}


def test_a_screen_sees_only_its_own_problems() -> None:
    state = _state(**{"limits.per_ip.rate": "fast", "target.port": "0"})
    assert set(field_problems(state, 0, core.check_document)) == {"target.port"}
    assert set(field_problems(state, 3, core.check_document)) >= {"limits.per_ip.rate"}


def test_client_problems() -> None:
    assert client_problems({"name": "team-a", "rpm": "60"}, [], core.check_document) == {}
    assert set(client_problems({"name": "x y", "tpm": "0"}, [], core.check_document)) == {"name", "tpm"}


def test_the_draft_never_holds_the_key_and_survives_garbage(tmp_path: Path) -> None:
    state = _state()
    state.upstream_key = Secret("sk-ant-api03-DRAFT-CANARY")
    state.screen = 4
    path = save_draft(state, tmp_path / "draft.json")
    assert "sk-ant" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_draft(path)
    assert again is not None and again.values == state.values and again.screen == 4 and again.upstream_key is None
    path.write_text(json.dumps({"version": 1, "screen": 99, "values": {"x": [1]}, "clients": "no"}))
    odd = load_draft(path)
    assert odd is not None and odd.screen == 0 and odd.values == {} and odd.clients == []
    path.write_text("{not json")
    assert load_draft(path) is None


def test_save_writes_the_key_0600_and_checks_first(tmp_path: Path) -> None:
    doc = document(_state(**{"upstream.api_key_file": str(tmp_path / "k" / "key"), "tls.mode": "internal-ca"}))
    core.save(doc, tmp_path / "deploy.yaml", upstream_key=Secret("sk-ant-api03-SAVE"))
    assert (tmp_path / "k" / "key").stat().st_mode & 0o777 == 0o600
    assert "sk-ant" not in (tmp_path / "deploy.yaml").read_text()
    bad = dict(doc, domain="gw_example.com")
    try:
        core.save(bad, tmp_path / "other.yaml", upstream_key=Secret("sk-ant-api03-OTHER"))
    except Exception as exc:
        assert "domain" in str(exc)
    else:
        raise AssertionError("a document with problems was saved")
    assert not (tmp_path / "other.yaml").exists()
    assert (tmp_path / "k" / "key").read_text().strip() == "sk-ant-api03-SAVE"


def test_every_step_screen_is_named_once() -> None:
    assert len({s.name for s in SCREENS}) == len(SCREENS) == 9


def test_the_form_model_imports_no_ui() -> None:
    import subprocess

    code = "import claudegate.wizard.form, claudegate.wizard.core, claudegate.wizard.draft, sys; " \
           "sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_filter_presets_become_filters_the_core_accepts() -> None:
    from claudegate.wizard.form import FILTER_PRESETS, LIMITS

    limits = SCREENS.index(LIMITS)
    assert "filters" not in document(_state())  # the default: the gateway's own policy applies
    for name, (_label, rules) in FILTER_PRESETS.items():
        state = _state(**{"filters.preset": name})
        doc = document(state)
        assert doc.get("filters") == rules, name
        assert field_problems(state, limits, core.check_document) == {}, name
    both = document(_state(**{"filters.preset": "pii"}))["filters"]
    assert {(r["direction"], r["action"]) for r in both} == {("request", "block"), ("response", "redact")}
    assert document(_state(**{"filters.preset": "off"}))["filters"] == []


def test_a_saved_deploy_yaml_loads_back_into_the_same_config(tmp_path: Path) -> None:
    """`init` on an existing deploy.yaml edits it: its answers load, and saving them gives the same config,
    including what the form does not ask (ports, network, the operator's own filters, a client's overrides)."""
    import yaml

    from claudegate.session.examples import write_example
    from claudegate.wizard.form import state_from_document

    for example in ("local", "remote"):
        path = write_example(example, tmp_path / f"{example}.yaml", force=True)
        doc = yaml.safe_load(path.read_text())
        state = state_from_document(doc)
        assert state.values["target.mode"] == ("local" if example == "local" else "server")
        again = document(state)
        assert core.check_document(again, base_dir=tmp_path) == []
        before = core.build_config(doc, base_dir=tmp_path).model_dump()
        after = core.build_config(again, base_dir=tmp_path).model_dump()
        assert before == after, example


def test_save_refuses_a_directory_and_leaves_no_temp_file(tmp_path: Path) -> None:
    doc = document(_state(**{"upstream.api_key_file": str(tmp_path / "key"), "tls.mode": "internal-ca"}))
    (tmp_path / "dir").mkdir()
    try:
        core.save(doc, tmp_path / "dir", upstream_key=None)
    except Exception as exc:
        assert "is a directory" in str(exc) and "deploy.yaml" in str(getattr(exc, "hint", "")), exc
    else:
        raise AssertionError("saved over a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
    assert list((tmp_path / "dir").iterdir()) == []


def test_verify_key_says_what_failed_in_words_with_a_fix() -> None:
    ok, message, fix = core.verify_upstream_key("http://127.0.0.1:9", Secret("sk-ant-api03-X"), timeout=5)
    assert not ok
    assert "Error" not in message and "refused the connection" in message, message
    assert fix, message


def test_the_snippet_model_is_one_the_client_may_use() -> None:
    from fnmatch import fnmatchcase

    from claudegate.wizard.snippets import snippet_model

    for globs in (["*"], ["claude-haiku-*"], ["claude-opus-4-*"], ["claude-3-5-haiku-20241022"],
                  ["claude-sonnet-*", "claude-haiku-*"]):
        model = snippet_model(globs)
        assert any(fnmatchcase(model, g) for g in globs), (globs, model)
