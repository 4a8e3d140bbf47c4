"""The route table on its own: canonical matching, query allowlists, the upstream target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claudegate_gateway import routes
from claudegate_gateway.routes import OPERATIONS, TEMPLATES, RouteError, match
from tests.support.gateway_proc import make_gateway


@pytest.mark.parametrize(
    ("method", "path", "name", "params"),
    [
        ("POST", "/v1/messages", "messages.create", {}),
        ("POST", "/v1/messages/count_tokens", "messages.count_tokens", {}),
        ("GET", "/v1/models", "models.list", {}),
        ("GET", "/v1/models/claude-sonnet-4-6", "models.get", {"model_id": "claude-sonnet-4-6"}),
        ("POST", "/v1/messages/batches", "batches.create", {}),
        ("GET", "/v1/messages/batches", "batches.list", {}),
        ("GET", "/v1/messages/batches/msgbatch_01A", "batches.get", {"batch_id": "msgbatch_01A"}),
        ("GET", "/v1/messages/batches/msgbatch_01A/results", "batches.results", {"batch_id": "msgbatch_01A"}),
        ("POST", "/v1/messages/batches/msgbatch_01A/cancel", "batches.cancel", {"batch_id": "msgbatch_01A"}),
        ("DELETE", "/v1/messages/batches/msgbatch_01A", "batches.delete", {"batch_id": "msgbatch_01A"}),
        ("POST", "/v1/files", "files.upload", {}),
        ("GET", "/v1/files", "files.list", {}),
        ("GET", "/v1/files/file_011C", "files.get", {"file_id": "file_011C"}),
        ("GET", "/v1/files/file_011C/content", "files.content", {"file_id": "file_011C"}),
        ("DELETE", "/v1/files/file_011C", "files.delete", {"file_id": "file_011C"}),
    ],
)
def test_every_operation_matches_its_canonical_path(method: str, path: str, name: str, params: dict[str, str]) -> None:
    m = match(method, path)
    assert m.op.name == name and m.params == params
    assert m.path == path and m.target == path


@pytest.mark.parametrize(
    "path",
    [
        "/v1/%6Dessages", "/v1/messages%2Fcount_tokens", "/v1/messages/", "/v1/messages;x", "/v1/Messages",
        "/V1/messages", "/v1//messages", "/v1/./messages", "/v1/x/../messages", "/v1/messages/.",
        "/v1\\messages", "/v1/messages\\", "/v1/mess%61ges", "/v1/messages%00", "/v1/messages ", "/v1/méssages",
        "/v1/messages/batches/" + "a" * 129, "/v1/files/a.b", "/v1/files/a%2e", "/v1", "/v1/", "/", "",
        "/v2/messages", "/v1/messages/batches/x/y", "/v1/complete", "/v1/messages/count_tokens/",
        "//v1/messages", "/v1/messages?x", "/v1/messages#x",
    ],
)
def test_non_canonical_or_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(RouteError) as err:
        match("POST", path)
    assert err.value.error_type == "not_found_error"


def test_wrong_method_on_a_known_template_is_not_found() -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "post"):
        with pytest.raises(RouteError):
            match(method, "/v1/messages")


def test_no_path_matches_two_operations() -> None:
    for op in OPERATIONS:
        segments = op.template.format(**dict.fromkeys(op.param_names, "x1")).split("/")[1:]
        hits = [o.name for o in OPERATIONS if o.method == op.method and routes._match_segments(o.segments, segments) is not None]
        assert hits == [op.name]


@pytest.mark.parametrize(
    ("method", "path", "query", "target"),
    [
        ("POST", "/v1/messages", "beta=true", "/v1/messages?beta=true"),
        ("POST", "/v1/messages/count_tokens", "beta=true", "/v1/messages/count_tokens?beta=true"),
        ("GET", "/v1/models", "limit=20&after_id=claude-x", "/v1/models?limit=20&after_id=claude-x"),
        ("GET", "/v1/models", "lifecycle%5B%5D=active&lifecycle%5B%5D=retired",
         "/v1/models?lifecycle%5B%5D=active&lifecycle%5B%5D=retired"),
        ("GET", "/v1/models", "lifecycle[]=active", "/v1/models?lifecycle%5B%5D=active"),
        ("GET", "/v1/files", "limit=1000&before_id=file_1&beta=true", "/v1/files?limit=1000&before_id=file_1&beta=true"),
        ("GET", "/v1/files", "page=page_MjA", "/v1/files?page=page_MjA"),
        ("GET", "/v1/messages/batches", "lim%69t=5", "/v1/messages/batches?limit=5"),
    ],
)
def test_allowed_query_is_validated_and_re_encoded(method: str, path: str, query: str, target: str) -> None:
    assert match(method, path, query).target == target


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("POST", "/v1/messages", "beta=false"),
        ("POST", "/v1/messages", "beta=true&beta=true"),
        ("POST", "/v1/messages", "beta=TRUE"),
        ("POST", "/v1/messages", "x=1"),
        ("POST", "/v1/messages", "limit=5"),
        ("POST", "/v1/messages", "beta"),
        ("POST", "/v1/messages", "&"),
        ("POST", "/v1/messages", "beta=true;x=1"),
        ("GET", "/v1/models", "limit=0"),
        ("GET", "/v1/models", "limit=1001"),
        ("GET", "/v1/models", "limit=-1"),
        ("GET", "/v1/models", "limit=1e3"),
        ("GET", "/v1/models", "limit=%EF%BC%91"),
        ("GET", "/v1/models", "limit=20&limit=30"),
        ("GET", "/v1/models", "after_id=../x"),
        ("GET", "/v1/models", "after_id=a+b"),
        ("GET", "/v1/models", "after_id=" + "a" * 257),
        ("GET", "/v1/models", "lifecycle[]=all"),
        ("GET", "/v1/files/file_1/content", "limit=5"),
        ("GET", "/v1/models", "&".join(f"lifecycle[]=active{i}" for i in range(40))),
        ("GET", "/v1/models", "%ff=1"),
    ],
)
def test_other_or_bad_query_parameters_are_refused(method: str, path: str, query: str) -> None:
    with pytest.raises(RouteError) as err:
        match(method, path, query)
    assert err.value.error_type == "invalid_request_error"


def test_endpoint_globs_are_checked_against_templates() -> None:
    assert routes.endpoint_glob_problem("/v1/*") is None
    assert routes.endpoint_glob_problem("/v1/messages/batches/*") is None
    assert [op.name for op in routes.glob_operations("/v1/files*")] == [
        "files.upload", "files.list", "files.get", "files.content", "files.delete"]
    problem = routes.endpoint_glob_problem("/v1/complete")
    assert problem is not None and "/v1/messages/count_tokens" in problem and "/v1/files/{file_id}" in problem
    assert routes.unknown_endpoint_globs(["/v1/messages", "/v1/mesages", "/v2/*"]) == ["/v1/mesages", "/v2/*"]
    assert len(TEMPLATES) == len(set(TEMPLATES)) == 12  # 11 Anthropic operations and the paced stream


def test_the_table_module_imports_no_aiohttp() -> None:
    code = "import sys, claudegate_gateway.routes; sys.exit(1 if 'aiohttp' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_keys_create_refuses_an_endpoint_glob_that_matches_nothing(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "http://127.0.0.1:9", "sk-x")
    out = gw.cli("keys", "create", "x", "--endpoints", "/v1/messages", "/v1/complete", check=False)
    assert out.returncode == 3
    assert "'/v1/complete' matches no operation" in out.stderr and "/v1/models/{model_id}" in out.stderr
    assert "x" not in {c["name"] for c in json.loads(gw.cli("keys", "list", "--json").stdout)}
