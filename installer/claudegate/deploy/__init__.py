"""The deploy engine: from a :class:`~claudegate.config.DeployConfig` to a smoke-tested gateway.

Public API (what the CLI and the TUI call)::

    from claudegate.deploy import connector_for, deploy, plan, status, logs, rollback, uninstall, render

    with connector_for(cfg, accept_host_key=None) as target:    # LocalConnector or SSHConnector
        result = plan(cfg, target)                  # dry run: result.plan_text() has every change + diffs
        result = deploy(cfg, target, reporter=on_event)
        result.changed_steps, result.release_id     # [] and the same id on a second run
        result.new_client_keys                      # {name: Secret}: show once
        result.smoke.table()                        # the smoke test, for people
        status(cfg, target).text()                  # releases, containers, certificate, lock
        logs(cfg, target, "gateway", 100)           # redacted
        rollback(cfg, target)                       # serve the previous release again
        renew(cfg, target)                          # ACME: renew when due (cron-safe)
        uninstall(cfg, target, keep_data=False)
    render(cfg, "out/")                             # every file the deploy writes, locally, no secrets

How it works: ``playbooks/<name>.yaml`` lists steps in order; each step
gathers facts on the host, plans only what is missing, applies it and
verifies (:mod:`.engine`). The commands are built by pure functions
(:mod:`.docker_cli`, :mod:`.host_cli`) and run through the connector. The
host layout, containers and release scheme are described in
``docs/deploy.md`` and :mod:`.layout` / :mod:`.release`.

Progress: pass ``reporter`` (a callable taking a :class:`StepEvent`); the
engine itself prints nothing and imports no UI library.

Errors: :class:`~claudegate.errors.DeployFailed` (a step failed; the release
that served before keeps serving), :class:`~claudegate.errors.SmokeTestFailed`,
:class:`~claudegate.errors.ConfigError`, :class:`~claudegate.errors.ConnectionFailed`,
:class:`~claudegate.errors.HostKeyUnknown` / :class:`~claudegate.errors.HostKeyChanged`.
"""

from claudegate.control.progress import Reporter, StepEvent
from claudegate.deploy.api import (
    connector_for,
    deploy,
    logs,
    plan,
    render,
    renew,
    rollback,
    smoke_test,
    status,
    uninstall,
)
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.results import ContainerStatus, DeployResult, RenderResult, StatusReport, StepReport

__all__ = [
    "ContainerStatus",
    "DeployResult",
    "HostLayout",
    "RenderResult",
    "Reporter",
    "StatusReport",
    "StepEvent",
    "StepReport",
    "connector_for",
    "deploy",
    "logs",
    "plan",
    "render",
    "renew",
    "rollback",
    "smoke_test",
    "status",
    "uninstall",
]
