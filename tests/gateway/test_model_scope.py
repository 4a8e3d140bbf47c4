"""GET /v1/models through the real gateway: a key sees only the models its scope allows.

The list is upstream's catalogue (the recording fake's) filtered by the
key's model globs and paged by the gateway; these tests page it as a
hostile client would (a hidden model as cursor, limit=1000, repeated
parameters) and check that the pages stay coherent, that nothing tells a
hidden model from one that does not exist, and what the fake was asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.edge.rawhttp import RawResponse, raw_exchange, req
from tests.support.fake_anthropic import DEFAULT_MODELS, FakeAnthropic, ModelSpec
from tests.support.gateway_proc import GatewayProc, make_gateway

HDRS = {"anthropic-version": "2023-06-01"}
# Upstream's default listing (active and deprecated), newest first, as the fake lists it.
ALL = [m.id for m in DEFAULT_MODELS if m.lifecycle in ("active", "deprecated")]
OPUS = [m for m in ALL if m.startswith("claude-opus-")]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    # (make_gateway keeps nothing between list calls: each test here changes or watches upstream's
    # catalogue; the cache itself is tested in test_model_catalogue.py.)
    proc = make_gateway(tmp_path_factory.mktemp("models"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def opus(gw: GatewayProc) -> str:
    return gw.create_key("opus-only", "--models", "claude-opus-*")


@pytest.fixture(scope="module")
def full(gw: GatewayProc) -> str:
    return gw.create_key("every-model")


def get(gw: GatewayProc, key: str, target: str) -> httpx.Response:
    return httpx.get(gw.url + target, headers={**HDRS, "x-api-key": key}, timeout=30)


def page(gw: GatewayProc, key: str, target: str) -> dict[str, Any]:
    r = get(gw, key, target)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert set(doc) == {"data", "has_more", "first_id", "last_id"}, doc
    ids = [m["id"] for m in doc["data"]]
    assert doc["first_id"] == (ids[0] if ids else None) and doc["last_id"] == (ids[-1] if ids else None), doc
    return doc


def ids(doc: dict[str, Any]) -> list[str]:
    return [m["id"] for m in doc["data"]]


def walk(gw: GatewayProc, key: str, limit: int, *, backward_from: str | None = None) -> list[str]:
    """Every id of the key's list, paged `limit` at a time forward (or backward from a cursor)."""
    seen: list[str] = []
    cursor = backward_from
    for _ in range(50):
        if backward_from is None:
            doc = page(gw, key, f"/v1/models?limit={limit}" + (f"&after_id={cursor}" if cursor else ""))
            seen += ids(doc)
            cursor = doc["last_id"]
        else:
            doc = page(gw, key, f"/v1/models?limit={limit}&before_id={cursor}")
            seen = ids(doc) + seen
            cursor = doc["first_id"]
        assert len(doc["data"]) <= limit
        if not doc["has_more"]:
            return seen
        assert doc["data"], "has_more on an empty page"
    raise AssertionError("the pages never ended")


def test_a_scoped_key_lists_only_its_models_in_upstreams_order(gw: GatewayProc, opus: str, fake: FakeAnthropic) -> None:
    doc = page(gw, opus, "/v1/models")
    assert ids(doc) == OPUS and doc["has_more"] is False
    # Each entry is upstream's own, untouched.
    direct = {m.id: m.to_json() for m in DEFAULT_MODELS}
    assert all(entry == direct[entry["id"]] for entry in doc["data"])
    # One upstream call for the whole catalogue; the client's paging never reaches upstream.
    asked = [(r.path, r.query_string) for r in fake.state.requests]
    assert asked == [("/v1/models", "limit=1000")], asked


