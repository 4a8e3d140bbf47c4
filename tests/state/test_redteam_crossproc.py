"""Red team, round 6: a hostile client with one or two keys, across gateway processes.

Real gateway processes sharing Debian's redis-server (and, where ownership is
the target, PostgreSQL), the recording fake upstream; requests go to one
process and then another. tests/state/test_redteam_state.py (round 3) is not
repeated here.

Tried, and what became of it:

* HOLE (fixed): Redis loses its data (killed, restarted empty: no persistence)
  while requests are in flight. Their settlements (``used - reserved``, a large
  negative number) were applied to the new Redis, which never saw the
  reservations: the ledger's share went *down* by the unused part of each
  reservation, so the durable ledger (and the day counter seeded from it)
  ended far below what upstream billed, a fresh budget for the key. The
  reservation is now marked in Redis and a settlement that finds no mark
  charges what was used instead of the correction. Requests settled a moment
  before the loss (not yet flushed) were lost from the ledger too (ledger 36,
  billed 84): each replica now remembers its settled charges until it sees a
  flush (anyone's) took them (``cg:{name}:took``), and charges them again when
  Redis's data generation (``cg:epoch``) changes.
* HOLE (fixed): a name revoked and given to someone else (``keys create`` again)
  while the old holder's upload was still upstream: the upload's answer was
  recorded under the name, so the new holder owned (listed, read, could
  delete) the old holder's file. Ownership is now recorded only while the key
  that made the request still belongs to that client (one statement, SQLite and
  PostgreSQL); the same for code outputs and containers, and a batch's output
  files only while the batch is still its owner's.
* Held: bob, on process B, against alice's file and batch made on A: get,
  content, delete, a reference in a message, in count_tokens and in a batch,
  batch get, results, cancel, delete: 404, upstream never asked; alice's
  ``next_page`` cursor replayed by bob (400), her ids as ``after_id``/``before_id``
  (empty page); after a rotate alice's cursor and files stay hers on the other process.
* HOLE (fixed): a client keeping exactly ``max_in_flight_per_key`` requests open,
  each sent the moment the previous answer ended, was refused "in flight" by
  its own finished requests: the place was given back to Redis by a task that
  ran after the answer had been sent (1 run in 2-4 failed, whole answers and
  streams alike). A whole answer now goes out once its place is free (waiting
  at most the Redis timeout); a stream is settled and its place given back
  before its end (the last chunk) is written. A client that acts on a stream's
  ``message_stop`` event before that end can still be early.
* HOLE (fixed): a request whose headers (and key) B checked before a revoke on
  A, its body trickled in afterwards (the edge streams bodies through, cutting
  only a client silent for ``client_body_timeout``): forwarded upstream 1.5 s
  after the revocation had reached B. A body that took over 0.5 s to arrive
  now has its key checked again before anything is forwarded.
* HOLE (fixed): with Redis down, each process applied the whole in-flight cap
  (its own local cap): 16 held requests over two processes against a cap of
  4 had 8 in flight. The cap is now shared out like the rates
  (cap ÷ live replicas per process) while Redis is away; exact again on its return.
* Held: rpm 12 spent on a mix of messages, count_tokens, batch creation, file and
  batch lists and the model list, over two processes: exactly the first 12,
  whatever their kind; lists ask upstream nothing. 16 at once of messages,
  count_tokens and batch creation (all held upstream) against an in-flight cap
  of 4 over two processes: exactly 4, and all four places back at their end.
* Held: the differential check (tests/gateway/test_accounting_differential.py's
  generated workload: messages, streams read whole or cut at any point,
  referenced files, URL sources, batches, lists, count_tokens; three keys with
  daily budgets) over two processes on Redis and PostgreSQL while one process
  loses PostgreSQL for 2 s: every key's ledger (and Redis day) ends at least at
  what the fake billed, no budget passed, before or after batch settlement.
* Held (with the two Redis fixes above; without the second, charged 2762 of
  8258 billed): the same generated workload over two processes while Redis is
  killed and started again empty mid-run: every key's ledger ends at least at
  what the fake billed; every refusal of the outage a 503 ``api_error``; no
  500, no traceback. (A budget is not exact across such a loss: see below.)
* Held: PostgreSQL itself stopped (``pg_ctl stop -m immediate``) and started under
  load: the known key served throughout by both processes from their caches;
  uploads and lists 503 with Retry-After before upstream; a key never seen
  503; ``keys create`` refused; after the return the unseen key works and a
  revocation reaches both processes within 1 s; no traceback, no 500.
* Held: A lowers a key's daily budget below what it spent (B, which had it
  cached, refuses within 1 s, "daily budget"), raises it again (B admits within
  1 s), rotates it with a 1 s overlap (both keys work on B, the old one is
  refused once the overlap ends).
* Held: a file alice's code run wrote on A, and its container, used by bob on B
  (get, content, delete, a reference, a request naming the container): 404,
  upstream never asked; alice reads it and reuses the container through B.
  Part of the name-reuse hole above: a batch's output files, recorded when the
  batch settles (in the background, on either process), went to the new
  holder of a name revoked and re-created before the batch ended (fails
  without the check in batchsettle.py).

Weak, or left:

* After Redis loses its data a budget is not exact for a moment: the day
  counter is seeded from the ledger before the requests in flight settle
  (each then adds what it used) and before each replica charges again what it
  had not seen flushed (within a beat, 1 s), so admissions in that moment can
  pass the budget by those amounts. Charges a flush took in the last beat
  before the loss are charged twice (the safe side).
* A client that acts on a stream's ``message_stop`` event before the chunked
  end can still find its own finished stream holding the in-flight place.
* A request admitted (and its key re-checked) before a revocation that then
  waits for an upstream connection (at most ``upstream.connect_timeout``) is
  still forwarded, as a request already upstream still runs to its end.
* What an old holder's request made after its name was revoked and created
  anew (an upload, a batch, code outputs) exists upstream owned by nobody: no
  client can reach or delete it through the gateway.
* In-flight places given out without Redis are not in Redis when it returns:
  until those requests end the fleet can hold up to that many more.
* Not tried here: UTC midnight on Redis's own clock (it cannot be moved without
  faketime; round 3 moved the replicas' clocks); nginx in front (test_replay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from tests.gateway.test_accounting_differential import _MARK, BUDGETS, Workload
from tests.state.test_postgres_store import pg_fleet
from tests.state.test_state_metering import pg as _pg
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet, post, run_parallel
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import PostgresServer, RedisServer, state_section
from tests.support.tcp_relay import TcpRelay


def _ledger(gw: GatewayProc, name: str, day: str) -> int:
    """The key's day in the durable ledger (the fleet's shared SQLite keystore)."""
    with contextlib.closing(sqlite3.connect(gw.keystore_path)) as db:
        row = db.execute("SELECT tokens FROM daily_usage WHERE name = ? AND day = ?", (name, day)).fetchone()
    return int(row[0]) if row else 0


def _used(doc: dict[str, int]) -> int:
    return int(doc["input_tokens"]) + int(doc["output_tokens"])



def _drive(load: Workload, errors: list[BaseException], steps: int = 20) -> None:
    """``steps`` of a workload on one connection; what goes wrong is kept for the test, not lost in a thread."""
    try:
        with httpx.Client(timeout=30) as c:
            for _ in range(steps):
                load.step(c)
    except BaseException as exc:
        errors.append(exc)

def test_redis_losing_its_data_mid_request_never_settles_the_ledger_below_what_was_billed(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    """Attack: hold big reservations in flight on two processes while Redis dies and comes back
    empty; the settlements then land on a Redis that never saw the reservations."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 2))
        a, b = gateways
        key = a.create_key("spender", "--daily-tokens", "100000")
        day = time.strftime("%Y-%m-%d", time.gmtime())
        fake.state.hang(seconds=2.0, body_contains="hold me", count=3)

        async def scenario() -> list[tuple[int, object, object]]:
            async with aiohttp.ClientSession() as s:
                # Settled already, not yet in the ledger (every process flushes every 5 s).
                done = list(await asyncio.gather(*(post(s, gw, key, body(max_tokens=300)) for gw in (a, b, a, b))))
                slow = [asyncio.create_task(post(s, gw, key, body(max_tokens=4000, text="hold me"))) for gw in (a, b, a)]
                deadline = time.monotonic() + 10
                while len(fake.state.requests_for("/v1/messages")) < 4 + 3:
                    assert time.monotonic() < deadline, "the held requests never reached upstream"
                    await asyncio.sleep(0.01)
                redis.stop()  # SIGKILL: the reservations (and their ledger share) are gone with it
                redis.start()  # same port, empty
                return done + list(await asyncio.gather(*slow))

        held = asyncio.run(scenario())
        assert [s for s, _, _ in held] == [200] * 7, held
        billed = sum(_used(d["usage"]) for _, d, _ in held)  # type: ignore[index]
        assert billed == sum(x.tokens for x in fake.state.billed)
        # Every replica flushes within 5 s (and notices Redis within 1 s): the ledger ends at
        # least at what upstream billed (more only if a flush took a reservation before the kill).
        deadline = time.monotonic() + 15
        while _ledger(a, "spender", day) < billed:
            assert time.monotonic() < deadline, f"ledger {_ledger(a, 'spender', day)} < billed {billed}"
            time.sleep(0.2)
        # And admission's day (seeded from that ledger) counts them too: no fresh budget.
        status, doc, _ = run_parallel([b], key, [body()])[0]
        assert status == 200, doc
        assert int(redis.cli("GET", f"cg:{{spender}}:day:{day}")) >= billed + _used(doc["usage"])
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
            assert "Traceback" not in gw.log_path.read_text()
    finally:
        redis.stop()


