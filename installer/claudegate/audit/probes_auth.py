"""Authentication and authorization, tried the ways a hostile client would.

Every refused request's gateway request id is kept; :func:`upstream_proof`
then reads the gateway's audit log and checks that none of them reached the
upstream API (an audit record with an upstream request id, or tokens).
"""

from __future__ import annotations

import json
import secrets
import time

from claudegate.audit.context import Run, probe
from claudegate.audit.result import ProbeResult
from claudegate.probes.wait import pause
from claudegate.probes.wire import Answer

#: nginx's own request ids (its error pages); the gateway's start ``req_gw``.
EDGE_ID_PREFIX = "req_edge"
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _pick(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _fake_key() -> str:
    # Well-formed, never issued: exercises the lookup, not the format check.
    return f"cgk_{_pick(10)}_{_pick(40)}"


def _expect_refused(p_expect: object, answer: Answer, status: int, error_type: str, label: str) -> list[str]:
    problems = []
    if answer.status != status:
        problems.append(f"{label}: {answer.describe()}, expected {status} {error_type}")
    elif not answer.shaped() or answer.error_type != error_type:
        problems.append(f"{label}: {status} without Anthropic's {error_type} JSON")
    return problems


def authentication(run: Run) -> ProbeResult:
    p = probe("auth", "auth.keys_refused", "gateway authentication (claudegate_gateway keystore)", run)
    run_key = run.key()
    cases: list[tuple[str, list[tuple[str, str | bytes]], str]] = [
        ("no key", [], "/v1/models"),
        ("unknown well-formed key", [("x-api-key", _fake_key())], "/v1/models"),
        ("unknown Bearer key", [("authorization", f"Bearer {_fake_key()}")], "/v1/models"),
        ("garbage key", [("x-api-key", "' OR 1=1 --")], "/v1/models"),
        ("10 KB key", [("x-api-key", "cgk_" + "A" * 10_000)], "/v1/models"),
    ]
    if run_key:
        middle = len(run_key) // 2
        cases += [
            ("key in the query string", [], f"/v1/models?x-api-key={run_key}"),
            ("key in the query string (key=)", [], f"/v1/models?key={run_key}"),
            ("key with a space inside", [("x-api-key", run_key[:middle] + " " + run_key[middle:])], "/v1/models"),
            ("key with a tab inside", [("x-api-key", run_key[:middle] + "\t" + run_key[middle:])], "/v1/models"),
            ("key with a non-ASCII letter", [("x-api-key", run_key[:-1] + "é")], "/v1/models"),
            ("key with a look-alike letter", [("x-api-key", run_key[:5] + "\u0430" + run_key[6:])], "/v1/models"),
            ("key and a prefix", [("x-api-key", "x" + run_key)], "/v1/models"),
            ("Bearer with two keys", [("authorization", f"Bearer {run_key} {run_key}")], "/v1/models"),
        ]
    for which, label in (("revoked", "revoked key"), ("expired", "expired key")):
        key = run.key(which)
        if key:
            cases.append((label, [("x-api-key", key)], "/v1/models"))
    for label, headers, path in cases:
        answer = run.https("GET", path, headers)
        p.saw(f"GET {path.split('?')[0]} [{label}]", answer)
        if answer.status >= 500 or answer.status == 0:
            p.expect(False, f"{label}: {answer.describe()} (must be a 401, never a 5xx)")
            continue
        # An unknown query parameter may be refused (400) before the key is looked at; a
        # header nginx finds too large is refused by it (400/431/494). Both must be shaped.
        ok_status = answer.status == 401 or (answer.status == 400 and "query" in label) or (
            answer.status in (400, 431, 494) and "10 KB" in label)
        p.expect(ok_status and answer.shaped(), f"{label}: {answer.describe()}, expected 401 authentication_error")
    if run_key:
        good = run.https("GET", "/v1/models", [("x-api-key", run_key)])
        p.saw("GET /v1/models [the run's own key, as a control]", good)
        p.expect(good.status == 200, f"the run's valid key did not work ({good.describe()}): the probe proves nothing")
    missing = [w for w in ("revoked", "expired") if not run.key(w)]
    note = f" (not tried: {', '.join(missing)} key)" if missing else ""
    return p.result(f"{len(cases)} bad or misplaced keys all got 401{note}")


def _message(model: str, max_tokens: int, **extra: object) -> bytes:
    body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "audit"}], **extra}
    return json.dumps(body).encode()