@pytest.mark.parametrize("limit", [1, 2, 3, 1000])
def test_paging_a_filtered_list_is_coherent_both_ways(gw: GatewayProc, opus: str, fake: FakeAnthropic, limit: int) -> None:
    assert walk(gw, opus, limit) == OPUS
    # Backward from the last entry: everything before it, each page the nearest `limit`.
    assert walk(gw, opus, limit, backward_from=OPUS[-1]) == OPUS[:-1]
    first = page(gw, opus, f"/v1/models?limit={limit}")
    assert ids(first) == OPUS[:limit] and first["has_more"] is (limit < len(OPUS))
    assert all(r.query_string == "limit=1000" for r in fake.state.requests)


def test_a_full_scope_key_gets_what_upstream_answers(gw: GatewayProc, full: str, fake_anthropic: FakeAnthropic) -> None:
    # Differential: the gateway's own paging agrees with upstream's for every query a client may send.
    queries = ["", "?limit=1", "?limit=3", "?limit=1000", f"?after_id={ALL[2]}", f"?after_id={ALL[-1]}",
               f"?before_id={ALL[4]}&limit=2", f"?before_id={ALL[0]}", "?after_id=claude-none-1",
               "?before_id=claude-none-1", "?lifecycle[]=deprecated", "?lifecycle[]=active&lifecycle[]=deprecated&limit=2",
               "?lifecycle[]=retired"]  # fmt: skip
    for q in queries:
        up = httpx.get(fake_anthropic.url + "/v1/models" + q, headers={**HDRS, "x-api-key": fake_anthropic.api_key})
        assert page(gw, full, "/v1/models" + q) == up.json(), q


@pytest.mark.parametrize("param", ["after_id", "before_id"])
def test_a_hidden_model_as_cursor_is_an_unknown_id(gw: GatewayProc, opus: str, fake: FakeAnthropic, param: str) -> None:
    # claude-sonnet-4-6 exists upstream (newest of all): as a cursor it must say nothing more
    # than an id that does not exist, whatever its place in upstream's order.
    hidden = page(gw, opus, f"/v1/models?{param}=claude-sonnet-4-6&limit=1000")
    unknown = page(gw, opus, f"/v1/models?{param}=claude-sonnet-9-9&limit=1000")
    assert hidden == unknown == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    for hidden_id in ("claude-haiku-4-5-20251001", "claude-sonnet-4-20250514"):
        assert page(gw, opus, f"/v1/models?{param}={hidden_id}") == unknown
    # A visible cursor still works in the same call pattern.
    assert ids(page(gw, opus, f"/v1/models?after_id={OPUS[0]}&limit=1")) == [OPUS[1]]


@pytest.mark.parametrize(
    ("query", "says"),
    [("limit=1&limit=1000", "more than once"), ("after_id=a&after_id=b", "more than once"),
     ("before_id=a&before_id=b", "more than once"), ("limit=1001", "from 1 to 1000"), ("limit=0", "from 1 to 1000"),
     ("limit=-1", "from 1 to 1000"), ("after_id=claude-opus-4-6&before_id=claude-opus-4-6", "Cannot specify both"),
     ("after_id=claude.sonnet", "is not an id"), ("x=1", "unknown query parameter")],
)  # fmt: skip
def test_bad_paging_is_refused_before_upstream(gw: GatewayProc, opus: str, fake: FakeAnthropic, query: str, says: str) -> None:
    r = get(gw, opus, "/v1/models?" + query)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and says in err["message"], err
    assert [r.path for r in fake.state.requests] == []