# --- ownership across processes (PostgreSQL) ------------------------------------------------

def _hdr(key: str, files: bool = False) -> dict[str, str]:
    beta = {"anthropic-beta": "files-api-2025-04-14"} if files else {}
    return {"x-api-key": key, "anthropic-version": "2023-06-01", **beta}


def _upload(gw: GatewayProc, key: str, name: str = "a.txt") -> httpx.Response:
    return httpx.post(gw.url + "/v1/files", headers=_hdr(key, True), files={"file": (name, b"secret words", "text/plain")},
                      timeout=30)  # fmt: skip


def _ref(file_id: str) -> dict[str, Any]:
    return {**body(), "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": file_id}}, {"type": "text", "text": "sum up"}]}]}


def test_another_keys_objects_and_cursors_through_the_other_process_are_not_found(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: alice's file, batch and list cursor, made on A, used by bob on B (every access
    operation, a reference in a message, a count_tokens and a batch); alice's cursor after a rotate;
    and a name revoked and created anew while its old holder's upload is still in flight."""
    state = state_section(redis_db, postgres_server, postgres_server.fresh_database())
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    alice, bob = a.create_key("alice"), a.create_key("bob")
    files = []
    for _ in range(2):
        r = _upload(a, alice)
        assert r.status_code == 200, r.text
        files.append(r.json()["id"])
    r = httpx.post(a.url + "/v1/messages/batches", headers=_hdr(alice), json={"requests": [
        {"custom_id": "x", "params": body()}]})  # fmt: skip
    assert r.status_code == 200, r.text
    batch = r.json()["id"]
    listed = httpx.get(a.url + "/v1/files", headers=_hdr(alice, True), params={"limit": "1"}).json()
    cursor = listed["next_page"]
    assert cursor

    fake.state.clear_requests()
    fid = files[0]
    tries = [
        ("GET", f"/v1/files/{fid}", None), ("GET", f"/v1/files/{fid}/content", None), ("DELETE", f"/v1/files/{fid}", None),
        ("POST", "/v1/messages", _ref(fid)), ("POST", "/v1/messages/count_tokens", _ref(fid)),
        ("POST", "/v1/messages/batches", {"requests": [{"custom_id": "y", "params": _ref(fid)}]}),
        ("GET", f"/v1/messages/batches/{batch}", None), ("GET", f"/v1/messages/batches/{batch}/results", None),
        ("POST", f"/v1/messages/batches/{batch}/cancel", None), ("DELETE", f"/v1/messages/batches/{batch}", None),
    ]  # fmt: skip
    for method, path, doc in tries:
        r = httpx.request(method, b.url + path, headers=_hdr(bob, True), json=doc)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", (method, path, r.text)
    # alice's cursor, minted on A, replayed by bob on B: refused, shows nothing.
    r = httpx.get(b.url + "/v1/files", headers=_hdr(bob, True), params={"page": cursor})
    assert r.status_code == 400, r.text
    for name in ("after_id", "before_id"):
        r = httpx.get(b.url + "/v1/files", headers=_hdr(bob, True), params={name: fid})
        assert r.status_code == 200 and r.json()["data"] == [], r.text
    assert fake.state.requests == [], [x.path for x in fake.state.requests]

    # A rotate keeps the client: its cursor and objects stay its own, on either process.
    new_alice = b.cli("keys", "rotate", "alice").stdout.strip().splitlines()[-1]
    r = httpx.get(a.url + "/v1/files", headers=_hdr(new_alice, True), params={"page": cursor})
    assert r.status_code == 200 and [f["id"] for f in r.json()["data"]] == [files[0]], r.text

    # The name revoked and given to someone else while the old holder's upload is upstream:
    # the new holder of the name must not own what the old one's request makes.
    fake.state.hang(seconds=1.5, path="/v1/files", count=1)
    out: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: out.append(_upload(a, new_alice, "late.txt")))
    sender.start()
    deadline = time.monotonic() + 10
    while not fake.state.requests_for("/v1/files", "POST"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    b.cli("keys", "revoke", "alice")
    stranger = b.create_key("alice")  # same name, another client
    sender.join(30)
    assert out[0].status_code == 200, out[0].text  # upstream made it: it belongs to nobody now
    late = out[0].json()["id"]
    theirs = httpx.get(b.url + "/v1/files", headers=_hdr(stranger, True)).json()
    assert theirs["data"] == [], theirs  # neither the old holder's files nor the late one
    # The old holder's cursor opens for the name, but names none of the new holder's objects.
    r = httpx.get(a.url + "/v1/files", headers=_hdr(stranger, True), params={"page": cursor})
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    r = httpx.get(b.url + f"/v1/files/{late}", headers=_hdr(stranger, True))
    assert r.status_code == 404, r.text
    for gw in gateways:
        assert "Traceback" not in gw.log_path.read_text()


# --- limits: every kind of operation counts, across processes -------------------------------

async def _call(s: aiohttp.ClientSession, gw: GatewayProc, key: str, what: str, text: str = "hello") -> tuple[int, Any]:
    """One operation of kind `what` on `gw`: its status and JSON answer."""
    method, path, doc = {
        "message": ("POST", "/v1/messages", body(text=text)),
        "count": ("POST", "/v1/messages/count_tokens", {k: v for k, v in body(text=text).items() if k != "max_tokens"}),
        "batch": ("POST", "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": body(text=text)}]}),
        "files": ("GET", "/v1/files", None),
        "batches": ("GET", "/v1/messages/batches", None),
        "models": ("GET", "/v1/models", None),
    }[what]
    async with s.request(method, gw.url + path, json=doc, headers=_hdr(key, True)) as r:
        return r.status, await r.json()


