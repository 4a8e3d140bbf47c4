"""Differential accounting: a generated workload, two gateway processes, one keystore.

For a seeded random mix of messages, streams read to the end or cut at a
random point, referenced files, URL sources, batches, lists and count_tokens, sent by
several keys through two gateway processes sharing one keystore (as during
a blue/green switch), what each key was charged (the keystore's
daily_usage, after every batch was settled) must be at least what the
recording fake upstream billed for that key's requests, and no key may
have been charged, or billed, beyond its daily budget.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
BUDGETS = {"k0": 25_000, "k1": 60_000, "k2": 400_000}
_MARK = re.compile(r"\[client (k\d)\]")
_CUT_AT = (None, b"message_start", b"content_block_start", b"content_block_delta", b"content_block_stop")


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def daily_usage(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return {n: int(t) for n, t in db.execute("SELECT name, SUM(tokens) FROM daily_usage GROUP BY name")}


def open_batches(db_path: Path) -> int:
    with sqlite3.connect(db_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM batch_charges WHERE settled_at IS NULL").fetchone()[0])


class Workload:
    def __init__(self, rng: random.Random, gateways: list[GatewayProc], keys: dict[str, str]) -> None:
        self.rng = rng
        self.gateways = gateways
        self.keys = keys
        self.files: dict[str, list[str]] = defaultdict(list)
        self.statuses: dict[str, int] = defaultdict(int)

    def content(self, name: str) -> list[dict[str, Any]]:
        rng = self.rng
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": f"[client {name}] reply with {rng.randint(1, 40)} words " + "z" * rng.randint(0, 3000)}
        ]
        for file_id in self.files[name]:
            if rng.random() < 0.4:
                blocks.insert(0, {"type": "document", "source": {"type": "file", "file_id": file_id}})
        if rng.random() < 0.1:
            blocks.insert(0, {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}})
        return blocks

    def params(self, name: str, **extra: Any) -> dict[str, Any]:
        max_tokens = self.rng.choice((5, 50, 400, 2_000))
        return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": self.content(name)}],
                **extra}  # fmt: skip

    def upload(self, gw: GatewayProc, name: str) -> None:
        data = ("ipsum " * self.rng.randint(100, 3_000)).encode()
        r = httpx.post(gw.url + "/v1/files", headers=hdr(self.keys[name]), files={"file": ("f.txt", data, "text/plain")})
        self.statuses[f"upload {r.status_code}"] += 1
        if r.status_code == 200:
            self.files[name].append(r.json()["id"])

    def cut_stream(self, gw: GatewayProc, name: str) -> None:
        body = json.dumps(self.params(name, stream=True)).encode()
        after = self.rng.choice(_CUT_AT)
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + self.keys[name].encode()
                      + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            if after is None:
                time.sleep(self.rng.random() * 0.05)
                self.statuses["cut before answer"] += 1
                return
            seen = b""
            s.settimeout(10)
            while after not in seen and b"\r\n0\r\n\r\n" not in seen:
                chunk = s.recv(65536)
                if not chunk:
                    break
                seen += chunk
                head, sep, _ = seen.partition(b"\r\n\r\n")
                if sep and b"text/event-stream" not in head:  # refused (a JSON error): nothing to cut
                    self.statuses[f"cut refused {head[9:12].decode()}"] += 1
                    return
            self.statuses[f"cut after {after.decode()}"] += 1

    def step(self, c: httpx.Client) -> None:
        rng = self.rng
        gw = rng.choice(self.gateways)
        name = rng.choice(sorted(self.keys))
        h = hdr(self.keys[name])
        op = rng.choices(("message", "stream", "cut", "count", "batch", "list", "upload"), (5, 3, 4, 2, 2, 2, 1))[0]
        if op == "upload" or (not self.files[name] and rng.random() < 0.5):
            self.upload(gw, name)
        elif op == "message":
            r = c.post(gw.url + "/v1/messages", headers=h, json=self.params(name))
            self.statuses[f"message {r.status_code}"] += 1
        elif op == "stream":
            with c.stream("POST", gw.url + "/v1/messages", headers=h, json=self.params(name, stream=True)) as r:
                r.read()
            self.statuses[f"stream {r.status_code}"] += 1
        elif op == "cut":
            self.cut_stream(gw, name)
        elif op == "count":
            p = self.params(name)
            del p["max_tokens"]
            r = c.post(gw.url + "/v1/messages/count_tokens", headers=h, json=p)
            self.statuses[f"count {r.status_code}"] += 1
        elif op == "batch":
            reqs = [{"custom_id": f"r{i}", "params": self.params(name)} for i in range(rng.randint(1, 3))]
            r = c.post(gw.url + "/v1/messages/batches", headers=h, json={"requests": reqs})
            self.statuses[f"batch {r.status_code}"] += 1
        else:
            r = c.get(gw.url + rng.choice(("/v1/files", "/v1/messages/batches")), headers=h)
            self.statuses[f"list {r.status_code}"] += 1


@pytest.mark.parametrize("seed", [17, 2026])
def test_charged_is_at_least_billed_for_a_generated_workload(
    tmp_path: Path, fake: FakeAnthropic, seed: int
) -> None:
    extra = {"batch_poll_seconds": 0.2, "limits": {"url_source_tokens": 8_000}}
    blue = make_gateway(tmp_path / "blue", fake.url, fake.api_key, extra)
    green = make_gateway(tmp_path / "green", fake.url, fake.api_key, extra, share_keystore=blue)
    keys = {name: blue.create_key(name, "--daily-tokens", str(budget)) for name, budget in BUDGETS.items()}
    fake.state.configure(event_delay=0.01, batch_processing_seconds=0.5)
    blue.start()
    green.start()
    try:
        loads = [Workload(random.Random(seed * 10 + i), [blue, green], keys) for i in range(3)]

        errors: list[BaseException] = []

        def run(load: Workload) -> None:
            try:
                with httpx.Client(timeout=30) as c:
                    for _ in range(25):
                        load.step(c)
            except BaseException as exc:  # seen by the test, not lost in the thread
                errors.append(exc)

        # While it runs, the day's usage (every admitted reservation not yet
        # settled included) is sampled: it must never pass a key's budget.
        peak: dict[str, int] = defaultdict(int)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for n, used in daily_usage(blue.keystore_path).items():
                    peak[n] = max(peak[n], used)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        workers = [threading.Thread(target=run, args=(w,)) for w in loads]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        done.set()
        sampler.join()
        assert not errors, errors
        for n, budget in BUDGETS.items():
            assert peak[n] <= budget, (n, dict(peak))
        deadline = time.monotonic() + 20
        while open_batches(blue.keystore_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_batches(blue.keystore_path) == 0, "batches left unsettled"
        time.sleep(1.0)  # streams cut before the answer are settled once upstream answers
    finally:
        blue.stop()
        green.stop()
    statuses: dict[str, int] = defaultdict(int)
    for load in loads:
        for k, v in load.statuses.items():
            statuses[k] += v
    billed: dict[str, int] = defaultdict(int)
    for b in fake.state.billed:
        found = _MARK.search(json.dumps(b.params))
        assert found is not None, b.params
        billed[found.group(1)] += b.tokens
    charged = daily_usage(blue.keystore_path)
    print(dict(statuses), dict(billed), charged)  # shown with -s: what the workload did
    for name, budget in BUDGETS.items():
        assert charged.get(name, 0) >= billed[name], (name, charged, dict(billed), dict(statuses))
        assert charged.get(name, 0) <= budget and billed[name] <= budget, (name, charged, dict(billed))
    # The workload did what it says: generated, refused, cut and settled.
    assert sum(billed.values()) > 0 and any("429" in k for k in statuses), dict(statuses)
    assert any(k.startswith("cut") for k in statuses) and any(k.startswith("batch 200") for k in statuses), dict(statuses)
    for gw in (blue, green):
        assert "Traceback" not in gw.log_path.read_text()
        assert all(r.get("status") != 500 for r in gw.audit())