# Each spelling must be refused, never served as /v1/messages uninspected.
PATH_TRICKS = (
    "/v1/%6Dessages", "/v1/%6dessages", "/v1/Messages", "/V1/messages", "/v1/messages/", "/v1/messages;x",
    "/v1/messages;/", "/v1/./messages", "/v1/x/../messages", "//v1/messages", "/v1//messages",
    "/v1/messages%2f", "/v1/messages%00", "/v1/messages/.", "/v1%2fmessages", "/v1/messages%20",
    "/v1/me%73sages/count_tokens", "/v1/messages/count_tokens/..", "/v1/messages\\", "/./v1/messages",
    "/v1/messages?beta=true&x=1", "/v1/messages?beta=true&beta=false",
)


def path_tricks(run: Run) -> ProbeResult:
    p = probe("authz", "authz.path_tricks", "the gateway route table (claudegate_gateway routes)", run)
    key, clients = run.key(), run.target.clients
    if key is None or clients is None:
        return p.untested("needs the run's client key")
    # Out of scope twice over: a forbidden model, and max_tokens far above the cap.
    body = _message(clients.forbidden_model, clients.max_tokens_cap * 100 + 1000)
    headers: list[tuple[str, str | bytes]] = [("x-api-key", key), ("content-type", "application/json")]
    control = run.https("POST", "/v1/messages", headers, body)
    p.saw("POST /v1/messages [control: forbidden model]", control)
    p.expect(control.status == 403, f"the control request was not refused with 403 ({control.describe()})")
    _remember(run, control, "POST /v1/messages (control)")
    for path in PATH_TRICKS:
        answer = run.https("POST", path, headers, body)
        p.saw(f"POST {path}", answer)
        _remember(run, answer, f"POST {path}")
        p.expect(answer.status != 0 and 400 <= answer.status < 500,
                 f"POST {path}: {answer.describe()} (an out-of-scope request must be refused)")
        if 400 <= answer.status < 500:
            p.expect(answer.shaped(), f"POST {path}: {answer.status} is not Anthropic's error JSON")
    return p.result(f"{len(PATH_TRICKS)} path spellings of /v1/messages all refused")


def _remember(run: Run, answer: Answer, label: str) -> None:
    """A request that must not reach upstream, whatever it was answered: the audit log is the judge."""
    if answer.request_id:
        run.refused_ids.append((answer.request_id, label))


def scopes(run: Run) -> ProbeResult:
    p = probe("authz", "authz.scopes", "clients[].models / max_tokens / betas / stream in deploy.yaml", run)
    key, clients = run.key(), run.target.clients
    if key is None or clients is None:
        return p.untested("needs the run's client key")
    base: list[tuple[str, str | bytes]] = [("x-api-key", key), ("content-type", "application/json")]
    cases: list[tuple[str, list[tuple[str, str | bytes]], bytes, int, str]] = [
        ("model outside the scope", base, _message(clients.forbidden_model, 1), 403, "permission_error"),
        ("model outside the scope (case)", base, _message(clients.allowed_model.upper(), 1), 403, "permission_error"),
        ("max_tokens above the cap", base, _message(clients.allowed_model, clients.max_tokens_cap + 1),
         400, "invalid_request_error"),
        ("max_tokens as a string", base, _message(clients.allowed_model, 1).replace(b'"max_tokens": 1', b'"max_tokens": "1"'),
         400, "invalid_request_error"),
        ("forbidden anthropic-beta", [*base, ("anthropic-beta", "audit-not-allowed-2099-01-01")],
         _message(clients.allowed_model, 1), 403, "permission_error"),
        ("forbidden beta after an allowed one", [*base, ("anthropic-beta", f"{clients.allowed_beta},audit-no")],
         _message(clients.allowed_model, 1), 403, "permission_error"),
        ("forbidden beta in a second header", [*base, ("anthropic-beta", clients.allowed_beta),
                                              ("anthropic-beta", "audit-no")],
         _message(clients.allowed_model, 1), 403, "permission_error"),
        ("stream without permission", base, _message(clients.allowed_model, 1, stream=True), 403, "permission_error"),
        ("stream as a string", base, _message(clients.allowed_model, 1, stream="true"), 400, "invalid_request_error"),
        ("duplicate model key", base,
         b'{"model":"%s","model":"%s","max_tokens":1,"messages":[{"role":"user","content":"a"}]}'
         % (clients.allowed_model.encode(), clients.forbidden_model.encode()), 400, "invalid_request_error"),
        ("deeply nested body", base, b'{"model":"x","max_tokens":1,"messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
         400, "invalid_request_error"),
    ]
    for label, headers, body, status, kind in cases:
        answer = run.https("POST", "/v1/messages", headers, body)
        p.saw(f"POST /v1/messages [{label}]", answer)
        _remember(run, answer, f"POST /v1/messages [{label}]")
        for problem in _expect_refused(p, answer, status, kind, label):
            p.expect(False, problem)
    return p.result(f"{len(cases)} out-of-scope requests refused with the right error")