def test_a_model_outside_the_scope_is_not_found_like_one_that_does_not_exist(
    gw: GatewayProc, opus: str, fake: FakeAnthropic
) -> None:
    r = get(gw, opus, "/v1/models/claude-opus-4-6")
    assert r.status_code == 200 and r.json()["id"] == "claude-opus-4-6"
    fake.state.reset()
    hidden = get(gw, opus, "/v1/models/claude-sonnet-4-6")
    assert hidden.status_code == 404, hidden.text
    assert [r.path for r in fake.state.requests] == []  # upstream is not asked about a hidden model
    # An in-scope id that does not exist goes upstream and comes back as upstream's 404: the same shape and words.
    missing = get(gw, opus, "/v1/models/claude-opus-9-9")
    assert missing.status_code == 404
    assert [r.path for r in fake.state.requests] == ["/v1/models/claude-opus-9-9"]
    h, m = hidden.json(), missing.json()
    assert h["type"] == m["type"] == "error" and h["error"]["type"] == m["error"]["type"] == "not_found_error"
    assert h["error"]["message"] == m["error"]["message"].replace("claude-opus-9-9", "claude-sonnet-4-6")
    # Aliases are matched as the client spells them, as a message's model is.
    alias = get(gw, opus, "/v1/models/claude-opus-4-5")
    assert alias.status_code == 200 and alias.json()["id"] == "claude-opus-4-5-20251101"
    assert get(gw, opus, "/v1/models/claude-haiku-4-5").status_code == 404


def test_a_scope_that_matches_nothing_lists_nothing(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("no-listed-model", "--models", "claude-opus-9-9")  # neither an id nor an alias of one
    assert page(gw, key, "/v1/models") == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert page(gw, key, "/v1/models?limit=1000&after_id=claude-opus-4-6")["data"] == []


def test_the_lifecycle_selection_goes_upstream_and_the_scope_applies_to_it(
    gw: GatewayProc, opus: str, fake: FakeAnthropic
) -> None:
    doc = page(gw, opus, "/v1/models?lifecycle[]=deprecated")
    assert ids(doc) == [m.id for m in DEFAULT_MODELS if m.lifecycle == "deprecated" and m.id.startswith("claude-opus")]
    assert [r.query_string for r in fake.state.requests] == ["lifecycle[]=deprecated&limit=1000"]  # query_string is decoded


def test_a_catalogue_over_one_upstream_page_is_read_in_bounded_pages(
    gw: GatewayProc, opus: str, fake: FakeAnthropic
) -> None:
    many = tuple(ModelSpec(f"claude-opus-x-{n:05d}", f"X {n}", "2025-01-01T00:00:00Z") for n in range(2500))
    fake.state.models = many
    doc = page(gw, opus, "/v1/models?limit=1000&after_id=claude-opus-x-01499")
    assert ids(doc) == [m.id for m in many[1500:2500]] and doc["has_more"] is False
    assert [r.query_string for r in fake.state.requests] == [
        "limit=1000", "limit=1000&after_id=claude-opus-x-00999", "limit=1000&after_id=claude-opus-x-01999"]
    # Past the bound (3 pages), the rest of upstream's catalogue is not read: the fan-out stays 3 calls.
    fake.state.models = tuple(ModelSpec(f"claude-opus-y-{n:05d}", f"Y {n}", "2025-01-01T00:00:00Z") for n in range(3500))
    fake.state.requests.clear()
    last = page(gw, opus, "/v1/models?after_id=claude-opus-y-02989")
    assert ids(last) == [f"claude-opus-y-{n:05d}" for n in range(2990, 3000)] and last["has_more"] is False
    assert len(fake.state.requests) == 3


def test_an_upstream_error_on_the_list_is_passed_on(gw: GatewayProc, opus: str, fake: FakeAnthropic) -> None:
    fake.state.fail(529, "overloaded_error", "Overloaded", path="/v1/models")
    r = get(gw, opus, "/v1/models")
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error", r.text
    assert json.loads(r.content)["type"] == "error"


def raw_get(gw: GatewayProc, key: str, target: str) -> RawResponse:
    """A GET whose target goes on the wire byte for byte (httpx would normalise dot segments and case of escapes)."""
    payload = req("GET", "\x00", f"x-api-key: {key}", "anthropic-version: 2023-06-01", "connection: close")
    return raw_exchange(gw.port, None, payload.replace(b"\x00", target.encode("latin-1"), 1))


def error_of(r: RawResponse) -> tuple[int, str, str]:
    doc = json.loads(r.body)
    assert doc["type"] == "error" and set(doc) == {"type", "error", "request_id"}, doc  # Anthropic's shape
    return r.status, doc["error"]["type"], doc["error"]["message"]


def test_a_hidden_model_answers_exactly_as_a_hidden_model_that_does_not_exist(
    gw: GatewayProc, opus: str, fake: FakeAnthropic
) -> None:
    # The same status, body (but for the id the client sent) and header names: nothing tells the two apart.
    real, made_up = raw_get(gw, opus, "/v1/models/claude-sonnet-4-6"), raw_get(gw, opus, "/v1/models/claude-sonnet-9-9")
    assert error_of(real) == (404, "not_found_error", "model: claude-sonnet-4-6")
    assert error_of(made_up) == (404, "not_found_error", "model: claude-sonnet-9-9")
    one, other = json.loads(real.body), json.loads(made_up.body)
    assert one["request_id"] != other["request_id"]
    del one["request_id"], other["request_id"]
    assert json.dumps(one).replace("claude-sonnet-4-6", "X") == json.dumps(other).replace("claude-sonnet-9-9", "X")
    assert sorted(real.headers) == sorted(made_up.headers)
    assert fake.state.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/claude%2Dsonnet%2D4%2D6",  # percent-encoded dashes
        "/v1/models/claude-sonnet-4-6%2f",  # an encoded slash
        "/v1/models/claude-sonnet-4-6/",  # trailing slash
        "/v1/models//claude-sonnet-4-6",
        "/v1/models/./claude-sonnet-4-6",
        "/v1/models/claude-opus-4-6/../claude-sonnet-4-6",  # a dot segment out of an allowed id
        "/v1/models/claude-opus-4-6%2F..%2Fclaude-sonnet-4-6",
        "/v1/Models/claude-sonnet-4-6",
        "/V1/models/claude-sonnet-4-6",
        "/v1/models/claude-sonnet-4-6;x=1",
        "/v1/models/claude-sonnet-4-6%00",
    ],
)
def test_hostile_spellings_of_a_hidden_model_never_reach_upstream(
    gw: GatewayProc, opus: str, fake: FakeAnthropic, target: str
) -> None:
    r = raw_get(gw, opus, target)
    status, kind, _ = error_of(r)
    assert (status, kind) == (404, "not_found_error"), r.body
    assert b"Claude Sonnet" not in r.body and b"created_at" not in r.body
    assert fake.state.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/CLAUDE-SONNET-4-6",  # the scope is matched case for case; upstream ids are lower case
        "/v1/models/Claude-Opus-4-6",  # out of a case-sensitive scope even though it names an opus
        "/v1/models/claude-sonnet-4-6?beta=true",  # an allowed query parameter changes nothing
    ],
)
def test_other_case_or_an_allowed_query_is_still_outside_the_scope(
    gw: GatewayProc, opus: str, fake: FakeAnthropic, target: str
) -> None:
    r = raw_get(gw, opus, target)
    assert error_of(r)[:2] == (404, "not_found_error"), r.body
    assert fake.state.requests == []


