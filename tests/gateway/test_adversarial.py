"""What a hostile client tries against the gateway alone, one test per attack.

Every test asserts two things: the attack fails, and the recording fake
upstream received nothing it should not have. The same path and key tricks
run through the real rendered nginx in tests/edge/test_adversarial_edge.py.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge.rawhttp import RawResponse, raw_exchange, req
from tests.support.fake_anthropic import FakeAnthropic, RecordedRequest
from tests.support.gateway_proc import GatewayProc, make_gateway

HDRS = {"anthropic-version": "2023-06-01"}
ALLOWED = "claude-sonnet-4-6"
# What the narrow key must never get: a model outside its scope, far above its cap.
FORBIDDEN_BODY = json.dumps(
    {"model": "claude-opus-4-1", "max_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]}
).encode()

# Each of these once reached upstream's /v1/messages uninspected, or could.
PATH_TRICKS = [
    "/v1/%6Dessages", "/v1/%6dessages", "/v1/messages%2F", "/v1/%2e/messages", "/v1/messages/",
    "/v1/messages;x", "/v1/messages;", "/v1/Messages", "/V1/messages", "/v1/MESSAGES", "/v1//messages",
    "//v1/messages", "/v1/./messages", "/v1/x/../messages", "/v1/messages/.", "/v1/messages/..",
    "/v1\\messages", "/v1/messages\\", "/v1/messages%00", "/v1/messages%20", "/v1/me%73sages",
    "/v1/messages/count_tokens/../../messages", "/v1/messages%3Bx", "/v1/mes\xc3\xa9sages",
    "/v1/messages\xef\xbc\x8f", "/v1/%2Fmessages", "/v1/messages/batches/..%2F..%2Fmessages",
    "/./v1/messages", "/%76%31/messages", "/v1/messages.",
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    # A quick batch poll: the batch test can wait for its batch to be settled, so no poll of it
    # reaches upstream while a later test asserts that nothing does.
    proc = make_gateway(tmp_path_factory.mktemp("adv"), fake_anthropic.url, fake_anthropic.api_key,
                        {"batch_poll_seconds": 0.2})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def narrow(gw: GatewayProc) -> str:
    return gw.create_key("narrow", "--models", "claude-sonnet-*", "--max-tokens", "1000")


@pytest.fixture(scope="module")
def full(gw: GatewayProc) -> str:
    return gw.create_key("full")


def raw(gw: GatewayProc, method: str, target: str, *headers: str, body: bytes = b"") -> RawResponse:
    # connection: close, so the read ends with the answer even when it is chunked.
    lines = [*headers, "anthropic-version: 2023-06-01", "connection: close"]
    if body:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    payload = req(method, "\x00", *lines, body=body).replace(b"\x00", target.encode("latin-1"), 1)
    return raw_exchange(gw.port, None, payload)


def assert_error(r: RawResponse | httpx.Response, status: int, kind: str) -> str:
    code = r.status if isinstance(r, RawResponse) else r.status_code
    body = r.body if isinstance(r, RawResponse) else r.content
    assert code == status, (code, body[:300])
    doc = json.loads(body)
    assert doc["type"] == "error" and doc["error"]["type"] == kind, doc
    return str(doc["error"]["message"])


def nothing_upstream(fake: FakeAnthropic) -> None:
    got = [(r.method, r.raw_path or r.path) for r in fake.state.requests]
    assert got == [], got


def models_request(fake: FakeAnthropic) -> RecordedRequest:
    """The model list request upstream saw last (by its path: the gateway's own batch poll may come after)."""
    sent = fake.state.last_request("/v1/models")
    assert sent is not None, [(r.method, r.raw_path) for r in fake.state.requests]
    return sent


# -- the route table ---------------------------------------------------------


@pytest.mark.parametrize("path", PATH_TRICKS)
def test_path_tricks_are_not_found_and_never_forwarded(gw: GatewayProc, narrow: str, fake: FakeAnthropic, path: str) -> None:
    r = raw(gw, "POST", path, f"x-api-key: {narrow}", body=FORBIDDEN_BODY)
    # 404 from the route table; aiohttp itself refuses a few malformed
    # request lines with a 400 before the gateway sees them.
    assert r.status in (400, 404), (r.status, r.body[:200])
    if r.status == 404:
        assert_error(r, 404, "not_found_error")
    nothing_upstream(fake)


def test_the_canonical_path_is_inspected_and_forwarded_byte_for_byte(gw: GatewayProc, narrow: str, fake: FakeAnthropic) -> None:
    # Control for the test above: the same body on the real path is refused by the scopes.
    assert_error(raw(gw, "POST", "/v1/messages", f"x-api-key: {narrow}", body=FORBIDDEN_BODY), 403, "permission_error")
    nothing_upstream(fake)
    ok = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = raw(gw, "POST", "/v1/messages?beta=true", f"x-api-key: {narrow}", body=ok)
    assert r.status == 200, r.body
    seen = fake.state.requests
    assert [(x.method, x.raw_path, x.raw_query) for x in seen] == [("POST", "/v1/messages", "beta=true")]
    rec = gw.record(r.headers)
    assert rec["path"] == "/v1/messages" and rec["operation"] == "messages.create"


def test_unknown_operations_and_methods_are_not_found(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    for method, path in [("PUT", "/v1/messages"), ("GET", "/v1/messages"), ("DELETE", "/v1/models/x"),
                         ("POST", "/v1/complete"), ("GET", "/v1/organizations/me"), ("POST", "/v1/files/f1"),
                         ("GET", "/v1/messages/batches/b1/cancel"), ("PATCH", "/v1/files/f1"),
                         ("GET", "/v1/skills"), ("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/")]:
        assert_error(raw(gw, method, path, f"x-api-key: {full}"), 404, "not_found_error")
    nothing_upstream(fake)


def test_ids_outside_the_id_alphabet_or_too_long_are_not_found(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    for path in ["/v1/files/file.1", "/v1/files/file%5F1", "/v1/files/" + "a" * 129, "/v1/models/claude:opus",
                 "/v1/messages/batches/b1%2Fresults", "/v1/files/f\xc3\xa91/content"]:
        r = raw(gw, "GET", path, f"x-api-key: {full}")
        assert r.status in (400, 404), (path, r.status)
    nothing_upstream(fake)


def test_endpoint_scope_is_checked_against_the_template(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("models-only", "--endpoints", "/v1/models*")
    r = raw(gw, "GET", "/v1/models/claude-sonnet-4-6", f"x-api-key: {key}")
    assert r.status == 200
    assert [x.raw_path for x in fake.state.requests] == ["/v1/models/claude-sonnet-4-6"]
    fake.state.clear_requests()
    ok = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert_error(raw(gw, "POST", "/v1/messages", f"x-api-key: {key}", body=ok), 403, "permission_error")
    # The models scope does not stretch to a path that only starts like one.
    assert_error(raw(gw, "POST", "/v1/models/../messages", f"x-api-key: {key}", body=ok), 404, "not_found_error")
    assert_error(raw(gw, "GET", "/v1/files", f"x-api-key: {key}"), 403, "permission_error")
    nothing_upstream(fake)


def test_a_glob_matching_no_operation_is_refused_at_key_creation(gw: GatewayProc) -> None:
    out = gw.cli("keys", "create", "typo", "--endpoints", "/v1/message", check=False)
    assert out.returncode == 3 and "matches no operation" in out.stderr and "/v1/messages/batches" in out.stderr


@pytest.mark.parametrize(
    ("method", "target", "why"),
    [
        ("POST", "/v1/messages?beta=true&x=1", "unknown query parameter"),
        ("POST", "/v1/messages?beta=true&beta=true", "more than once"),
        ("POST", "/v1/messages?beta=1", "is not true"),
        ("POST", "/v1/messages?api_key=x", "unknown query parameter"),
        ("GET", "/v1/models?limit=5000", "from 1 to 1000"),
        ("GET", "/v1/models?limit=0", "from 1 to 1000"),
        ("GET", "/v1/models?after_id=..%2Fx", "is not an id"),
        ("GET", "/v1/models?limit=1&limit=2", "more than once"),
        ("GET", "/v1/files?order=asc", "unknown query parameter"),
        ("GET", "/v1/files/f1/content?redirect=http://x", "unknown query parameter"),
    ],
)
def test_query_parameters_outside_the_row_allowlist_are_refused(
    gw: GatewayProc, full: str, fake: FakeAnthropic, method: str, target: str, why: str
) -> None:
    body = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode()
    r = raw(gw, method, target, f"x-api-key: {full}", body=body if method == "POST" else b"")
    message = assert_error(r, 400, "invalid_request_error")
    assert why in message, message
    nothing_upstream(fake)


def test_allowed_query_is_re_encoded_from_validated_values(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    r = raw(gw, "GET", "/v1/models?lim%69t=2&lifecycle[]=active", f"x-api-key: {full}")
    assert r.status == 200, r.body
    # The selection goes upstream re-encoded; the paging (limit=2, read as such) is the
    # gateway's own over upstream's whole catalogue (modelscope.py).
    assert [(x.raw_path, x.raw_query) for x in fake.state.requests] == [
        ("/v1/models", "lifecycle%5B%5D=active&limit=1000")]
    assert len(json.loads(r.body)["data"]) == 2


def test_a_body_on_a_bodiless_operation_is_refused(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    assert_error(raw(gw, "GET", "/v1/models", f"x-api-key: {full}", body=b'{"x":1}'), 400, "invalid_request_error")
    assert_error(raw(gw, "DELETE", "/v1/files/f1", f"x-api-key: {full}", body=b"x"), 400, "invalid_request_error")
    nothing_upstream(fake)


# -- keys --------------------------------------------------------------------


def _key_tricks(key: str) -> list[list[str]]:
    return [
        [],
        [f"x-api-key: {key}x"],
        [f"x-api-key: {key[:-1]}"],
        [f"x-api-key: {key.upper()}"],
        [f"x-api-key: {key[:20]} {key[20:]}"],
        [f"x-api-key: {key[:20]}\t{key[20:]}"],
        [f"x-api-key: {key}\xa0"],
        [f"x-api-key: \xef\xbb\xbf{key}"],
        [f"x-api-key: {key}\xe2\x80\x8b"],
        [f"x-api-key: {key}", f"x-api-key: {key}"],
        [f"x-api-key: {key}", "x-api-key: cgk_other"],
        [f"authorization: Bearer {key}", f"authorization: Bearer {key}"],
        [f"authorization: Basic {key}"],
        [f"authorization: Bearer  {key}"],
        [f"authorization: Bearer\t{key}"],
        [f"authorization: {key}"],
        [f"authorization: Bearer {key} extra"],
        [f"x-api-key: {key}", "authorization: Bearer cgk_aaaaaaaaaa_" + "b" * 40],
        ["x-api-key: " + "k" * 8000],
        ["x-api-key: cgk_"],
        [f"x-api-key: {key};"],
        [f"x-api-key: {key},{key}"],
    ]


def test_key_tricks_get_401_never_500_and_nothing_upstream(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    for headers in _key_tricks(full):
        r = raw(gw, "GET", "/v1/models", *headers)
        # aiohttp refuses a few malformed headers itself with a 400; never a 5xx, never a 200.
        assert r.status in (400, 401), (headers, r.status, r.body[:200])
        if r.status == 401:
            assert_error(r, 401, "authentication_error")
    r = raw(gw, "GET", "/v1/models?x-api-key=" + full)
    assert r.status in (400, 401)
    nothing_upstream(fake)


def test_the_same_key_in_both_headers_is_accepted(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    r = raw(gw, "GET", "/v1/models", f"x-api-key: {full}", f"authorization: bearer {full}")
    assert r.status == 200
    sent = models_request(fake).headers
    assert sent["x-api-key"] == fake.api_key and "authorization" not in sent


# -- bodies ------------------------------------------------------------------


def _post(gw: GatewayProc, key: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", content=content, timeout=30,
                      headers={**HDRS, "x-api-key": key, "content-type": "application/json", **headers})


def test_duplicate_json_keys_are_refused(gw: GatewayProc, narrow: str, fake: FakeAnthropic) -> None:
    # Python keeps the last "model", another parser the first: either way one of them was not checked.
    for body in (
        '{"model":"claude-sonnet-4-6","model":"claude-opus-4-1","max_tokens":5,"messages":[{"role":"user","content":"x"}]}',
        '{"model":"claude-opus-4-1","model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"x"}]}',
        '{"model":"claude-sonnet-4-6","max_tokens":5,"max_tokens":100000,"messages":[{"role":"user","content":"x"}]}',
        '{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"x","content":"y"}]}',
    ):
        assert "twice" in assert_error(_post(gw, narrow, body.encode()), 400, "invalid_request_error")
    nothing_upstream(fake)


def test_stream_must_be_a_json_boolean(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    no_stream = gw.create_key("no-stream", "--no-stream")
    for value in ('"true"', "1", '"yes"', "null", "[true]"):
        body = f'{{"model":"{ALLOWED}","max_tokens":5,"stream":{value},"messages":[{{"role":"user","content":"x"}}]}}'
        assert "stream" in assert_error(_post(gw, no_stream, body.encode()), 400, "invalid_request_error")
    nothing_upstream(fake)


def test_deep_nesting_is_a_400_not_a_500(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    for depth in (200, 5000, 200_000):
        head = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
        body = head[:-1] + ', "metadata": ' + '{"a":[' * depth + "1" + "]}" * depth + "}"
        assert "nested" in assert_error(_post(gw, full, body.encode()), 400, "invalid_request_error")
    nothing_upstream(fake)
    body = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode()
    assert _post(gw, full, body).status_code == 200


def test_non_json_constants_and_other_encodings_are_refused(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    good = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    for content in (
        good.replace('"max_tokens": 5', '"max_tokens": 5, "temperature": NaN').encode(),
        good.replace('"max_tokens": 5', '"max_tokens": 5, "temperature": Infinity').encode(),
        good.encode("utf-16"),
        good.encode("utf-32"),
        b"\xef\xbb\xbf" + good.encode(),
        good.encode()[:-1] + b"\xff}",
    ):
        assert_error(_post(gw, full, content), 400, "invalid_request_error")
    nothing_upstream(fake)


def test_a_compressed_request_body_is_415(gw: GatewayProc, narrow: str, fake: FakeAnthropic) -> None:
    # The filters would see gzip bytes; upstream might inflate them.
    packed = gzip.compress(FORBIDDEN_BODY)
    for encoding in ("gzip", "deflate", "br", "identity, gzip", "GZIP"):
        r = _post(gw, narrow, packed, **{"content-encoding": encoding})
        assert_error(r, 415, "invalid_request_error")
    nothing_upstream(fake)


def test_headers_named_in_connection_are_not_forwarded(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    r = raw(gw, "GET", "/v1/models", f"x-api-key: {full}", "connection: keep-alive, x-stainless-os, anthropic-beta",
            "x-stainless-os: Linux", "anthropic-beta: files-api-2025-04-14", "x-stainless-lang: python")
    assert r.status == 200
    sent = models_request(fake).headers
    assert "x-stainless-os" not in sent and "anthropic-beta" not in sent and sent["x-stainless-lang"] == "python"


def test_only_allowlisted_headers_go_upstream(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    # anthropic-workspace-id would pick another workspace of the organisation's key.
    r = raw(gw, "GET", "/v1/models", f"x-api-key: {full}", "anthropic-workspace-id: wrkspc_other",
            "cookie: s=1", "x-forwarded-for: 6.6.6.6", "forwarded: for=6.6.6.6", "x-real-ip: 6.6.6.6",
            "x-anything: y", "proxy-authorization: Basic eA==", "anthropic-beta: files-api-2025-04-14",
            "user-agent: claude-cli/2", "x-app: cli", "x-stainless-retry-count: 0")
    assert r.status == 200
    sent = set(models_request(fake).headers)
    assert {"anthropic-beta", "anthropic-version", "user-agent", "x-app", "x-stainless-retry-count"} <= sent
    r = raw(gw, "GET", "/v1/models", f"x-api-key: {full}", "anthropic-beta: a-1", "anthropic-beta: b-2")
    assert r.status == 200 and models_request(fake).headers["anthropic-beta"] == "a-1, b-2"
    assert sent.isdisjoint({"anthropic-workspace-id", "cookie", "x-forwarded-for", "forwarded", "x-real-ip",
                            "x-anything", "proxy-authorization", "authorization"}), sent


def test_upstream_organisation_headers_do_not_reach_clients(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    body = json.dumps({"model": ALLOWED, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).encode()
    r = _post(gw, full, body)
    assert r.status_code == 200
    upstream_sent = {k for k in r.headers if k.startswith("anthropic-")}
    assert upstream_sent == set(), upstream_sent
    limited = gw.create_key("limited", "--rpm", "100", "--tpm", "50000")
    r = _post(gw, limited, body)
    assert r.status_code == 200 and "anthropic-organization-id" not in r.headers
    assert r.headers["anthropic-ratelimit-requests-limit"] == "100"
    assert r.headers["anthropic-ratelimit-tokens-limit"] == "50000"
    assert "anthropic-ratelimit-input-tokens-limit" not in r.headers  # upstream's org-wide figure
    r = httpx.get(gw.url + "/v1/models", headers={**HDRS, "x-api-key": full})
    assert r.status_code == 200 and not [k for k in r.headers if k.startswith("anthropic-")]


def test_a_body_too_big_for_the_remaining_tokens_is_refused_before_parsing(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("small-tpm", "--tpm", "1000")
    # Not even JSON: refused on its size alone, before anyone parses it.
    r = _post(gw, key, b"[" * 30_000)
    assert "estimated" in assert_error(r, 400, "invalid_request_error")
    nothing_upstream(fake)


# -- responses ---------------------------------------------------------------


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_download_is_streamed_through_not_held(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake: FakeAnthropic
) -> None:
    own = make_gateway(tmp_path / "dl", fake_anthropic.url, fake_anthropic.api_key)
    own.start()
    try:
        key = own.create_key("dl")
        up = httpx.post(own.url + "/v1/files", headers={**HDRS, "x-api-key": key},
                        files={"file": ("big.bin", b"small", "application/octet-stream")}, timeout=30)
        assert up.status_code == 200, up.text
        file_id = up.json()["id"]
        size = 200 * 1024 * 1024
        stored = fake_anthropic.state.files[file_id]
        stored.data = bytes(range(256)) * (size // 256)
        stored.downloadable = True
        assert own.proc is not None
        before = _peak_rss_kib(own.proc.pid)
        got = 0
        with httpx.stream("GET", f"{own.url}/v1/files/{file_id}/content", headers={**HDRS, "x-api-key": key},
                          timeout=60) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw(1 << 20):
                got += len(chunk)
        assert got == size
        grown_mib = (_peak_rss_kib(own.proc.pid) - before) / 1024
        # Held whole, the peak would grow by 200 MiB (twice, with a copy).
        assert grown_mib < 40, f"gateway peak RSS grew by {grown_mib:.0f} MiB for a 200 MiB download"
    finally:
        own.stop()


def test_batch_results_url_points_at_the_gateway_not_upstream(gw: GatewayProc, full: str, fake: FakeAnthropic) -> None:
    # Followed as given, upstream's absolute results_url would send the gateway key to Anthropic.
    fake.state.configure(batch_processing_seconds=0)
    body = {"requests": [{"custom_id": "a", "params": {"model": ALLOWED, "max_tokens": 5,
                                                       "messages": [{"role": "user", "content": "x"}]}}]}
    headers = {**HDRS, "x-api-key": full}
    created = httpx.post(gw.url + "/v1/messages/batches", json=body, headers=headers).json()
    got = httpx.get(f"{gw.url}/v1/messages/batches/{created['id']}", headers=headers).json()
    listed = httpx.get(gw.url + "/v1/messages/batches", headers=headers).json()["data"]
    for batch in (got, *listed):
        assert batch["results_url"] == f"/v1/messages/batches/{batch['id']}/results", batch
    # The list came from the gateway's index (what the get saw), not from upstream. (Not "the
    # last request was the get": the gateway's own poll reads the ended batch's results meanwhile.)
    assert fake.state.requests_for(f"/v1/messages/batches/{created['id']}", "GET")
    assert not fake.state.requests_for("/v1/messages/batches", "GET")
    r = httpx.get(gw.url + got["results_url"], headers=headers)
    assert r.status_code == 200 and json.loads(r.text.splitlines()[0])["custom_id"] == "a"
    # Settled by the gateway's poll: it has no reason to call upstream about this batch again.
    assert gw.record_where(event="batch_settled", batch_id=created["id"])["key_name"] == "full"


# -- the gateway's own paced stream ----------------------------------------------


def test_the_paced_stream_is_granted_only_by_name_and_never_forwarded(
    gw: GatewayProc, full: str, fake: FakeAnthropic
) -> None:
    # `/v1/*` (every client's default) does not grant it.
    assert_error(raw(gw, "GET", "/v1/claudegate/pace", f"x-api-key: {full}"), 403, "permission_error")
    paced = gw.create_key("paced", "--endpoints", "/v1/models", "/v1/claudegate/pace")
    for target in ("/v1/claudegate/Pace", "/v1/claudegate/pace/", "/v1/claudegate/%70ace", "/v1/claudegate//pace"):
        assert_error(raw(gw, "GET", target, f"x-api-key: {paced}"), 404, "not_found_error")
    assert_error(raw(gw, "POST", "/v1/claudegate/pace", f"x-api-key: {paced}"), 404, "not_found_error")
    assert_error(raw(gw, "GET", "/v1/claudegate/pace?beta=true", f"x-api-key: {paced}"), 400, "invalid_request_error")
    assert_error(raw(gw, "GET", "/v1/claudegate/pace", f"x-api-key: {paced}", body=b"{}"), 400, "invalid_request_error")
    ok = raw(gw, "GET", "/v1/claudegate/pace", f"x-api-key: {paced}")
    assert ok.status == 200 and ok.body.count(b"event: claudegate_pace") == 6
    nothing_upstream(fake)
