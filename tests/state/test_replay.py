"""nginx in front of three real gateway replicas on one Redis: a replica killed mid-request.

The edge as deployed with ``state:`` (two or more replicas behind one upstream):
a message whose replica dies before answering is answered by another replica
(nginx replays it, with the same edge request id); a batch create is never
sent twice. The dead replica's reservation stays charged after its lease
(in Redis, and in the durable ledger), and the replay is charged again. Real nginx, real gateways, Debian's
redis-server, the recording fake Anthropic API.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.edge.certs import make_pki
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet
from tests.support.gateway_proc import GatewayProc
from tests.support.nginx_runner import NGINX, NginxProcess, local_settings
from tests.support.state_services import RedisServer

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx")

LEASE = 2.0
HDRS = {"anthropic-version": "2023-06-01", "host": "gw.test"}


class ReplicatedEdge(NginxProcess):
    """The rendered edge with every replica in its upstream block.

    Deployed, the upstream is one Docker network alias that resolves to both
    replicas; here each replica listens on its own loopback port, so the one
    ``server`` line becomes one per replica (nothing else is touched).
    """

    replicas: list[str]

    def prepare(self) -> None:
        super().prepare()
        path = self.conf_dir / "claudegate.conf"
        text = path.read_text()
        line = f"    server {self.replicas[0]};\n"
        assert text.count(line) == 1
        path.write_text(text.replace(line, "".join(f"    server {r};\n" for r in self.replicas)))


def _holder(redis: RedisServer, name: str, gws: list[GatewayProc], timeout: float = 10) -> GatewayProc:
    """The replica whose in-flight hold (``<host>-<pid>-<hex>:<n>`` in Redis) the key's one request is."""
    deadline = time.monotonic() + timeout
    while True:
        holds = redis.cli("ZRANGE", f"cg:{{{name}}}:fly", "0", "-1").split()
        pids = {h.rsplit(":", 1)[0].split("-")[-2] for h in holds}
        found = [gw for gw in gws if gw.proc is not None and str(gw.proc.pid) in pids]
        if len(found) == 1:
            return found[0]
        assert time.monotonic() < deadline, holds
        time.sleep(0.02)


def _live_holds(redis: RedisServer, name: str) -> int:
    """In-flight holds whose lease has not ended (by Redis's clock); ended ones are dropped lazily."""
    seconds, micros = redis.cli("TIME").split()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return int(redis.cli("ZCOUNT", f"cg:{{{name}}}:fly", str(now_ms), "+inf"))


def _ledger(gw: GatewayProc, name: str, day: str) -> int:
    """The key's day in the durable ledger (the fleet's shared keystore)."""
    with contextlib.closing(sqlite3.connect(gw.keystore_path)) as db:
        row = db.execute("SELECT tokens FROM daily_usage WHERE name = ? AND day = ?", (name, day)).fetchone()
    return int(row[0]) if row else 0


def _send(client: httpx2.Client, url: str, key: str, doc: dict[str, Any], out: list[Any]) -> None:
    try:
        out.append(client.post(url, headers={**HDRS, "x-api-key": key}, json=doc))
    except httpx2.HTTPError as exc:
        out.append(exc)


