"""Each weakened stack (one protection removed) makes exactly the probe for it fail.

A probe that holds on a stack without its protection proves nothing; these
tests are what make the audit's "held" worth reading. Each runs only the
probes concerned, against the real nginx rendered from EdgeSettings with one
rendered line patched (or one setting changed), the real gateway and the fake.
"""

from __future__ import annotations

import dataclasses

import pytest

from claudegate.audit import FAILED, HELD, run_audit
from tests.audit.conftest import AuditFactory
from tests.smoke.conftest import EdgeFactory, chain, replace_in

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