def other_clients_objects(run: Run) -> ProbeResult:
    p = probe("authz", "authz.other_clients_objects", "the gateway's ownership of batches and files", run)
    key, other = run.key(), run.key("other")
    if key is None:
        return p.untested("needs the run's client key")
    mine = [("x-api-key", key)]
    # Ids nobody made through the gateway: must look exactly like missing ones.
    for path in ("/v1/messages/batches/msgbatch_" + secrets.token_hex(12), "/v1/files/file_" + secrets.token_hex(12)):
        answer = run.https("GET", path, mine)
        p.saw(f"GET {path}", answer)
        _remember(run, answer, f"GET {path}")
        p.expect(answer.status == 404 and answer.shaped(), f"GET {path}: {answer.describe()}, expected 404")
    if other is None:
        return p.result("unknown batch and file ids answer 404 (no second client to test ownership)")
    file_id = _upload(run, other, p)
    if file_id is None:
        return p.result("unknown ids answer 404; the second client could not upload a file to test ownership")
    try:
        for method, path in (("GET", f"/v1/files/{file_id}"), ("GET", f"/v1/files/{file_id}/content"),
                             ("DELETE", f"/v1/files/{file_id}")):
            answer = run.https(method, path, mine)
            p.saw(f"{method} {path} [another client's file]", answer)
            _remember(run, answer, f"{method} {path}")
            p.expect(answer.status == 404 and answer.shaped(),
                     f"{method} another client's file: {answer.describe()}, expected 404 as if it did not exist")
        listing = run.https("GET", "/v1/files", mine)
        p.saw("GET /v1/files", listing)
        p.expect(file_id.encode() not in listing.body, "another client's file is in this client's file list")
        ref = json.dumps({"model": run.target.clients.allowed_model if run.target.clients else "x", "max_tokens": 1,
                          "messages": [{"role": "user", "content": [
                              {"type": "document", "source": {"type": "file", "file_id": file_id}}]}]}).encode()
        answer = run.https("POST", "/v1/messages", [*mine, ("content-type", "application/json")], ref)
        p.saw("POST /v1/messages referencing another client's file_id", answer)
        _remember(run, answer, "POST /v1/messages [other's file_id]")
        p.expect(400 <= answer.status < 500, f"a message using another client's file_id: {answer.describe()}")
    finally:
        run.https("DELETE", f"/v1/files/{file_id}", [("x-api-key", other)])
    return p.result("another client's file is invisible: get, content, delete, list and file_id all refused")


def _upload(run: Run, key: str, p: object) -> str | None:
    boundary = "audit" + secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audit.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\nclaudegate audit probe file\r\n--{boundary}--\r\n").encode()
    answer = run.https("POST", "/v1/files", [("x-api-key", key), ("content-type", f"multipart/form-data; boundary={boundary}"),
                                              ("anthropic-beta", "files-api-2025-04-14")], body)
    doc = answer.json()
    if answer.status == 200 and isinstance(doc, dict) and isinstance(doc.get("id"), str):
        return str(doc["id"])
    return None


def upstream_proof(run: Run) -> ProbeResult:
    p = probe("authz", "authz.nothing_reached_upstream", "the gateway route table and scope checks", run)
    reader = run.target.audit_records
    if reader is None:
        return p.untested("the gateway's audit log cannot be read from here")
    if not run.refused_ids:
        return p.untested("no refused request carried a gateway request id")
    wanted = dict(run.refused_ids)
    # The gateway writes its record as the answer leaves, so one may land a moment late: wait
    # a little for those. nginx's own ids (it answered alone) never reach the gateway's log:
    # waiting for them cost every audit the whole 5 s.
    logged = {rid for rid in wanted if not rid.startswith(EDGE_ID_PREFIX)}
    found: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 5
    while True:
        found = {str(r.get("request_id")): dict(r) for r in reader() if r.get("request_id") in wanted}
        if logged <= found.keys() or time.monotonic() >= deadline:
            break
        pause(0.5)
    for rid, label in wanted.items():
        record = found.get(rid)
        if record is None:
            if rid.startswith(EDGE_ID_PREFIX):
                continue  # refused by nginx before the gateway saw it: it reached nothing
            # The gateway answered it (or upstream did) but the log does not say so: no proof.
            p.expect(False, f"{label}: request {rid} is not in the gateway's audit log, so nothing proves "
                            "it stayed there (log rotated, or not the serving gateway's)")
            continue
        reached = record.get("upstream_request_id") or record.get("input_tokens") or record.get("output_tokens")
        p.expect(not reached, f"{label} reached the upstream API (audit record {rid})")
    p.saw(f"{len(wanted)} refused requests looked up in the audit log", f"{len(found)} found")
    return p.result(f"none of {len(wanted)} refused requests reached upstream ({len(found)} audit records checked)")


