"""Runs last in this directory: the access logs of every nginx the edge tests
started hold JSON lines and not one credential the run handed to a client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory, client


def test_credentials_in_odd_places_stay_out_of_the_log(
    make_edge: EdgeFactory, pki: EdgePKI, backend: Backend, credentials: set[str]
) -> None:
    """Keys sent where a careless client might put them: query strings, odd
    headers, a Bearer token on a 404 path, a rejected and a rate-limited call."""
    edge = make_edge("log-probe", per_ip={"rate": "6r/m", "burst": 3})
    key = backend.new_key("log-probe")
    with client(pki, local_address="127.0.0.31") as c:
        base = edge.https_url
        c.get(f"{base}/v1/models?api_key={key}&x-api-key={key}", headers={"x-api-key": key})
        c.get(f"{base}/unknown?key={key}", headers={"authorization": f"Bearer {key}"})
        c.post(
            f"{base}/v1/messages",
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
            content=b'{"broken json',
        )
        for _ in range(5):  # past the per-IP burst: 429s are logged too
            c.get(f"{base}/v1/models", headers={"x-api-key": key, "Cookie": f"session={key}", "Referer": key})
    with httpx2.Client() as plain:
        plain.get(f"{edge.http_url}/v1/models?api_key={key}", headers={"x-api-key": key})
    edge.stop()  # flushes and closes its log
    lines = edge.access_log.read_text().splitlines()
    assert len(lines) == 9
    assert any(json.loads(line)["status"] == 429 for line in lines)
    assert key in credentials


def test_no_access_log_of_the_run_holds_a_credential(edge_run_dir: Path, credentials: set[str]) -> None:
    logs = sorted(edge_run_dir.glob("*/logs/access.jsonl"))
    assert logs, "no nginx access log was written"
    assert credentials
    total = 0
    for path in logs:
        text = path.read_text()
        for secret in credentials:
            assert secret not in text, f"{path}: holds a credential"
            assert secret[8:24] not in text, f"{path}: holds part of a credential"
        for number, line in enumerate(text.splitlines(), 1):
            record = json.loads(line)  # every line is one JSON object
            assert "?" not in record["path"], f"{path}:{number}: query string logged"
            assert not {"authorization", "x-api-key", "cookie", "referer"} & {k.lower() for k in record}
            total += 1
    assert total > 20  # many requests of the run, not a few lines