def test_every_kind_of_operation_counts_once_against_limits_shared_by_two_processes(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    """Attack: spend a key's rpm on the operations that bill no tokens (count_tokens, lists,
    the model list) and on batch creation, split over two processes; then open more requests
    than the in-flight cap at once, on both processes, every kind mixed."""
    gateways.extend(fleet(tmp_path, fake, redis_db, 2, max_in_flight_per_key=4))
    a = gateways[0]
    rated = a.create_key("rated", "--rpm", "12")
    kinds = ["message", "count", "batch", "files", "batches", "models"]

    async def rpm_waves() -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []
        async with aiohttp.ClientSession() as s:
            for wave in range(9):  # 4 at a time (under the in-flight cap): only rpm can refuse
                what = [kinds[(wave * 4 + i) % len(kinds)] for i in range(4)]
                got = await asyncio.gather(*(_call(s, gateways[i % 2], rated, w) for i, w in enumerate(what)))
                seen += [(w, st) for w, (st, _) in zip(what, got, strict=True)]
        return seen

    seen = asyncio.run(rpm_waves())
    assert [st for _, st in seen].count(200) == 12, seen
    assert {st for _, st in seen} == {200, 429}, seen
    assert [st for _, st in seen[:12]] == [200] * 12  # the first twelve, whatever their kind
    # Upstream saw only the admitted ones that are forwarded (lists are answered locally).
    forwarded = [w for w, st in seen if st == 200 and w in ("message", "count", "batch", "models")]
    asked = [r for r in fake.state.requests if r.path in ("/v1/messages", "/v1/messages/count_tokens",
                                                           "/v1/messages/batches", "/v1/models")]  # fmt: skip
    assert len(asked) == len(forwarded), ([r.path for r in asked], forwarded)

    flying = a.create_key("flying")
    fake.state.hang(seconds=1.5, body_contains="slow please", count=32)

    async def burst() -> list[tuple[str, int, Any]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            what = [kinds[i % 3] for i in range(16)]  # message, count, batch: all reach upstream
            got = await asyncio.gather(*(_call(s, gateways[i % 2], flying, w, "slow please") for i, w in enumerate(what)))
            return [(w, st, doc) for w, (st, doc) in zip(what, got, strict=True)]

    results = asyncio.run(burst())
    assert [st for _, st, _ in results].count(200) == 4, [(w, st) for w, st, _ in results]
    refused = [doc for _, st, doc in results if st != 200]
    assert all(d["error"]["type"] == "rate_limit_error" and "in flight" in d["error"]["message"] for d in refused)
    # Every place came back with its request's end (not a lease later): four more go through at once.
    assert int(redis_db.cli("ZCARD", "cg:{flying}:fly") or 0) == 0
    again = asyncio.run(_four(gateways, flying))
    assert again == [200] * 4
    for gw in gateways:
        assert "Traceback" not in gw.log_path.read_text()


async def _four(gateways: list[GatewayProc], key: str) -> list[int]:
    async with aiohttp.ClientSession() as s:
        return [st for st, _ in await asyncio.gather(*(_call(s, gateways[i % 2], key, "message") for i in range(4)))]


# --- accounting: the differential check on shared state, with a partition -------------------

def test_charged_is_at_least_billed_on_shared_state_through_a_postgres_partition(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: the generated workload of tests/gateway/test_accounting_differential.py (messages,
    streams read whole or cut at any point, referenced files, URL sources, batches, lists,
    count_tokens; three keys with daily budgets) over two processes on Redis and PostgreSQL,
    while process A loses PostgreSQL for a while (uploads and batch creation there fail closed,
    usage waits in memory, batches are settled in the background by either process)."""
    url = postgres_server.fresh_database()
    extra = {"batch_poll_seconds": 0.2, "limits": {"url_source_tokens": 8_000}}
    with TcpRelay(postgres_server.port) as relay:
        cut_off = {**state_section(redis_db, postgres_server, url.replace(f":{postgres_server.port}/", f":{relay.port}/")),
                   **extra}  # fmt: skip
        direct = {**state_section(redis_db, postgres_server, url), **extra}
        gateways.extend(pg_fleet(tmp_path, fake, [cut_off, direct]))
        for gw in gateways:
            gw.start()
        a, b = gateways
        keys = {name: b.create_key(name, "--daily-tokens", str(budget)) for name, budget in BUDGETS.items()}
        fake.state.configure(event_delay=0.01, batch_processing_seconds=0.5)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        loads = [Workload(random.Random(606 + i), [a, b], keys) for i in range(3)]
        errors: list[BaseException] = []

        def run(load: Workload) -> None:
            _drive(load, errors)

        # Admission's view of each day (reservations in flight included) never passes a budget.
        peak: dict[str, int] = dict.fromkeys(BUDGETS, 0)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for n in BUDGETS:
                    peak[n] = max(peak[n], int(redis_db.cli("GET", f"cg:{{{n}}}:day:{day}") or 0))
                done.wait(0.05)

        workers = [threading.Thread(target=run, args=(w,)) for w in loads] + [threading.Thread(target=sample)]
        for t in workers:
            t.start()
        done.wait(1.0)
        relay.cut()  # the attack's schedule: A loses PostgreSQL mid-workload ...
        done.wait(2.0)
        relay.restore()  # ... and gets it back
        for t in workers[:-1]:
            t.join()
        done.set()
        workers[-1].join()
        assert not errors, errors
        assert all(peak[n] <= budget for n, budget in BUDGETS.items()), peak

        def ledger() -> dict[str, int]:
            rows = _pg(url, postgres_server.password, "SELECT name, tokens FROM daily_usage WHERE day = $1", day)
            return {r["name"]: int(r["tokens"]) for r in rows}

        billed: dict[str, int] = dict.fromkeys(BUDGETS, 0)
        deadline = time.monotonic() + 30
        while True:  # batches settle in the background; every process flushes every 5 s
            open_ = _pg(url, postgres_server.password, "SELECT count(*) AS n FROM batch_charges WHERE settled_at IS NULL")
            billed = dict.fromkeys(BUDGETS, 0)
            for x in fake.state.billed:
                found = _MARK.search(json.dumps(x.params))
                assert found is not None, x.params
                billed[found.group(1)] += x.tokens
            charged = ledger()
            if open_[0]["n"] == 0 and all(charged.get(n, 0) >= billed[n] for n in BUDGETS):
                break
            assert time.monotonic() < deadline, (open_[0]["n"], charged, billed)
            time.sleep(0.3)
    statuses: dict[str, int] = {}
    for load in loads:
        for k, v in load.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    for n, budget in BUDGETS.items():
        assert charged.get(n, 0) <= budget and billed[n] <= budget, (n, charged, billed)
        # Admission's day counts at least what the ledger says was billed.
        assert int(redis_db.cli("GET", f"cg:{{{n}}}:day:{day}") or 0) >= billed[n], (n, billed)
    assert any(k.startswith("cut") for k in statuses) and any(k.startswith("batch 200") for k in statuses), statuses
    for gw in gateways:
        assert gw.proc is not None and gw.proc.poll() is None
        assert "Traceback" not in gw.log_path.read_text()
        assert all(r.get("status") != 500 for r in gw.audit()), gw.workdir


# --- outages: PostgreSQL itself stopped (not a partition) under load ------------------------

def _ready(gw: GatewayProc) -> dict[str, Any]:
    with urllib.request.urlopen(gw.internal_url + "/readyz", timeout=2) as r:
        return dict(json.loads(r.read()))


def test_postgres_stopped_and_started_under_load_serves_known_keys_and_fails_writes_closed(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: the database server itself goes away (pg_ctl stop -m immediate: every connection
    of every process dropped, then "starting up" refusals) while a known key keeps sending
    through both processes; then it comes back and a revocation must reach both within 1 s."""
    state = state_section(redis_db, postgres_server, postgres_server.fresh_database())
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    known = a.create_key("known")
    unseen = a.create_key("unseen")  # never used before the outage
    for gw in gateways:
        assert run_parallel([gw], known, [body()])[0][0] == 200
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                r = c.post(gateways[i % 2].url + "/v1/messages", headers=_hdr(known), json=body())
                statuses.append(r.status_code)
                i += 1

    sender = threading.Thread(target=load)
    sender.start()
    try:
        postgres_server.stop("immediate")
        try:
            deadline = time.monotonic() + 5
            while any(_ready(gw).get("degraded") != ["postgres"] for gw in gateways):
                assert time.monotonic() < deadline, [_ready(gw) for gw in gateways]
                time.sleep(0.05)
            fake.state.clear_requests()
            for gw in gateways:
                r = _upload(gw, known)
                assert r.status_code == 503 and r.json()["error"]["type"] == "api_error", r.text
                assert int(r.headers["retry-after"]) >= 1
                assert run_parallel([gw], unseen, [body()])[0][0] == 503
                r = httpx.get(gw.url + "/v1/files", headers=_hdr(known, True))
                assert r.status_code == 503, r.text
            assert not fake.state.requests_for("/v1/files")  # refused before upstream made anything
            assert b.cli("keys", "create", "newcomer", check=False).returncode != 0
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 5
        while any(_ready(gw).get("degraded") for gw in gateways):
            assert time.monotonic() < deadline, [_ready(gw) for gw in gateways]
            time.sleep(0.05)
        assert run_parallel([a], unseen, [body()])[0][0] == 200
        assert _upload(b, known).status_code == 200
        b.cli("keys", "revoke", "known")
        revoked = time.monotonic()
        while not all(run_parallel([gw], known, [body()])[0][0] == 401 for gw in gateways):
            assert time.monotonic() - revoked < 1.0, "a revocation after the return was not pushed within 1 s"
            time.sleep(0.02)
    finally:
        stop.set()
        sender.join(30)
    # The known key was served throughout (from each process's cache while the server was away).
    assert statuses and set(statuses) <= {200, 401}, sorted(set(statuses))
    assert statuses.count(200) > 10
    for gw in gateways:
        assert gw.proc is not None and gw.proc.poll() is None
        assert "Traceback" not in gw.log_path.read_text()
        assert all(r.get("status") != 500 for r in gw.audit()), gw.workdir


# --- ownership: what code execution makes, across processes ---------------------------------

_CODE = {"type": "code_execution_20250825", "name": "code_execution"}


def _code_result(name: str, content: str) -> dict[str, Any]:
    """A scripted code execution result that writes one file (the fake stores it, names its id)."""
    return {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_01", "content": {
        "type": "code_execution_result", "stdout": "", "stderr": "", "return_code": 0,
        "content": [{"type": "code_execution_output", "filename": name, "file_content": content}]}}  # fmt: skip


def _run_code(**extra: Any) -> dict[str, Any]:
    return {**body(max_tokens=50, text="make a chart"), "tools": [_CODE], **extra}


def test_code_outputs_and_containers_stay_their_makers_across_processes_and_name_reuse(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: alice's code run on A wrote a file and made a container; bob, on B, reads, deletes,
    references the file and names the container. Then a batch of alice's runs code out of sight,
    and the name is revoked and given to someone else before the batch settles (in the background,
    on either process): the batch's output file must not become the new holder's."""
    state = {**state_section(redis_db, postgres_server, postgres_server.fresh_database()), "batch_poll_seconds": 0.2}
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    alice, bob = a.create_key("alice"), a.create_key("bob")
    fake.state.configure(script=[_code_result("chart.csv", "x,y\n1,2\n"), {"type": "text", "deltas": ["done"]}])
    r = httpx.post(a.url + "/v1/messages", headers=_hdr(alice, True), json=_run_code(), timeout=30)
    assert r.status_code == 200, r.text
    (out,) = [o["file_id"] for blk in r.json()["content"] if blk["type"] == "code_execution_tool_result"
              for o in blk["content"]["content"]]  # fmt: skip
    container = r.json()["container"]["id"]
    got = httpx.get(b.url + f"/v1/files/{out}/content", headers=_hdr(alice, True))
    assert got.status_code == 200 and got.content == b"x,y\n1,2\n", got.text
    fake.state.clear_requests()
    for method, path, doc in [("GET", f"/v1/files/{out}", None), ("GET", f"/v1/files/{out}/content", None),
                              ("DELETE", f"/v1/files/{out}", None), ("POST", "/v1/messages", _ref(out)),
                              ("POST", "/v1/messages", _run_code(container=container))]:  # fmt: skip
        r = httpx.request(method, b.url + path, headers=_hdr(bob, True), json=doc)
        assert r.status_code == 404, (method, path, r.text)
    assert fake.state.requests == []
    r = httpx.post(b.url + "/v1/messages", headers=_hdr(alice, True), json=_run_code(container=container))
    assert r.status_code == 200, r.text  # the maker may go on in its container, on either process

    fake.state.configure(script=[_code_result("batch.csv", "a,b\n")], batch_processing_seconds=1.0)
    before = set(fake.state.files)
    r = httpx.post(a.url + "/v1/messages/batches", headers=_hdr(alice, True),
                   json={"requests": [{"custom_id": "one", "params": _run_code()}]})  # fmt: skip
    assert r.status_code == 200, r.text
    batch = r.json()["id"]
    b.cli("keys", "revoke", "alice")
    stranger = b.create_key("alice")  # the name, given to someone else before the batch ends
    deadline = time.monotonic() + 15
    while not any(rec.get("event") == "batch_settled" for gw in gateways for rec in gw.audit()):
        assert time.monotonic() < deadline, "no process settled the batch"
        time.sleep(0.1)
    (late,) = set(fake.state.files) - before  # the file the batch's run wrote
    for gw in gateways:
        assert httpx.get(gw.url + f"/v1/files/{late}", headers=_hdr(stranger, True)).status_code == 404
        assert httpx.get(gw.url + f"/v1/messages/batches/{batch}", headers=_hdr(stranger)).status_code == 404
        assert httpx.get(gw.url + "/v1/files", headers=_hdr(stranger, True)).json()["data"] == []
        assert "Traceback" not in gw.log_path.read_text()
    fake.state.configure(script=None)


def test_a_client_at_its_in_flight_cap_is_never_refused_by_its_own_finished_requests(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    """Attack (on the gateway's exactness, from an honest client): keep exactly the in-flight cap of
    requests open over two processes, each worker sending its next request, whole or streamed,
    the moment the previous answer has ended. None may be refused as "in flight"."""
    gateways.extend(fleet(tmp_path, fake, redis_db, 2, max_in_flight_per_key=2))
    key = gateways[0].create_key("eager")
    stream = {**body(), "stream": True}

    async def worker(s: aiohttp.ClientSession, n: int) -> list[int]:
        seen = []
        for i in range(12):
            gw = gateways[(n + i) % 2]
            doc = stream if i % 2 else body()
            async with s.post(gw.url + "/v1/messages", json=doc, headers=_hdr(key)) as r:
                await r.read()  # to the end of the answer (a stream's last chunk)
                seen.append(r.status)
        return seen

    async def go() -> list[int]:
        async with aiohttp.ClientSession() as s:
            return [st for got in await asyncio.gather(worker(s, 0), worker(s, 1)) for st in got]

    statuses = asyncio.run(go())
    assert statuses == [200] * 24, statuses


# --- a revocation against a request already admitted whose body is still coming ------------

def test_a_body_trickled_past_a_revocation_is_not_forwarded(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: open a request on B with the key's headers (checked then), send its body slowly
    (the edge streams bodies through; nginx only cuts a client silent for client_body_timeout),
    get the key revoked on A meanwhile, then finish the body: it must not reach upstream."""
    state = state_section(redis_db, postgres_server, postgres_server.fresh_database())
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    key = a.create_key("doomed")
    assert run_parallel([b], key, [body()])[0][0] == 200
    fake.state.clear_requests()
    doc = json.dumps(body(text="sent after my key was revoked")).encode()
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
            f"content-type: application/json\r\ncontent-length: {len(doc)}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", b.port)) as s:
        s.sendall(head + doc[:10])
        began = time.monotonic()
        a.cli("keys", "revoke", "doomed")
        while run_parallel([b], key, [body()])[0][0] != 401:  # B applied the revocation
            assert time.monotonic() - began < 5
            time.sleep(0.02)
        time.sleep(max(0.0, began + 0.8 - time.monotonic()))  # a trickle: the body takes its time
        s.sendall(doc[10:])
        s.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 40:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert fake.state.requests_for("/v1/messages") == []
    assert "Traceback" not in b.log_path.read_text()



def _metrics(gw: GatewayProc) -> str:
    with urllib.request.urlopen(gw.internal_url + "/metrics", timeout=2) as r:
        return str(r.read().decode())


def test_the_in_flight_cap_is_shared_out_while_redis_is_away_and_exact_on_its_return(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    """Attack: with Redis down, open far more held requests than the in-flight cap over two
    processes. Each process's own cap is the whole cap: the fleet let twice the cap fly."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 2, max_in_flight_per_key=4))
        key = gateways[0].create_key("flying")
        deadline = time.monotonic() + 5
        while not all("claudegate_state_live_replicas 2\n" in _metrics(gw) for gw in gateways):
            assert time.monotonic() < deadline, "the replicas never saw each other in Redis"
            time.sleep(0.05)
        redis.stop()
        fake.state.hang(seconds=0.7, body_contains="slow please", count=64)
        for _ in range(2):  # the places come back at each request's end, Redis or not
            statuses = sorted(s for s, _, _ in run_parallel(gateways, key, [body(text="slow please")] * 16))
            assert statuses == [200] * 4 + [429] * 12, statuses
        redis.start()
        deadline = time.monotonic() + 5
        while not all("claudegate_state_redis_up 1\n" in _metrics(gw) for gw in gateways):
            assert time.monotonic() < deadline, "Redis's return was not noticed"
            time.sleep(0.05)
        statuses = sorted(s for s, _, _ in run_parallel(gateways, key, [body(text="slow please")] * 16))
        assert statuses == [200] * 4 + [429] * 12, statuses
        for gw in gateways:
            assert "Traceback" not in gw.log_path.read_text()
    finally:
        redis.stop()


# --- limits changed, and a rotation's overlap ending, seen by the other process -------------

def test_a_budget_lowered_and_a_rotation_overlap_ending_on_one_process_bind_the_other(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: keep sending through B (which has the key and its limits cached) while A lowers the
    key's daily budget below what it spent, raises it again, and rotates it with a short overlap."""
    state = state_section(redis_db, postgres_server, postgres_server.fresh_database())
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    key = a.create_key("spender", "--daily-tokens", "100000")
    assert run_parallel([b], key, [body(), body()])[0][0] == 200  # cached on B, today's counter seeded

    def within_a_second(expect: int, what: str, k: str = key) -> None:
        changed = time.monotonic()
        while (got := run_parallel([b], k, [body()])[0])[0] != expect:
            assert time.monotonic() - changed < 1.0, (what, got[0], got[1])
            time.sleep(0.02)
        if expect == 429:
            assert "daily budget" in got[1]["error"]["message"], got[1]

    a.cli("keys", "update", "spender", "--daily-tokens", "10")  # below what it spent today
    within_a_second(429, "a lowered budget did not bind the other process within 1 s")
    a.cli("keys", "update", "spender", "--daily-tokens", "100000")
    within_a_second(200, "a raised budget did not reach the other process within 1 s")
    new = a.cli("keys", "rotate", "spender", "--overlap", "1s").stdout.strip().splitlines()[-1]
    assert run_parallel([b], key, [body()])[0][0] == 200  # the overlap: both keys work
    assert run_parallel([b], new, [body()])[0][0] == 200
    deadline = time.monotonic() + 10
    while run_parallel([b], key, [body()])[0][0] == 200:  # until the overlap ends, by B's clock
        assert time.monotonic() < deadline, "the old key outlived its overlap"
        time.sleep(0.05)
    assert run_parallel([b], key, [body()])[0][0] == 401
    assert run_parallel([b], new, [body()])[0][0] == 200
    assert "Traceback" not in b.log_path.read_text()


def test_charged_is_at_least_billed_when_redis_dies_and_comes_back_empty_mid_workload(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    """Attack: the generated workload over two processes while Redis is killed and started again
    empty: requests in flight, settled but not yet flushed, and refused (503) in between."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 2, batch_poll_seconds=0.2,
                              limits={"url_source_tokens": 8_000}))  # fmt: skip
        a, b = gateways
        keys = {name: a.create_key(name, "--daily-tokens", str(budget)) for name, budget in BUDGETS.items()}
        fake.state.configure(event_delay=0.01, batch_processing_seconds=0.5)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        loads = [Workload(random.Random(707 + i), [a, b], keys) for i in range(3)]
        errors: list[BaseException] = []
        done = threading.Event()

        def run(load: Workload) -> None:
            _drive(load, errors)

        workers = [threading.Thread(target=run, args=(w,)) for w in loads]
        for t in workers:
            t.start()
        done.wait(1.0)  # the attack's schedule: Redis dies mid-workload ...
        redis.stop()
        done.wait(1.0)
        redis.start()  # ... and comes back empty
        for t in workers:
            t.join()
        assert not errors, errors

        def open_batches() -> int:
            with contextlib.closing(sqlite3.connect(a.keystore_path)) as db:
                return int(db.execute("SELECT count(*) FROM batch_charges WHERE settled_at IS NULL").fetchone()[0])

        deadline = time.monotonic() + 30
        while True:  # batches settle in the background; every process flushes every 5 s
            billed = dict.fromkeys(BUDGETS, 0)
            for x in fake.state.billed:
                found = _MARK.search(json.dumps(x.params))
                assert found is not None, x.params
                billed[found.group(1)] += x.tokens
            charged = {n: _ledger(a, n, day) for n in BUDGETS}
            if open_batches() == 0 and all(charged[n] >= billed[n] for n in BUDGETS):
                break
            assert time.monotonic() < deadline, (open_batches(), charged, billed)
            time.sleep(0.3)
        statuses: dict[str, int] = {}
        for load in loads:
            for k, v in load.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        assert any(k.endswith("503") for k in statuses), statuses  # the outage was met
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
            assert "Traceback" not in gw.log_path.read_text()
            records = gw.audit()
            assert all(r.get("status") != 500 for r in records), gw.workdir
            # Every refusal of the outage was Anthropic-shaped (api_error, the gateway's own 503).
            assert all(r["error_type"] == "api_error" for r in records if r.get("status") == 503), gw.workdir
    finally:
        redis.stop()
