"""The renewal step: the host renews its ACME certificate by itself, for ever.

``tls.mode: acme`` gets one more long-running container, ``<prefix>-certbot``,
running ``assets/certbot/claudegate_renew.py`` from the certbot image (see
that file for what one round does). Why a container with a restart policy,
and not cron on the host:

- it comes back after a reboot by the same mechanism as nginx and the
  gateway (Docker's restart policies, with ``docker.service`` enabled by the
  docker step), so renewal works exactly when the gateway does; cron would
  be a second scheduler to install, enable and keep running, and minimal
  images (and the test server, which has no systemd) have none;
- it needs nothing from the operator's machine, and nothing on the host but
  what the deploy put there;
- it joins nginx's network and PID namespaces (``--network``/``--pid
  container:<nginx>``): it reaches the CA through nginx's own outbound path,
  checks the certificate nginx serves on 127.0.0.1 (no allowlist or NAT in
  the way), runs ``nginx -t`` with nginx's own name resolution, and signals
  nginx's master for a graceful reload -- with no capabilities and no
  Docker socket (a container holding the socket would be root on the host).

Docker records the namespace owner by container id, so a recreated nginx
(new id) means a recreated renewer: the id is part of the renewer's spec,
and this step (after ``switch`` and ``acme``) recreates it. When nginx only
restarts, the renewer notices that nginx's master left its namespace, exits,
and its restart policy brings it back in the new one. When dockerd starts
(a reboot), its restore may start the renewer before nginx and does not
retry: the host hook of ``renewer_restore`` (installed here) starts it.

A test CA's API certificate (``CLAUDEGATE_ACME_CA_BUNDLE``) is handed to the
renewer's certbot as it is to the deploy's. ``CLAUDEGATE_RENEW_CHECK_SECONDS``
fixes the interval between two rounds (tests); by default it is 1/24 of the
certificate's lifetime, between 5 s and 12 h.
"""

from __future__ import annotations

import os
import posixpath

from claudegate.containers import CERTBOT_STATE, NGINX_RELEASES, NGINX_TLS
from claudegate.deploy import acme_share, docker_cli, renewer_restore
from claudegate.deploy.build_contexts import RENEWER_IN_IMAGE, certbot_context
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import ContainerSpec
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.facts import ContainerState
from claudegate.deploy.layout import LABEL_INSTANCE, LABEL_ROLE, LABEL_SPEC, HostLayout
from claudegate.deploy.services import inspect
from claudegate.deploy.steps.acme import CA_BUNDLE_ENV, CA_BUNDLE_IN_CONTAINER, CERT_NAME
from claudegate.errors import ConfigError, DeployFailed

__all__ = ["INTERVAL_ENV", "STATUS_FILE", "RenewalStep", "renewer_spec", "status_path"]

INTERVAL_ENV = "CLAUDEGATE_RENEW_CHECK_SECONDS"
#: The renewer's report, in certbot's directory (root only); ``status`` reads it.
STATUS_FILE = "claudegate-renewal.json"
LABEL_NGINX_ID = "org.claudegate.nginx-id"
LABEL_SHARE = "org.claudegate.acme-share"


def status_path(layout: HostLayout) -> str:
    return posixpath.join(layout.acme_state, STATUS_FILE)


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{INTERVAL_ENV}={raw!r} is not a number of seconds", hint="e.g. 5, or unset it"
        ) from None
    if value < 1:
        raise ConfigError(f"{INTERVAL_ENV} must be at least 1 second, not {raw}")
    return value


