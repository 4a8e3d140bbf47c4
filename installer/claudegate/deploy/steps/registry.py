"""The steps playbooks are made of, by the name a playbook uses for them."""

from __future__ import annotations

from claudegate.deploy.engine import Step
from claudegate.deploy.steps.acme import AcmeStep
from claudegate.deploy.steps.cleanup import CleanupStep
from claudegate.deploy.steps.clients import ClientsStep
from claudegate.deploy.steps.files import ReleaseStep, SecretsStep, TLSStep
from claudegate.deploy.steps.gateway import GatewayStep
from claudegate.deploy.steps.host import ConnectStep, DockerStep, LayoutStep, LockStep, UnlockStep
from claudegate.deploy.steps.images import ImagesStep
from claudegate.deploy.steps.migrate import MigrateStep
from claudegate.deploy.steps.network import NetworksStep
from claudegate.deploy.steps.renewal import RenewalStep
from claudegate.deploy.steps.rollback import RollbackStep
from claudegate.deploy.steps.smoke import SmokeStep
from claudegate.deploy.steps.switch import SwitchStep
from claudegate.deploy.steps.uninstall import UninstallStep

__all__ = ["STEP_TYPES"]

#: Step name (as playbooks/*.yaml write it) -> its class.
STEP_TYPES: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (
        ConnectStep,
        LockStep,
        DockerStep,
        LayoutStep,
        SecretsStep,
        TLSStep,
        ReleaseStep,
        ImagesStep,
        NetworksStep,
        MigrateStep,
        GatewayStep,
        ClientsStep,
        SwitchStep,
        AcmeStep,
        RenewalStep,
        SmokeStep,
        CleanupStep,
        RollbackStep,
        UninstallStep,
        UnlockStep,
    )
}
