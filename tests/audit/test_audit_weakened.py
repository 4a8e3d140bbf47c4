"""Each weakened stack (one protection removed) makes exactly the probe for it fail.

A probe that holds on a stack without its protection proves nothing; these
tests are what make the audit's "held" worth reading. Each runs only the
probes concerned, against the real nginx rendered from EdgeSettings with one
rendered line patched (or one setting changed), the real gateway and the fake.
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
from tests.smoke.conftest import EdgeFactory, chain, replace_in
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

pytestmark = pytest.mark.timeout(300)


def verdicts(report: object) -> dict[str, tuple[str, str, str]]:
    return {r.name: (r.verdict, r.detail, r.fix) for r in report.results}  # type: ignore[attr-defined]


def test_tls_1_0_enabled_fails_tls_protocols(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    weak = make_edge(
        "tls10",
        patch=chain(
            replace_in("snippets/tls.conf", "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1 TLSv1.2 TLSv1.3;"),
            replace_in("snippets/tls.conf", r"ssl_ciphers ([^;]+);", r"ssl_ciphers \1:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0;",
                       regex=True),
        ),
    )
    got = verdicts(run_audit(audit_target(weak), only=("tls.protocols", "tls.ciphers")))
    verdict, detail, fix = got["tls.protocols"]
    assert verdict == FAILED and "TLSv1 accepted" in detail and "ssl_protocols" in fix
    # The CBC suites added for TLS 1.0 (ECDSA: the test certificate's key) are offered on TLS 1.2 too.
    assert got["tls.ciphers"][0] == FAILED and "non-AEAD" in got["tls.ciphers"][1]


def test_modern_profile_promised_but_intermediate_served(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    edge = make_edge("intermediate")
    got = verdicts(run_audit(dataclasses.replace(audit_target(edge), tls_profile="modern"), only=("tls.protocols",)))
    assert got["tls.protocols"][0] == FAILED and "TLSv1.2 accepted" in got["tls.protocols"][1]


def test_allowlist_dropped_fails_allowlist(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    # The config promises 127.0.0.1/32 only; 127.0.0.2 is outside it.
    good = make_edge("allow", allow_cidrs=["127.0.0.1/32", "::1/128"])
    target = audit_target(good, allowlist=("127.0.0.1/32",), probe_source="127.0.0.2")
    assert verdicts(run_audit(target, only=("allowlist",)))["allowlist.outside_refused"][0] == HELD
    dropped = make_edge("noallow")  # rendered without the allowlist
    got = verdicts(run_audit(audit_target(dropped, allowlist=("127.0.0.1/32",), probe_source="127.0.0.2"),
                             only=("allowlist",)))
    verdict, detail, fix = got["allowlist.outside_refused"]
    assert verdict == FAILED and "127.0.0.2" in detail and "allowlist.cidrs" in fix


def test_limit_req_removed_fails_burst(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    weak = make_edge(
        "nolimit", patch=replace_in("claudegate.conf", r"\n\s*limit_req zone=claudegate_per_ip[^;]*;", "", regex=True)
    )
    got = verdicts(run_audit(audit_target(weak), only=("limits.per_ip_burst",)))
    verdict, detail, fix = got["limits.per_ip_burst"]
    assert verdict == FAILED and "no 429" in detail and "limits.per_ip" in fix


def test_body_limit_raised_fails_body_size(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    # The config says 1m; the stack lets 32m through (nginx and the gateway alike).
    got = verdicts(run_audit(audit_target(make_edge("bigbody"), max_body_bytes=1024 * 1024), only=("limits.body_size",)))
    verdict, detail, fix = got["limits.body_size"]
    assert verdict == FAILED and "expected 413" in detail and "max_body_size" in fix


def test_error_pages_unshaped_fail_errors_shaped(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    weak = make_edge("rawerrors", patch=replace_in("claudegate.conf", "include snippets/errors.conf;", ""))
    got = verdicts(run_audit(audit_target(weak), only=("edge.errors_shaped",)))
    assert got["edge.errors_shaped"][0] == FAILED


def test_proxy_buffering_on_fails_stream_unbuffered(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    weak = make_edge("buffered", patch=replace_in("snippets/proxy_gateway.conf", "proxy_buffering off;",
                                                   "proxy_buffering on;"))
    got = verdicts(run_audit(audit_target(weak), only=("edge.stream_unbuffered",)))
    verdict, detail, fix = got["edge.stream_unbuffered"]
    assert verdict == FAILED and "buffered" in detail and "proxy_buffering" in fix


# The gateway as it was before the route table: a path it does not know is
# decoded and forwarded, uninspected (how `/v1/%6Dessages` walked past every
# scope). Booted with the real package, one function replaced.
_LENIENT_BOOT = """
import sys, urllib.parse
import claudegate_gateway.proxy as proxy
from claudegate_gateway import routes
strict = routes.match
def lenient(method, raw_path, raw_query=""):
    try:
        return strict(method, raw_path, raw_query)
    except routes.RouteError:
        decoded = urllib.parse.unquote(raw_path)
        op = routes.Operation("unchecked", method, decoded, query=(), body="json" if method == "POST" else "none")
        return routes.Match(op, {}, ())
