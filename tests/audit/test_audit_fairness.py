"""The fairness probe: one client's large bodies must not slow another client's requests.

Against the real nginx, the real gateway and the recording fake: the probe
holds on the gateway as it is, spends nothing upstream, and fails on a
gateway whose inspection is one first-come queue (the weakened stack).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from claudegate.audit import FAILED, HELD, run_audit
from tests.audit.conftest import AuditFactory, make_clients
from tests.smoke.conftest import EdgeFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

pytestmark = pytest.mark.timeout(300)


def test_fairness_holds_and_nothing_reaches_upstream(
    make_edge: EdgeFactory, audit_target: AuditFactory, fake: FakeAnthropic
) -> None:
    edge = make_edge("fair")
    report = run_audit(audit_target(edge), only=("limits.large_body_fairness",))
    (result,) = report.results
    print(result.detail)
    assert result.verdict == HELD, result.detail
    assert not fake.state.requests_for("/v1/messages"), "a probe body reached upstream"
    assert FAILED not in {r.verdict for r in report.results}


# The gateway before issue 17: one queue for every key, first come first
# served, one body inspected at a time.
_FIFO_BOOT = """
import sys
from claudegate_gateway import fairqueue, offload
class OneQueue(fairqueue.FairTurns):
    def __init__(self, workers):
        super().__init__(1)
    async def run(self, key, job):
        return await super().run("everyone", job)
offload.FairTurns = OneQueue
from claudegate_gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


class FifoGateway(GatewayProc):
    def start(self) -> FifoGateway:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FIFO_BOOT, "serve", "--config", str(self.config_path)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.internal_url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the first-come gateway did not come up: {self.log_path.read_text()}")


def test_a_first_come_inspection_queue_fails_the_probe(
    tmp_path: Path, make_edge: EdgeFactory, audit_target: AuditFactory, fake_anthropic: FakeAnthropic
) -> None:
    proto = make_gateway(tmp_path / "fifo", fake_anthropic.url, fake_anthropic.api_key)
    weak = FifoGateway(
        proto.workdir, proto.config_path, proto.port, proto.internal_port, proto.pepper, proto.upstream_key
    ).start()
    try:
        edge = make_edge("fifo", upstream=f"127.0.0.1:{weak.port}")
        target = dataclasses.replace(audit_target(edge), clients=make_clients(weak))
        report = run_audit(target, only=("limits.large_body_fairness",))
    finally:
        weak.stop()
    (result,) = report.results
    print(result.detail)
    assert result.verdict == FAILED and "delayed a 300 KB request" in result.detail, result.detail
    assert "inspection workers" in result.fix
