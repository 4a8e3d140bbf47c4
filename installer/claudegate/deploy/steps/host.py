"""Steps about the host itself: connect, lock, Docker, directories, unlock."""

from __future__ import annotations

import time
from collections.abc import Sequence

from claudegate.control.interaction import ConsentQuestion
from claudegate.deploy import docker_cli, host_cli
from claudegate.deploy.context import Context
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.facts import parse_file_stats, parse_links, parse_os_release
from claudegate.deploy.journal import Journal
from claudegate.deploy.lock import RemoteLock, read_holder
from claudegate.deploy.services import learn_secrets_gid
from claudegate.deploy.steps.images import start_images_ahead
from claudegate.errors import ConfigError, DeployFailed

__all__ = ["ConnectStep", "DockerStep", "LayoutStep", "LockStep", "UnlockStep", "read_host_state"]


def read_host_state(ctx: Context) -> Journal | None:
    """Learn which releases ``current`` and ``previous`` name, and the interrupted run's journal (returned)."""
    layout = ctx.layout
    links = parse_links(ctx.fact(host_cli.read_links([layout.current_link, layout.previous_link])).text)
    current = ctx.facts.current = links.get(layout.current_link)
    ctx.facts.previous = links.get(layout.previous_link)
    journal = Journal.from_bytes(ctx.read_file(layout.journal))
    resumed = journal if journal is not None and journal.interrupted else None
    # The last good release: the interrupted run's fallback if there is one
    # (``current`` may name the release that run switched to but never
    # proved), else what serves now.
    ctx.state.fallback = resumed.fallback if resumed is not None and resumed.fallback is not None else current
    return resumed


#: The docker step's change that installs a package; front ends ask before it.
INSTALL_DOCKER = "install docker.io from the distribution's packages"


class ConnectStep(Step):
    name = "connect"
    title = "Check the target"

    def plan(self, ctx: Context) -> list[Change]:
        # The first command opens (and verifies) the connection: a wrong host
        # key stops everything here, before any change.
        machine = ctx.facts.machine = ctx.run(host_cli.uname_machine(), sudo=False, timeout=30).text.strip()
        if ctx.sudo:
            check = ctx.run(host_cli.sudo_check(), timeout=30, check=False)
            if not check.ok:
                raise ConfigError(
                    f"{ctx.connector.target}: the user cannot run commands with sudo without a password",
                    hint="give the deploy user passwordless sudo (NOPASSWD), or connect as root",
                )
        what = f"; release {ctx.state.release.rid}" if ctx.state.release is not None else ""
        ctx.note(f"{ctx.connector.target}: {machine}, {ctx.options.playbook}{what}")
        if ctx.options.dry_run:
            read_host_state(ctx)  # a real run reads it once it holds the lock
        return []


class LockStep(Step):
    name = "lock"
    title = "Take the deploy lock"

    def plan(self, ctx: Context) -> list[Change]:
        if ctx.options.dry_run:
            holder = read_holder(ctx.connector, ctx.layout.lock_dir, sudo=ctx.sudo)
            if holder is not None:
                ctx.note(f"the deploy lock is held by {holder.describe()} ({holder.seconds_left} s left)")
        return []

    def perform(self, ctx: Context) -> None:
        lock = RemoteLock(ctx.connector, ctx.layout.lock_dir, playbook=ctx.options.playbook, sudo=ctx.sudo)
        lock.acquire()
        ctx.state.lock = lock
        resumed = read_host_state(ctx)
        if resumed is not None:
            done = ", ".join(resumed.steps) or "none"
            ctx.note(
                f"resuming the interrupted {resumed.playbook} of {resumed.started_at} "
                f"(steps that had changed something: {done}); last good release: {ctx.state.fallback or 'none'}"
            )
        release = ctx.state.release
        ctx.state.journal = Journal(
            playbook=ctx.options.playbook, release=release.rid if release else None, fallback=ctx.state.fallback
        )
        ctx.save_journal()


class UnlockStep(Step):
    name = "unlock"
    title = "Release the deploy lock"

    def perform(self, ctx: Context) -> None:
        if ctx.state.journal is not None:
            ctx.state.journal.finish("ok")
            ctx.save_journal()
        if ctx.state.lock is not None:
            ctx.state.lock.release()


