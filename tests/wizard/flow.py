"""The answers of the reference run, screen by screen, typed through Pilot."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.wizard.conftest import choose, fill, press_next, tick

UPSTREAM_KEY = "sk-ant-api03-WIZARD-CANARY-0123456789abcdef"


async def target(pilot: Pilot[None]) -> None:
    await fill(pilot, "#f-target-host", "203.0.113.10")
    await fill(pilot, "#f-target-port", "2222")
    await fill(pilot, "#f-target-user", "deploy")
    await fill(pilot, "#f-target-ssh_key", "~/.ssh/claudegate_deploy")


async def upstream(pilot: Pilot[None], key: str = UPSTREAM_KEY) -> None:
    await fill(pilot, "#api-key", key)


async def tls(pilot: Pilot[None]) -> None:
    await fill(pilot, "#f-domain", "gw.example.com")
    await choose(pilot, "#f-tls-mode", "acme")
    await fill(pilot, "#f-tls-email", "ops@example.com")
    await tick(pilot, "#f-tls-staging", True)


async def limits(pilot: Pilot[None]) -> None:
    await fill(pilot, "#f-limits-per_ip-burst", "80")
    await fill(pilot, "#f-limits-max_body_size", "8m")


async def network(pilot: Pilot[None]) -> None:
    await fill(pilot, "#f-allowlist", "203.0.113.0/24, 2001:db8::/32")


async def clients(pilot: Pilot[None]) -> None:
    await pilot.press("a")
    await pilot.pause()
    await fill(pilot, "#f-name", "team-a")
    await fill(pilot, "#f-models", "claude-sonnet-*, claude-haiku-*")
    await fill(pilot, "#f-max_tokens", "4096")
    await fill(pilot, "#f-rpm", "60")
    await fill(pilot, "#f-daily_tokens", "1000000")
    await fill(pilot, "#f-expires", "2027-06-30")
    await pilot.press("ctrl+s")
    await pilot.pause()


STEPS = (target, upstream, tls, limits, network, clients)


async def to_screen(pilot: Pilot[None], index: int) -> None:
    """Answer the reference answers on screens before ``index`` and stop on it."""
    await pilot.pause()
    for step in STEPS[:index]:
        await step(pilot)
        await press_next(pilot)


#: The same answers as a state (for tests that start on a later screen without typing).
REFERENCE_VALUES = {
    "target.mode": "server",
    "target.host": "203.0.113.10",
    "target.port": "2222",
    "target.user": "deploy",
    "target.ssh_key": "~/.ssh/claudegate_deploy",
    "domain": "gw.example.com",
    "tls.mode": "acme",
    "tls.email": "ops@example.com",
    "tls.staging": True,
    "limits.per_ip.burst": "80",
    "limits.max_body_size": "8m",
    "allowlist": "203.0.113.0/24, 2001:db8::/32",
}
REFERENCE_CLIENT = {
    "name": "team-a",
    "models": "claude-sonnet-*, claude-haiku-*",
    "max_tokens": "4096",
    "rpm": "60",
    "daily_tokens": "1000000",
    "expires": "2027-06-30",
}
