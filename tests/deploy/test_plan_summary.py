"""The short plan (``claudegate plan`` without --verbose): a line a step, 80 columns, and an irreversible
change (a revocation) never summed up into a count."""

from __future__ import annotations

from claudegate.deploy.results import DeployResult, StepReport

LONG = "upload the Anthropic API key (/opt/claudegate/shared/secrets/anthropic_api_key, 0640, root:claudegate)"


def _result(*steps: StepReport) -> DeployResult:
    return DeployResult("deploy", True, "gw.example.com", "f18db3e3ce25", None, steps)


def test_one_line_a_changing_step_within_80_columns() -> None:
    text = _result(
        StepReport("secrets", "Secrets", (LONG, "create the client-key pepper"), (), 0.1),
        StepReport("docker", "Docker engine", (), (), 0.1),
        StepReport("release", "Release files", ("upload release f18db3e3ce25",),
                   ("--- /dev/null\n+++ new/a.conf\n@@\n+x\n--- /dev/null\n+++ new/b.conf\n@@\n+y\n",), 0.1),
    ).summary_text()
    lines = text.splitlines()
    assert lines[0] == "deploy on gw.example.com: release f18db3e3ce25, 2 of 3 steps would change"
    assert lines[1].startswith("  secrets  upload the Anthropic API key") and lines[1].endswith("(+1 more)")
    assert lines[2] == "  release  upload release f18db3e3ce25"
    assert lines[3] == "  2 rendered files would change"
    assert all(len(line) <= 80 for line in lines), text
    assert "docker" not in text


def test_a_revocation_has_its_own_line() -> None:
    text = _result(StepReport("clients", "Client keys", (
        "create the smoke test's client claudegate-smoke",
        "revoke client old-team (not in deploy.yaml; --prune)",
        "change client team-a: rpm 60 -> 3",
    ), (), 0.1)).summary_text()
    assert text.splitlines()[1:] == [
        "  clients  create the smoke test's client claudegate-smoke (+1 more)",
        "           revoke client old-team (not in deploy.yaml; --prune)",
    ]


def test_nothing_to_do() -> None:
    assert _result(StepReport("docker", "Docker engine", (), (), 0.1)).summary_text() == (
        "deploy on gw.example.com: release f18db3e3ce25, no changes\n"
    )
