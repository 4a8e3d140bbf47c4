"""In-process pieces that keep one client from taking more than its share:
the fair upstream slots, the in-flight cap, the bounded audit log, the bounded
key cache, the additive daily budget, the ownership record and list filter."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from claudegate_gateway.audit import AuditLog
from claudegate_gateway.concurrency import FairSlots, InFlight
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import KEY_PREFIX, KeyStore, Scopes
from claudegate_gateway.limits import Limiter
from claudegate_gateway.objects import Objects
from claudegate_gateway.ownership import file_ids
from claudegate_gateway.store import SqliteStore


def test_in_flight_cap_is_a_429_with_retry_after_and_frees_on_exit() -> None:
    cap = InFlight(2)
    with cap.admit("a"), cap.admit("a"):
        with pytest.raises(GatewayError) as err, cap.admit("a"):
            pass
        assert err.value.status == 429 and err.value.error_type == "rate_limit_error"
        assert err.value.headers["retry-after"] == "1"
        with cap.admit("b"):  # another key is not affected
            assert cap.count("b") == 1
    assert cap.count("a") == 0
    with cap.admit("a"):
        pass


def test_fair_slots_go_to_the_key_holding_fewest() -> None:
    async def run() -> list[str]:
        slots = FairSlots(2)
        order: list[str] = []
        await slots.acquire("flood")
        await slots.acquire("flood")  # the pool is full
        waiters = [asyncio.create_task(slots.acquire("flood")) for _ in range(5)]
        await asyncio.sleep(0)
        late = asyncio.create_task(slots.acquire("polite"))
        await asyncio.sleep(0)
        for task, name in [*((w, "flood") for w in waiters), (late, "polite")]:
            task.add_done_callback(lambda _t, n=name: order.append(n))
        slots.release("flood")  # one slot frees: "polite" holds none, so it goes first
        await asyncio.sleep(0)
        assert slots.held("polite") == 1 and slots.waiting("flood") == 5
        for _ in range(5):
            slots.release("flood")
            await asyncio.sleep(0)
        await asyncio.gather(*waiters, late)
        return order

    assert asyncio.run(run())[0] == "polite"


def test_fair_slot_wait_times_out_and_a_cancelled_waiter_leaks_nothing() -> None:
    async def run() -> None:
        slots = FairSlots(1)
        await slots.acquire("a")
        with pytest.raises(GatewayError) as err:
            async with slots.slot("b", wait=0.05):
                pass
        assert err.value.error_type == "timeout_error"
        task = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slots.waiting() == 0
        slots.release("a")
        assert slots.free == 1
        async with slots.slot("b", wait=0.05):
            assert slots.free == 0
        assert slots.free == 1

    asyncio.run(run())


def test_audit_fields_are_bounded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", field_chars=100)
    log.write({"model": "m" * 20_000_000, "filters": [{"rule": "r" * 500}] * 1000, "path": "/v1/x"})
    log.close()
    line = (tmp_path / "audit.jsonl").read_bytes()
    assert len(line) < 10_000
    rec = json.loads(line)
    assert rec["model"].startswith("m" * 100) and "more chars" in rec["model"]
    assert len(rec["filters"]) == 33 and rec["path"] == "/v1/x"


def test_audit_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, rotate_bytes=65536, keep_files=3)
    for i in range(4000):
        log.write({"i": i, "pad": "x" * 100})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    assert all(p.stat().st_size <= 65536 for p in tmp_path.iterdir())
    # Nothing torn: every kept line is whole and the newest is in audit.jsonl.
    assert json.loads(path.read_text().splitlines()[-1])["i"] == 3999
    for p in tmp_path.iterdir():
        for line in p.read_text().splitlines():
            json.loads(line)


def test_two_writers_follow_each_others_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    a = AuditLog(path, rotate_bytes=65536, keep_files=2)
    b = AuditLog(path, rotate_bytes=65536, keep_files=2)
    for i in range(3000):
        (a if i % 2 else b).write({"i": i, "pad": "x" * 100})
    a.close()
    b.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 2 * 65536 for p in tmp_path.iterdir())


def test_unknown_key_ids_do_not_grow_the_cache(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db", "pepper", cache_entries=64)
    good = store.create("team", Scopes())
    for _ in range(1000):
        public = KEY_PREFIX + secrets.token_hex(5)
        assert store.authenticate(f"{public}_{secrets.token_hex(20)}") is None
    assert len(store._cache) <= 64
    client = store.authenticate(good)
    assert client is not None and client.name == "team"
    store.close()


def test_daily_usage_is_added_not_overwritten(tmp_path: Path) -> None:
    one = KeyStore(tmp_path / "keys.db", "pepper")
    two = KeyStore(tmp_path / "keys.db", "pepper")
    day = Limiter().day
    assert one.reserve_daily("team", day, 700, 10_000) is None
    assert two.reserve_daily("team", day, 500, 10_000) is None
    assert one.daily_used("team", day) == two.daily_used("team", day) == 1200
    # The other process's usage counts at once: 9,000 more does not fit under 10,000.
    assert one.reserve_daily("team", day, 9_000, 10_000) == 1200
    two.add_daily("team", day, -5000)  # a refund never takes the total below zero
    assert one.daily_used("team", day) == 0
    one.close()
    two.close()


def test_reusing_a_revoked_name_does_not_inherit_its_objects(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db", "pepper")
    store.create("team", Scopes())
    store.owners.record("batch", "msgbatch_1", "team")
    assert store.owners.owns("batch", "msgbatch_1", "team")
    store.owners.record("batch", "msgbatch_1", "intruder")  # first claim wins
    assert not store.owners.owns("batch", "msgbatch_1", "intruder")
    store.revoke("team")
    store.create("team", Scopes())
    assert not store.owners.owns("batch", "msgbatch_1", "team")
    store.close()


def test_file_ids_found_at_any_depth() -> None:
    body = {
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "document", "source": {"type": "file", "file_id": "file_inner"}}]},
            {"type": "image", "source": {"type": "file", "file_id": "file_img"}},
        ]}],
        "future_field": {"deep": [{"file_id": 12}]},
    }
    assert sorted(map(str, file_ids(body))) == ["12", "file_img", "file_inner"]


def _objects(tmp_path: Path, pepper: str = "pepper", name: str = "keys.db") -> tuple[KeyStore, Objects]:
    store = KeyStore(tmp_path / name, pepper)
    return store, Objects(SqliteStore(store).owners, store.digest)


async def _no_upstream(object_id: str) -> tuple[int, object]:
    raise AssertionError(f"a list asked upstream for {object_id}")


def _list(objects: Objects, who: str, kind: str = "batch", **query: str) -> dict[str, object]:
    client = type("C", (), {"name": who})()
    return asyncio.run(objects.list_page(client, kind, tuple(query.items()), _no_upstream))  # type: ignore[arg-type]


def test_lists_page_the_owners_objects_from_the_index_both_ways(tmp_path: Path) -> None:
    store, objects = _objects(tmp_path)
    mine: list[str] = []
    for i in range(23):
        mine.append(f"msgbatch_a{i:03d}")
        store.owners.record("batch", mine[-1], "team-a", obj=json.dumps({"id": mine[-1], "type": "message_batch"}))
        store.owners.record("batch", f"msgbatch_b{i:03d}", "team-b", obj="{}")
        store.owners.record("file", f"file_a{i:03d}", "team-a", obj="{}")  # another kind: never in a batch list
    # Several objects made within one clock tick: the id breaks the tie, nothing is skipped or repeated.
    store._db.execute("UPDATE owned_objects SET created_at = 1000 WHERE id IN (?,?,?,?)", tuple(mine[5:9]))
    store._db.execute("UPDATE owned_objects SET created_at = 1000 + rowid WHERE created_at != 1000")
    expected = [r[0] for r in store._db.execute(
        "SELECT id FROM owned_objects WHERE owner='team-a' AND kind='batch' ORDER BY created_at DESC, id DESC")]
    seen: list[str] = []
    after: dict[str, str] = {}
    while True:
        page = _list(objects, "team-a", limit="4", **after)
        ids = [d["id"] for d in page["data"]]  # type: ignore[index, union-attr]
        assert ids and (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
        seen += ids
        if not page["has_more"]:
            break
        after = {"after_id": str(page["last_id"])}
    assert seen == expected and len(seen) == 23
    # Backwards from the oldest: the 4 just newer than it, in list order, and more beyond.
    back = _list(objects, "team-a", limit="4", before_id=expected[-1])
    assert [d["id"] for d in back["data"]] == expected[-5:-1] and back["has_more"] is True  # type: ignore[union-attr]
    top = _list(objects, "team-a", limit="4", before_id=expected[3])
    assert [d["id"] for d in top["data"]] == expected[:3] and top["has_more"] is False  # type: ignore[union-attr]
    # team-b's id, a file id, and no id at all: the same empty page.
    empty = {"data": [], "has_more": False, "first_id": None, "last_id": None}
    for cursor in ("msgbatch_b003", "file_a003", "msgbatch_nosuch"):
        assert _list(objects, "team-a", after_id=cursor) == empty
        assert _list(objects, "team-a", before_id=cursor) == empty
    with pytest.raises(GatewayError, match="Cannot specify both"):
        _list(objects, "team-a", after_id=expected[0], before_id=expected[1])
    store.close()


def test_a_list_page_is_one_indexed_query(tmp_path: Path) -> None:
    store, _ = _objects(tmp_path)
    plan = " ".join(str(r[-1]) for r in store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id, object FROM owned_objects WHERE owner = ? AND kind = ?"
        " AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?", ("a", "batch", 1.0, "x", 21)))
    assert "owned_objects_pages" in plan and "TEMP B-TREE" not in plan, plan
    store.close()


def test_files_next_page_is_sealed_for_its_client_and_list(tmp_path: Path) -> None:
    store, objects = _objects(tmp_path)
    for i in range(5):
        store.owners.record("file", f"file_position{i}", "team-a", obj=json.dumps({"id": f"file_position{i}"}))
    first = _list(objects, "team-a", "file", limit="2")
    cursor = str(first["next_page"])
    assert cursor.startswith("page_") and "position" not in cursor  # encrypted, not only signed
    assert objects.open_page("team-a", cursor) == first["last_id"]
    second = _list(objects, "team-a", "file", limit="2", page=cursor)
    assert [d["id"] for d in second["data"]] == ["file_position2", "file_position1"]  # type: ignore[union-attr]
    _, other = _objects(tmp_path, "another pepper", "other.db")
    for opener, who in ((objects, "team-b"), (other, "team-a")):
        with pytest.raises(GatewayError, match="page: not a page cursor"):
            opener.open_page(who, cursor)
    last = _list(objects, "team-a", "file", limit="2", page=str(second["next_page"]))
    assert last["next_page"] is None and last["has_more"] is False
    with pytest.raises(GatewayError, match="Cannot specify both"):
        _list(objects, "team-a", "file", page=cursor, after_id="file_position1")
    store.close()


def test_a_row_kept_before_objects_were_is_filled_in_once(tmp_path: Path) -> None:
    store, objects = _objects(tmp_path)
    store.owners.record("file", "file_old", "team-a")  # as an earlier version recorded it: no object
    store.owners.record("file", "file_gone", "team-a")
    asked: list[str] = []

    async def upstream(object_id: str) -> tuple[int, object]:
        asked.append(object_id)
        if object_id == "file_gone":
            return 404, {"type": "error"}
        return 200, {"id": object_id, "type": "file", "filename": "old.txt"}

    client = type("C", (), {"name": "team-a"})()
    page = asyncio.run(objects.list_page(client, "file", (), upstream))  # type: ignore[arg-type]
    assert [d["id"] for d in page["data"]] == ["file_old"] and page["data"][0]["filename"] == "old.txt"
    assert sorted(asked) == ["file_gone", "file_old"]
    assert not store.owners.owns("file", "file_gone", "team-a")  # gone upstream: forgotten
    again = _list(objects, "team-a", "file")  # no upstream call the second time
    assert [d["id"] for d in again["data"]] == ["file_old"]  # type: ignore[union-attr]
    store.close()


def test_filling_in_old_rows_is_bounded_per_list(tmp_path: Path) -> None:
    from claudegate_gateway.objects import MAX_FILLS_PER_LIST

    store, objects = _objects(tmp_path)
    for i in range(MAX_FILLS_PER_LIST + 10):
        store.owners.record("batch", f"msgbatch_old{i:03d}", "team-a")  # recorded before objects were kept
    asked: list[str] = []

    async def upstream(object_id: str) -> tuple[int, object]:
        asked.append(object_id)
        return 200, {"id": object_id, "type": "message_batch", "processing_status": "ended"}

    client = type("C", (), {"name": "team-a"})()
    first = asyncio.run(objects.list_page(client, "batch", (("limit", "1000"),), upstream))  # type: ignore[arg-type]
    assert len(asked) == MAX_FILLS_PER_LIST and len(first["data"]) == MAX_FILLS_PER_LIST + 10
    stubs = [d for d in first["data"] if "processing_status" not in d]
    assert len(stubs) == 10 and all(d["type"] == "message_batch" for d in stubs)
    asked.clear()
    second = asyncio.run(objects.list_page(client, "batch", (("limit", "1000"),), upstream))  # type: ignore[arg-type]
    assert len(asked) == 10 and all("processing_status" in d for d in second["data"])
    asked.clear()
    asyncio.run(objects.list_page(client, "batch", (("limit", "1000"),), upstream))  # type: ignore[arg-type]
    assert asked == []  # every row holds its object now
    store.close()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"max_in_flight_per_key": 129}, "max_in_flight_per_key: 129 is more than half of upstream.max_connections"),
        ({"max_in_flight_per_key": 3, "upstream": {"max_connections": 4}}, "set it to at most 2"),
        ({"max_in_flight_per_key": 0}, "max_in_flight_per_key: expected a whole number >= 1"),
        ({"audit_log_files": -1}, "audit_log_files: expected a whole number >= 0"),
        ({"audit_log_max_bytes": 10}, "audit_log_max_bytes: expected a whole number >= 65536"),
        ({"audit_field_max_chars": "long"}, "audit_field_max_chars: expected a whole number"),
        ({"max_upload_bytes": 1.5}, "max_upload_bytes: expected a whole number"),
        ({"max_upload_byte": 1}, "did you mean max_upload_bytes?"),
    ],
)
def test_new_config_keys_fail_with_the_key_and_the_fix(raw: dict[str, object], needle: str) -> None:
    from claudegate_gateway.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config(raw, "gw.yaml")
    assert str(err.value).startswith("gw.yaml: ") and needle in str(err.value)


def test_new_config_keys_defaults() -> None:
    from claudegate_gateway.config import parse_config

    cfg = parse_config({}, "gw.yaml")
    assert (cfg.max_in_flight_per_key, cfg.max_upload_bytes) == (32, 32 * 1024 * 1024)
    assert (cfg.audit_log_max_bytes, cfg.audit_log_files, cfg.audit_field_max_chars) == (64 << 20, 5, 512)