proxy.match = lenient
from claudegate_gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


class LenientGateway(GatewayProc):
    def start(self) -> LenientGateway:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LENIENT_BOOT, "serve", "--config", str(self.config_path)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.internal_url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the lenient gateway did not come up: {self.log_path.read_text()}")


def test_a_gateway_that_forwards_encoded_paths_fails_path_tricks(
    tmp_path: Path, make_edge: EdgeFactory, audit_target: AuditFactory, fake_anthropic: FakeAnthropic
) -> None:
    proto = make_gateway(tmp_path / "lenient", fake_anthropic.url, fake_anthropic.api_key,
                         extra={"trusted_proxies": ["127.0.0.1/32"]})
    weak = LenientGateway(proto.workdir, proto.config_path, proto.port, proto.internal_port, proto.pepper,
                          proto.upstream_key).start()
    try:
        edge = make_edge("lenient", upstream=f"127.0.0.1:{weak.port}")
        target = dataclasses.replace(audit_target(edge), clients=make_clients(weak),
                                     audit_records=lambda: weak.audit(0, timeout=0))
        got = verdicts(run_audit(target, only=("authz.path_tricks", "authz.nothing_reached_upstream")))
    finally:
        weak.stop()
    verdict, detail, fix = got["authz.path_tricks"]
    assert verdict == FAILED and "POST /v1/%6Dessages: 200" in detail and "route table" in fix
    verdict, detail, _ = got["authz.nothing_reached_upstream"]
    assert verdict == FAILED and "/v1/%6Dessages reached the upstream API" in detail


# The gateway as it was before every operation counted: a call that reserves
# no tokens (a list, a get) skips the key's rpm. Booted with the real package,
# one method replaced.
_LISTS_FREE_BOOT = """
import sys
from claudegate_gateway import limits
strict = limits.Limiter.reserve
def lenient(self, client, tokens, now=None, **kwargs):
    if tokens == 0:
        return limits.Reservation(client.name, 0, None, self.day)
    return strict(self, client, tokens, now, **kwargs)
limits.Limiter.reserve = lenient
from claudegate_gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


class ListsFreeGateway(GatewayProc):
    def start(self) -> ListsFreeGateway:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LISTS_FREE_BOOT, "serve", "--config", str(self.config_path)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.internal_url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the weakened gateway did not come up: {self.log_path.read_text()}")


def test_a_gateway_whose_lists_skip_rpm_fails_rpm_on_lists(
    tmp_path: Path, make_edge: EdgeFactory, audit_target: AuditFactory, fake_anthropic: FakeAnthropic
) -> None:
    proto = make_gateway(tmp_path / "listsfree", fake_anthropic.url, fake_anthropic.api_key,
                         extra={"trusted_proxies": ["127.0.0.1/32"]})
    weak = ListsFreeGateway(proto.workdir, proto.config_path, proto.port, proto.internal_port, proto.pepper,
                            proto.upstream_key).start()
    try:
        edge = make_edge("listsfree", upstream=f"127.0.0.1:{weak.port}")
        target = dataclasses.replace(audit_target(edge), clients=make_clients(weak))
        got = verdicts(run_audit(target, only=("limits.rpm_on_lists",)))
    finally:
        weak.stop()
    verdict, detail, fix = got["limits.rpm_on_lists"]
    assert verdict == FAILED and "list calls passed a key limited to" in detail and "clients[].rpm" in fix


def test_rpm_on_lists_holds_on_the_real_gateway(make_edge: EdgeFactory, audit_target: AuditFactory) -> None:
    edge = make_edge("listsrpm")
    got = verdicts(run_audit(audit_target(edge), only=("limits.rpm_on_lists",)))
    assert got["limits.rpm_on_lists"][0] == HELD, got["limits.rpm_on_lists"]