def renewer_spec(
    layout: HostLayout,
    *,
    image: str,
    nginx: ContainerSpec,
    nginx_id: str,
    domain: str,
    https_port: int,
    ca_bundle: bool,
    interval: float = 0.0,
    share: str = "",
) -> ContainerSpec:
    """The renewer: nginx's namespaces, certbot's state, nginx's files; only CHOWN (for ``nginx -t``).

    ``nginx -t`` must see what nginx sees, so the renewer gets the nginx
    container's tmpfs and mounts (from ``nginx``, its spec), with the TLS
    directory and the ACME webroot writable; ``nginx -t`` creates nginx's temp directories as the
    worker user, hence CHOWN.
    """
    args = [
        RENEWER_IN_IMAGE,
        "--domain", domain,
        "--cert-name", CERT_NAME,
        "--live", CERTBOT_STATE.file("live", CERT_NAME),
        "--tls", NGINX_TLS.inside,
        "--status", CERTBOT_STATE.file(STATUS_FILE),
        "--nginx-conf", nginx.args[-1] if nginx.args else NGINX_RELEASES.file("current", "nginx", "nginx.conf"),
        "--https-port", str(https_port),
    ]  # fmt: skip
    if interval:
        args += ["--interval", f"{interval:g}"]
    if ca_bundle:
        args += ["--ca-bundle", CA_BUNDLE_IN_CONTAINER]
    labels = {LABEL_INSTANCE: layout.prefix, LABEL_ROLE: "certbot", LABEL_NGINX_ID: nginx_id}
    if share:
        # Several hosts: ``share`` fingerprints the share's settings (read at start): a change recreates it.
        args += ["--share", CERTBOT_STATE.file(acme_share.SHARE_DIR, "share.json")]
        labels[LABEL_SHARE] = share
    # Writable here: nginx's certificate (installed after a renewal) and the webroot (HTTP-01 answers).
    writable = {layout.tls, layout.acme_webroot}
    nginx_mounts = tuple(
        (host, inside, read_only and host not in writable) for host, inside, read_only in nginx.mounts
    )
    certbot_mounts = (layout.mount(CERTBOT_STATE),)
    taken = {inside for _, inside, _ in nginx_mounts}
    return ContainerSpec(
        name=layout.certbot_container,
        image=image,
        network=f"container:{nginx_id}",
        pid=f"container:{nginx_id}",
        entrypoint="python3",
        args=tuple(args),
        tmpfs=(
            *nginx.tmpfs,
            "/var/lib/letsencrypt:rw,size=16m",
            "/var/log/letsencrypt:rw,size=16m",
            *(() if any(t.startswith("/tmp:") for t in nginx.tmpfs) else ("/tmp:rw,noexec,nosuid,size=16m",)),  # noqa: S108
        ),
        mounts=(*nginx_mounts, *(m for m in certbot_mounts if m[1] not in taken)),
        cap_add=("CHOWN",),
        memory="256m",
        cpus="0.5",
        pids_limit=64,
        labels=labels,
    )


class RenewalStep(Step):
    name = "renewal"
    title = "Scheduled renewal"
    reads = frozenset({"docker_missing"})

    def _spec(self, ctx: Context, nginx: ContainerState) -> ContainerSpec:
        cfg = ctx.cfg
        # Only its files and temp directories are used: image and address do not matter here.
        nginx_files = docker_cli.nginx_spec(
            ctx.layout, "", http_port=cfg.ports.http, https_port=cfg.ports.https, fixed_ip=""
        )
        return renewer_spec(
            ctx.layout,
            image=certbot_context().tag(cfg.images.base_image),
            nginx=nginx_files,
            nginx_id=nginx.id,
            domain=cfg.domain,
            https_port=cfg.ports.https,
            ca_bundle=bool(os.environ.get(CA_BUNDLE_ENV)),
            interval=_interval(),
            share=acme_share.share_fingerprint(ctx),
        )

    def plan(self, ctx: Context) -> list[Change]:
        name = ctx.layout.certbot_container
        state = None if ctx.facts.docker_missing else inspect(ctx, name)
        remove = Run(tuple(docker_cli.container_remove(name)))
        if ctx.cfg.tls.mode != "acme":
            return [Change(f"remove {name} (tls.mode is not acme)", (remove,))] if state is not None else []
        summary = (
            f"schedule ACME renewal on the host: {name} renews when a third of the lifetime is left, "
            "then nginx -t, graceful reload, and a check of the served certificate"
        )
        nginx = None if ctx.facts.docker_missing else inspect(ctx, ctx.layout.nginx_container)
        if nginx is None or not nginx.running:
            # A Call: the renewer joins nginx's namespaces by container id, known
            # once nginx runs (in a dry run on a new host the switch step has not made it yet).
            return [Change(summary, (Call(f"start {name}", self._create),))]
        spec = self._spec(ctx, nginx)
        if state is None:
            return [Change(summary, self._create_ops(spec))]
        if state.labels.get(LABEL_SPEC) != spec.digest():
            why = (
                "nginx was recreated"
                if state.labels.get(LABEL_NGINX_ID) != nginx.id
                else "its settings changed"
            )
            return [Change(f"recreate {name} ({why})", (remove, *self._create_ops(spec)))]
        if not state.running and state.status != "restarting":
            return [Change(f"start the stopped {name}", (Run(tuple(docker_cli.container_start(name))),))]
        return []

    def _create(self, ctx: Context) -> None:
        nginx = inspect(ctx, ctx.layout.nginx_container)
        if nginx is None or not nginx.running:
            raise DeployFailed("the renewal container needs nginx running, and it is not")
        spec = self._spec(ctx, nginx)
        ctx.run(docker_cli.container_remove(spec.name), check=False)
        for op in self._create_ops(spec):
            ctx.execute(op)

    @staticmethod
    def _create_ops(spec: ContainerSpec) -> tuple[Run, ...]:
        return (
            Run(tuple(docker_cli.create_container(spec))),
            Run(tuple(docker_cli.container_start(spec.name))),
            # Docker's restore does not wait for nginx before starting the renewer: a host hook retries it.
            Run(tuple(renewer_restore.install_hook())),
        )