def test_a_query_on_a_model_get_is_refused_the_same_for_hidden_and_visible(
    gw: GatewayProc, opus: str, fake: FakeAnthropic
) -> None:
    # ?limit=1000 is no parameter of a get: refused before the scope, so the words do not depend on the id.
    hidden = error_of(raw_get(gw, opus, "/v1/models/claude-sonnet-4-6?limit=1000"))
    shown = error_of(raw_get(gw, opus, "/v1/models/claude-opus-4-6?limit=1000"))
    assert hidden[:2] == shown[:2] == (400, "invalid_request_error") and hidden[2] == shown[2]
    assert fake.state.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models?after_id=claude%2Dsonnet%2D4%2D6&limit=1000",  # an encoded hidden cursor decodes to it
        "/v1/models?lim%69t=1000&before_id=claude-sonnet-4-6",
        "/v1/models?limit=1000&after_id=CLAUDE-SONNET-4-6",
    ],
)
def test_encoded_hidden_cursors_page_like_unknown_ids(gw: GatewayProc, opus: str, fake: FakeAnthropic, target: str) -> None:
    r = raw_get(gw, opus, target)
    assert r.status == 200, r.body
    assert json.loads(r.body) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_a_list_spelled_otherwise_is_not_served(gw: GatewayProc, opus: str, fake: FakeAnthropic) -> None:
    for target in ("/v1/models/", "/v1/models/?limit=1000", "/v1//models", "/v1/models%2F", "/v1/MODELS"):
        r = raw_get(gw, opus, target)
        assert error_of(r)[:2] == (404, "not_found_error"), (target, r.body)
        assert b"claude-" not in r.body
    assert fake.state.requests == []
    # And the plain list with the largest page still shows only the scope.
    doc = json.loads(raw_get(gw, opus, "/v1/models?limit=1000").body)
    assert ids(doc) == OPUS