def _debian_like(os_release: dict[str, str]) -> bool:
    ids = {os_release.get("ID", "")} | set(os_release.get("ID_LIKE", "").split())
    return bool(ids & {"debian", "ubuntu"})


def wait_for_docker(ctx: Context, timeout: float = 60.0) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while not ctx.fact(docker_cli.docker_info(), timeout=30).ok:
        ctx.work("waiting for the Docker engine", done=time.monotonic() - started, expected=timeout, unit="s")
        if time.monotonic() > deadline:
            log = ctx.read_file(host_cli.DOCKERD_LOG) or b""
            tail = ctx.connector.redact(log.decode(errors="replace")[-1500:])
            raise DeployFailed(f"the Docker engine did not start within {timeout:.0f} s:\n{tail}")
        ctx.sleep(0.5)


class DockerStep(Step):
    name = "docker"
    title = "Docker engine"

    def plan(self, ctx: Context) -> list[Change]:
        changes: list[Change] = []
        installed = ctx.fact(host_cli.command_path("docker"), sudo=False).ok
        if not installed:
            os_release = parse_os_release(ctx.fact(host_cli.os_release(), sudo=False).text)
            if not _debian_like(os_release):
                raise ConfigError(
                    f"Docker is not installed on {ctx.connector.target} "
                    f"({os_release.get('PRETTY_NAME', 'unknown OS')}), and only Debian and Ubuntu are set up "
                    "automatically",
                    hint="install Docker Engine on the host, then deploy again",
                )
            changes.append(
                Change(
                    INSTALL_DOCKER,
                    (Run(tuple(host_cli.apt_install("docker.io")), timeout=900),),
                    consent=ConsentQuestion(
                        topic="install-docker",
                        target=ctx.connector.target,
                        detail=(
                            "Docker is not installed; install docker.io from "
                            f"{os_release.get('PRETTY_NAME', 'the distribution')}'s packages (apt-get)"
                        ),
                    ),
                )
            )
        if not installed or not ctx.fact(docker_cli.docker_info(), timeout=30).ok:
            changes.append(
                Change(
                    "start the Docker engine",
                    (
                        Run(tuple(host_cli.start_docker()), timeout=60),
                        Call("wait for the engine", wait_for_docker),  # a Call: a wait loop
                    ),
                )
            )
        ctx.facts.docker_missing = bool(changes)
        return changes

    def apply(self, ctx: Context, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.consent is not None:
                ctx.consent(change.consent)
            if change.summary == INSTALL_DOCKER:
                # The install takes 10-15 s on a fresh host: meanwhile this machine builds the
                # images and writes them to the host's disk (when it is to build them at all).
                start_images_ahead(ctx)
            for op in change.ops:
                ctx.check_cancelled()
                ctx.execute(op)

    def verify(self, ctx: Context) -> None:
        wait_for_docker(ctx)
        ctx.facts.docker_missing = False


class LayoutStep(Step):
    """The installation's system group (it may read the secrets), then every directory.

    Directories are made parents first and every one of them is owned by
    root and writable by root only, except the gateway's data and log
    directories; a path that is a symlink is refused, never followed.
    """

    name = "layout"
    title = "Directories"

    def plan(self, ctx: Context) -> list[Change]:
        layout = ctx.layout
        changes: list[Change] = []
        gid = learn_secrets_gid(ctx)  # asked again each time: verify plans again after the group was made
        if gid is None:
            changes.append(
                Change(
                    f"create the system group {layout.secrets_group} (reads the secrets; the gateway joins it)",
                    (Run(tuple(host_cli.ensure_group(layout.secrets_group))),),
                )
            )
        specs = layout.directories(gid)
        stats = parse_file_stats(ctx.fact(host_cli.file_stats([s.path for s in specs])).text)
        for spec in specs:
            st = stats.get(spec.path)
            want = f"{spec.mode:04o} {spec.owner}"
            if st is None:
                summary = f"create {spec.path} ({want})"
            elif st.kind != "directory":
                raise DeployFailed(f"{spec.path} exists on the host but is a {st.kind}, not a directory")
            elif (st.mode, st.uid, st.gid) != (spec.mode, spec.uid, spec.gid):
                summary = f"set {spec.path} to {want} (was {st.mode:04o} {st.uid}:{st.gid})"
            else:
                continue
            changes.append(Change(summary, (Run(tuple(host_cli.ensure_dir(spec))),)))
        return changes
