"""A change of filters is a change of the gateway: new gateway id, and plan's diff shows the rule."""

from __future__ import annotations

from claudegate.deploy.diff import file_diff
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.release import build_release
from claudegate.deploy.secret_inputs import key_fingerprint
from claudegate.redact import Secret
from tests.deploy.conftest import UPSTREAM_KEY, ConfigFactory

LAYOUT = HostLayout()
FP = key_fingerprint(Secret(UPSTREAM_KEY))
RULE = {"name": "pii", "detectors": ["email"], "direction": "response", "action": "redact"}


def test_a_filters_change_makes_a_new_gateway_and_shows_in_the_diff(make_cfg: ConfigFactory) -> None:
    before = build_release(make_cfg(), LAYOUT, key_fingerprint=FP)
    after = build_release(make_cfg(filters=[RULE]), LAYOUT, key_fingerprint=FP)
    same = build_release(make_cfg(filters=[RULE]), LAYOUT, key_fingerprint=FP)
    assert before.gateway_id != after.gateway_id and before.rid != after.rid
    assert after.gateway_id == same.gateway_id  # idempotent: no change the second time
    diff = file_diff("gateways/x/gateway.yaml", before.gateway_files["gateway.yaml"], after.gateway_files["gateway.yaml"])
    assert "+- action: redact" in diff and "+  direction: response" in diff
    exempt = build_release(make_cfg(filters=[RULE], clients=[{"name": "team-a", "filters": {"pii": "off"}}]),
                           LAYOUT, key_fingerprint=FP)
    diff = file_diff("g", after.gateway_files["gateway.yaml"], exempt.gateway_files["gateway.yaml"])
    assert "+client_filters:" in diff and "+    pii: 'off'" in diff