@pytest.mark.parametrize(
    "query",
    ["limit=1_000", "limit=%201000", "limit=%EF%BC%91%EF%BC%90", "limit=+5", "limit=1e3", "limit=0x10",
     "limit=", "after_id=", "after_id=claude-opus-4-6%00", "after_id=claude-opus-4-6/", "LIMIT=5"],
)  # fmt: skip
def test_hostile_paging_spellings_are_refused_before_upstream(
    gw: GatewayProc, opus: str, fake: FakeAnthropic, query: str
) -> None:
    r = raw_get(gw, opus, "/v1/models?" + query)
    assert error_of(r)[:2] == (400, "invalid_request_error"), r.body
    assert fake.state.requests == []


def test_each_upstream_page_of_the_list_counts_against_rpm(gw: GatewayProc, fake: FakeAnthropic) -> None:
    # A catalogue of three upstream pages: one list call costs the key three requests of its rpm.
    fake.state.models = tuple(ModelSpec(f"claude-opus-z-{n:05d}", f"Z {n}", "2025-01-01T00:00:00Z") for n in range(2500))
    three = gw.create_key("three-a-minute", "--models", "claude-opus-*", "--rpm", "3")
    doc = page(gw, three, "/v1/models?limit=5")
    assert len(doc["data"]) == 5 and doc["has_more"] is True
    assert len(fake.state.requests) == 3
    after = get(gw, three, "/v1/models/claude-opus-z-00001")
    assert after.status_code == 429 and after.json()["error"]["type"] == "rate_limit_error", after.text
    assert len(fake.state.requests) == 3  # refused before upstream
    # A catalogue of one page costs one: the same rpm allows three list calls.
    fake.state.models = fake.state.models[:10]
    other = gw.create_key("three-more", "--models", "claude-opus-*", "--rpm", "3")
    assert all(get(gw, other, "/v1/models").status_code == 200 for _ in range(3))
    assert get(gw, other, "/v1/models").status_code == 429


def test_a_key_scoped_to_an_alias_sees_the_dated_model_it_resolves_to(gw: GatewayProc) -> None:
    """The smoke client is scoped to ``claude-haiku-4-5``; its list must not be empty (an alias is
    the dated id without its date), and nothing else may show through the alias rule."""
    key = gw.create_key("haiku-alias", "--models", "claude-haiku-4-5")
    dated = [m for m in ALL if m.startswith("claude-haiku-4-5-")]
    assert dated, ALL
    assert ids(page(gw, key, "/v1/models?limit=1000")) == dated
    assert get(gw, key, f"/v1/models/{dated[0]}").status_code == 200
    assert get(gw, key, "/v1/models/claude-haiku-4-5").status_code == 200
    # A longer name that starts like the alias is not its dated model.
    for other in ("claude-haiku-4-5-extra-20251001", "claude-haiku-4-50-20251001", "claude-haiku-4-5-2025100"):
        assert get(gw, key, f"/v1/models/{other}").status_code == 404, other
    others = [m for m in ALL if m not in dated]
    for model in others[:3]:
        assert get(gw, key, f"/v1/models/{model}").status_code == 404, model
