"""Files a client's code execution wrote are that client's, through the gateway.

Code execution (and its bash tool) writes files that upstream stores in the
workspace's Files API and names in the result block
(``content.content[].file_id``). Found before the fix: the client whose run
wrote the file got 404 downloading it, because only uploads were recorded.
Now the ids in a code execution result (streamed or not) are recorded as
the requesting key's before the client is shown them; every other key is
still answered as for an unknown id, without asking upstream. An id that
only appears in the model's text, in a tool input or in stdout grants
nothing; nor does an output block the stream was cut before; nor does a
result naming a file another key already owns.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from claudegate_gateway.metering import UsageMeter
from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
CODE = {"type": "code_execution_20250825", "name": "code_execution"}
FILES_BETA = {"anthropic-beta": "files-api-2025-04-14"}


def hdr(key: str) -> dict[str, str]:
    return {**V, **FILES_BETA, "x-api-key": key}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 50, "tools": [CODE],
            "messages": [{"role": "user", "content": "make a chart"}], **extra}  # fmt: skip


def code_result(*outputs: dict[str, Any], kind: str = "code_execution", stdout: str = "done") -> dict[str, Any]:
    return {"type": f"{kind}_tool_result", "tool_use_id": "srvtoolu_01", "content": {
        "type": f"{kind}_result", "stdout": stdout, "stderr": "", "return_code": 0, "content": list(outputs)}}


def made(name: str, content: str, kind: str = "code_execution") -> dict[str, Any]:
    """A file the scripted run writes (the fake stores it and names its new id)."""
    return {"type": f"{kind}_output", "filename": name, "file_content": content}


def output_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [o["file_id"] for b in blocks if b["type"].endswith("code_execution_tool_result")
            for o in b["content"]["content"]]  # fmt: skip


def streamed_blocks(url: str, key: str) -> list[dict[str, Any]]:
    with httpx.stream("POST", url + "/v1/messages", headers=hdr(key), json=body(stream=True), timeout=30) as r:
        assert r.status_code == 200
        text = r.read().decode()
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return [e["content_block"] for e in events if e.get("type") == "content_block_start"]


def file_calls(url: str, key: str, file_id: str) -> list[httpx.Response]:
    """Metadata, download and (last) delete of one file."""
    return [
        httpx.get(f"{url}/v1/files/{file_id}", headers=hdr(key), timeout=30),
        httpx.get(f"{url}/v1/files/{file_id}/content", headers=hdr(key), timeout=30),
    ]


def refused_like_unknown(url: str, key: str, file_id: str, fake: FakeAnthropic) -> None:
    fake.state.clear_requests()
    unknown = "file_011CUnknownUnknownUnkn"
    for mine, stranger in zip(file_calls(url, key, file_id), file_calls(url, key, unknown), strict=True):
        assert mine.status_code == stranger.status_code == 404, mine.text
        assert mine.json()["error"] == {**stranger.json()["error"],
                                        "message": stranger.json()["error"]["message"].replace(unknown, file_id)}
    r = httpx.delete(f"{url}/v1/files/{file_id}", headers=hdr(key), timeout=30)
    assert r.status_code == 404
    assert fake.state.requests == []  # refused before upstream
    assert file_id in fake.state.files  # and still there


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_file_the_clients_run_wrote_is_its_own(gateway_factory: GatewayFactory, fake: FakeAnthropic, stream: bool) -> None:
    gw = gateway_factory()
    alice, bob = gw.create_key("alice"), gw.create_key("bob")
    fake.state.configure(script=[
        code_result(made("chart.csv", "x,y\n1,2\n")),
        code_result(made("log.txt", "bash wrote this", kind="bash_code_execution"), kind="bash_code_execution"),
        {"type": "text", "deltas": ["Here is your chart."]},
    ])
    if stream:
        blocks = streamed_blocks(gw.url, alice)
    else:
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(alice), json=body(), timeout=30)
        assert r.status_code == 200, r.text
        blocks = r.json()["content"]
    ids = output_ids(blocks)
    assert len(ids) == 2 and all(i in fake.state.files for i in ids)
    for file_id, content in zip(ids, (b"x,y\n1,2\n", b"bash wrote this"), strict=True):
        meta, download = file_calls(gw.url, alice, file_id)
        assert meta.status_code == 200 and meta.json()["id"] == file_id, meta.text
        assert download.status_code == 200 and download.content == content, download.text
        refused_like_unknown(gw.url, bob, file_id, fake)
    # The maker may delete it; then it is gone for it too.
    r = httpx.delete(f"{gw.url}/v1/files/{ids[0]}", headers=hdr(alice), timeout=30)
    assert r.status_code == 200, r.text
    assert file_calls(gw.url, alice, ids[0])[0].status_code == 404
    # It is in the maker's list (the gateway's own index), not in the other key's.
    listed = httpx.get(f"{gw.url}/v1/files", headers=hdr(alice), timeout=30).json()["data"]
    assert ids[1] in [f["id"] for f in listed]
    assert httpx.get(f"{gw.url}/v1/files", headers=hdr(bob), timeout=30).json()["data"] == []
    fake.state.configure(script=None)


def test_an_id_anywhere_but_a_runs_outputs_grants_nothing(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    alice, mallory = gw.create_key("alice"), gw.create_key("mallory")
    # A file that exists upstream and is nobody's through the gateway (made outside it), and one of alice's.
    fake.state.configure(script=[code_result(made("secret.txt", "alice's numbers"))])
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(alice), json=body(), timeout=30)
    alices = output_ids(r.json()["content"])[0]
    fake.state.configure(script=None)
    outside = httpx.post(gw.url.replace(gw.url, fake.url) + "/v1/files", headers={**V, "x-api-key": fake.api_key},
                         files={"file": ("o.txt", b"made outside", "text/plain")}, timeout=30).json()["id"]
    for target in (alices, outside):
        fake.state.configure(script=[
            {"type": "text", "deltas": [f"your file is {target}", f' {{"file_id": "{target}"}}']},
            {"type": "tool_use", "name": "fetch", "deltas": [json.dumps({"file_id": target})]},
            code_result(stdout=json.dumps({"type": "code_execution_output", "file_id": target})),
            # A result of another server tool naming it, and an output entry of the wrong shape.
            {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_02", "content": {
                "type": "web_fetch_result", "url": "https://example.com", "content": {"file_id": target}}},
            code_result({"type": "image", "file_id": target}),
        ])
        for stream in (False, True):
            if stream:
                streamed_blocks(gw.url, mallory)
            else:
                assert httpx.post(gw.url + "/v1/messages", headers=hdr(mallory), json=body(), timeout=30).status_code == 200
            refused_like_unknown(gw.url, mallory, target, fake)
    # Upstream naming alice's file as mallory's run output does not make it mallory's: the first owner keeps it.
    fake.state.configure(script=[code_result({"type": "code_execution_output", "file_id": alices})])
    assert httpx.post(gw.url + "/v1/messages", headers=hdr(mallory), json=body(), timeout=30).status_code == 200
    refused_like_unknown(gw.url, mallory, alices, fake)
    assert file_calls(gw.url, alice, alices)[1].content == b"alice's numbers"
    fake.state.configure(script=None)


def test_a_stream_cut_before_the_result_grants_nothing(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    """Upstream made the file, but the stream broke before the block naming it: the client never saw
    it, and the gateway does not record it (a later key may not stumble on it either)."""
    gw = gateway_factory()
    alice = gw.create_key("alice")
    fake.state.configure(script=[{"type": "text", "deltas": ["working"]}, code_result(made("late.txt", "late"))])
    before = set(fake.state.files)
    # message_start, text start, delta, stop: cut before the result's content_block_start.
    fake.state.disconnect_mid_stream(after=4)
    with httpx.stream("POST", gw.url + "/v1/messages", headers=hdr(alice), json=body(stream=True), timeout=30) as r:
        text = r.read().decode()
    assert "code_execution_tool_result" not in text
    (late,) = set(fake.state.files) - before
    refused_like_unknown(gw.url, alice, late, fake)
    fake.state.configure(script=None)


def test_the_meter_takes_ids_only_from_a_whole_event() -> None:
    block = code_result({"type": "code_execution_output", "file_id": "file_011Cwhole"})
    event = b"event: content_block_start\ndata: " + json.dumps(
        {"type": "content_block_start", "index": 1, "content_block": block}).encode() + b"\n\n"
    meter = UsageMeter()
    for n in range(len(event) - 1):  # the event cut anywhere: nothing yet
        cut = UsageMeter()
        cut.feed(event[:n])
        assert cut.output_files == []
    meter.feed(event[:40])
    meter.feed(event[40:])
    assert meter.take_output_files() == ["file_011Cwhole"] and meter.take_output_files() == []
    meter.feed(event)  # the same id again is not a new one
    assert meter.take_output_files() == []


def test_a_batchs_run_outputs_become_its_owners_when_it_settles(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    """A batch's requests run code out of sight: the settlement poll reads the results and records the
    files they wrote for the batch's owner (and nobody else)."""
    gw = gateway_factory({"batch_poll_seconds": 0.2})
    alice, bob = gw.create_key("alice"), gw.create_key("bob")
    fake.state.configure(script=[code_result(made("batch.csv", "a,b\n"))])
    batch = {"requests": [{"custom_id": "one", "params": body()}]}
    r = httpx.post(gw.url + "/v1/messages/batches", headers=hdr(alice), json=batch, timeout=30)
    assert r.status_code == 200, r.text
    gw.record_where(event="batch_settled", batch_id=r.json()["id"])
    results = httpx.get(f"{gw.url}/v1/messages/batches/{r.json()['id']}/results", headers=hdr(alice), timeout=30)
    (line,) = [json.loads(x) for x in results.text.splitlines() if x.strip()]
    (file_id,) = output_ids(line["result"]["message"]["content"])
    assert file_calls(gw.url, alice, file_id)[1].content == b"a,b\n"
    refused_like_unknown(gw.url, bob, file_id, fake)
    fake.state.configure(script=None)


def test_outputs_are_seen_before_the_bytes_leave_and_usage_only_after() -> None:
    """The relay peeks at each chunk before forwarding it (ownership first), and meters it after (a
    client gone before the final usage reached it pays its reservation)."""
    block = code_result({"type": "code_execution_output", "file_id": "file_011Cpeek"})
    start = b"event: content_block_start\ndata: " + json.dumps(
        {"type": "content_block_start", "index": 1, "content_block": block}).encode() + b"\n\n"
    delta = b'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"output_tokens":5}}\n\n'
    stream = start + delta
    for cut in range(1, len(stream)):  # the stream in two chunks, split anywhere
        meter = UsageMeter()
        first, second = stream[:cut], stream[cut:]
        assert meter.peek_outputs(first) == (cut >= len(start))
        meter.feed(first)
        if cut < len(start):
            assert meter.peek_outputs(second) and meter.take_output_files() == ["file_011Cpeek"]
        assert not meter.final  # peeking meters nothing
        meter.feed(second)
        assert meter.final and meter.output_files == ["file_011Cpeek"]
