"""clients[].endpoints are checked against the gateway's route table."""

from __future__ import annotations

from claudegate.config.operations import TEMPLATES
from claudegate_gateway import routes
from tests.config.common import BASE, load, problems


def test_the_installer_copy_of_the_route_templates_is_the_gateways() -> None:
    assert TEMPLATES == routes.TEMPLATES


def test_an_endpoint_glob_matching_no_operation_is_a_config_problem() -> None:
    lines = problems("clients:\n  - name: team-a\n    endpoints: ['/v1/messages', '/v1/complete']\n", base=BASE)
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("deploy.yaml:12:") and "clients[0].endpoints[1]" in line, line
    assert "'/v1/complete' matches no operation" in line and "/v1/files/{file_id}/content" in line, line


def test_globs_and_exact_templates_are_accepted() -> None:
    cfg = load("clients:\n  - name: team-a\n    endpoints: ['/v1/messages*', '/v1/files/{file_id}', '/v1/models?*']\n",
               base=BASE)  # fmt: skip
    assert cfg.clients[0].endpoints == ["/v1/messages*", "/v1/files/{file_id}", "/v1/models?*"]