def _wait(pred: Any, what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return value


def test_a_replica_killed_mid_request_costs_a_message_nothing_and_never_repeats_a_batch_create(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    gateways.extend(fleet(tmp_path, fake, redis_db, 3, trusted_proxies=["127.0.0.1/32"],
                          redis_extra={"lease_seconds": LEASE}))  # fmt: skip
    pki = make_pki(tmp_path / "pki")
    work = tmp_path / "nginx"
    work.mkdir()
    settings = local_settings(work, cert_path=str(pki.fullchain), key_path=str(pki.key), chain_path=str(pki.chain),
                              upstream=f"127.0.0.1:{gateways[0].port}", upstream_replicas=3)  # fmt: skip
    edge = ReplicatedEdge(settings, work)
    edge.replicas = [f"127.0.0.1:{gw.port}" for gw in gateways]
    edge.start()
    context = ssl.create_default_context(cafile=str(pki.root_ca))
    key = gateways[0].create_key("replayed", "--daily-tokens", "1000000")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    try:
        with httpx2.Client(verify=context, timeout=30) as client:
            # --- a message: its replica dies while upstream works on it -----------------------
            fake.state.hang(seconds=30, body_contains="crash me", count=1)  # the first try only
            answers: list[Any] = []
            sender = threading.Thread(target=_send, args=(client, edge.https_url + "/v1/messages", key,
                                                          body(text="crash me"), answers))  # fmt: skip
            sender.start()
            _wait(lambda: fake.state.requests_for("/v1/messages"), "the message never reached upstream")
            victim = _holder(redis_db, "replayed", gateways)
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            sender.join(30)
            [answer] = answers
            assert isinstance(answer, httpx2.Response) and answer.status_code == 200, answer
            # Upstream saw it twice (the first try's bill is real), the client once.
            assert len(fake.state.requests_for("/v1/messages")) == 2
            # The edge's line: one client request, tried on two replicas, the first cut off.
            record = _wait(lambda: [r for r in edge.access_records() if r["path"] == "/v1/messages"],
                           "no access log line")[-1]  # fmt: skip
            assert record["status"] == 200
            assert record["upstream_status"] == "502, 200", record
            tried = record["upstream_addr"].split(", ")
            assert len(tried) == 2 and tried[0] == f"127.0.0.1:{victim.port}" and tried[1] != tried[0], record
            # The serving replica's audit line names the same edge request.
            survivor = next(gw for gw in gateways if f"127.0.0.1:{gw.port}" == tried[1])
            served = survivor.record_where(edge_request_id=record["request_id"])
            assert served["status"] == 200 and served["key_name"] == "replayed"

            # --- the money: the dead try's reservation stays charged after its lease ---------
            reserved = int(served["reserved_tokens"])
            used = int(served["input_tokens"]) + int(served["output_tokens"])
            assert 0 < used < reserved
            counter = f"cg:{{replayed}}:day:{day}"
            _wait(lambda: _live_holds(redis_db, "replayed") == 0, "the dead hold outlived its lease",
                  timeout=LEASE + 5)  # fmt: skip
            # Charged: the dead try's whole reservation (no final usage came) + the replay's usage.
            _wait(lambda: int(redis_db.cli("GET", counter)) == reserved + used,
                  f"day counter {redis_db.cli('GET', counter)} != {reserved} + {used}")  # fmt: skip
            # And the durable ledger gets the same, though the dead replica never flushed its share:
            # it waited in Redis, and the survivor (which served the key since) wrote it.
            _wait(lambda: _ledger(gateways[0], "replayed", day) == reserved + used,
                  f"ledger {_ledger(gateways[0], 'replayed', day)} != {reserved} + {used}", timeout=15)  # fmt: skip

            # --- a batch create is never sent twice ---------------------------------------------
            fake.state.hang(seconds=30, path="/v1/messages/batches", count=1)
            batch = {"requests": [{"custom_id": "a", "params": body()}]}
            answers = []
            sender = threading.Thread(target=_send, args=(client, edge.https_url + "/v1/messages/batches", key,
                                                          batch, answers))  # fmt: skip
            sender.start()
            _wait(lambda: fake.state.requests_for("/v1/messages/batches", "POST"), "the batch never reached upstream")
            alive = [gw for gw in gateways if gw is not victim]
            holder = _holder(redis_db, "replayed", alive)
            assert holder.proc is not None
            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(10)
            sender.join(30)
            [answer] = answers
            assert isinstance(answer, httpx2.Response) and answer.status_code == 502, answer
            assert len(fake.state.requests_for("/v1/messages/batches", "POST")) == 1
    finally:
        edge.stop()
