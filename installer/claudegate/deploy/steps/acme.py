"""The acme step: a certificate from an ACME CA (Let's Encrypt), issued and renewed on the host.

Why certbot runs on the host (in a container built from the base image with
Debian's certbot) rather than on the operator side: the HTTP-01 challenge is
answered by nginx on the host from its webroot, the account key and the
certificate key never need to leave the host, and renewal must work when
the operator's laptop is off (a later ``renew`` run, or a host timer, needs
only what is already there).

The step runs after ``switch`` (nginx must be serving the webroot on the HTTP
port; until the first issuance the ``tls`` step gave it a temporary
self-signed certificate) and before ``smoke``:

1. ``certbot certonly --webroot`` with ``--keep-until-expiring``, into
   ``shared/letsencrypt`` (certificate name ``claudegate``);
2. the live files are copied into ``shared/tls`` (the key created 0600);
3. nginx reloads.

A CA whose directory is served with a private certificate (a test CA such as
pebble) is trusted through ``CLAUDEGATE_ACME_CA_BUNDLE`` on the operator side:
that file is uploaded and handed to certbot as ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import functools
import os
import posixpath
from pathlib import Path

from cryptography import x509

from claudegate.containers import ACME_CA_BUNDLE, CERTBOT_STATE, CERTBOT_WEBROOT, TLS_FULLCHAIN
from claudegate.deploy import host_cli
from claudegate.deploy.acme_precheck import check_domain_reaches_host
from claudegate.deploy.build_contexts import certbot_context
from claudegate.deploy.cert_lifetime import is_due
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import LOG_OPTIONS
from claudegate.deploy.engine import Call, Change, Run, Step
from claudegate.deploy.facts import parse_sha256
from claudegate.deploy.layout import LABEL_INSTANCE, LABEL_ROLE
from claudegate.deploy.services import inspect, reload_nginx
from claudegate.errors import ConfigError

__all__ = ["CA_BUNDLE_ENV", "CA_BUNDLE_IN_CONTAINER", "CERT_NAME", "AcmeStep", "certbot_argv", "copy_live_argv"]

CERT_NAME = "claudegate"
CA_BUNDLE_ENV = "CLAUDEGATE_ACME_CA_BUNDLE"
CA_BUNDLE_IN_CONTAINER = CERTBOT_STATE.file(ACME_CA_BUNDLE)


def certbot_argv(
    *, image: str, prefix: str, network: str, state_dir: str, webroot: str, domain: str, email: str,
    directory: str, ca_bundle: bool, renew: bool = False,
) -> list[str]:  # fmt: skip
    """``docker run`` of certbot: webroot HTTP-01, non-interactive, no capabilities.

    ``renew``: the certificate is due by claudegate's rule (a third of its
    lifetime left), which certbot's own (30 days, in Debian's certbot 2)
    may not agree with for a long-lived one: force it.
    """
    argv = [
        "docker", "run", "--rm", "--network", network,
        "--read-only", "--tmpfs", "/var/lib/letsencrypt", "--tmpfs", "/var/log/letsencrypt", "--tmpfs", "/tmp",  # noqa: S108 - a tmpfs private to the container
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *LOG_OPTIONS,
        "--label", f"{LABEL_INSTANCE}={prefix}", "--label", f"{LABEL_ROLE}=certbot",
        "--volume", f"{state_dir}:{CERTBOT_STATE.inside}:rw", "--volume", f"{webroot}:{CERTBOT_WEBROOT.inside}:rw",
    ]  # fmt: skip
    if ca_bundle:
        argv += ["--env", f"REQUESTS_CA_BUNDLE={CA_BUNDLE_IN_CONTAINER}"]
    argv += [
        image, "certonly", "--non-interactive", "--agree-tos", "--email", email,
        "--webroot", "--webroot-path", CERTBOT_WEBROOT.inside, "--domain", domain, "--cert-name", CERT_NAME,
        "--server", directory, "--force-renewal" if renew else "--keep-until-expiring",
    ]  # fmt: skip
    return argv


# cp -L: certbot's live/ files are symlinks into archive/. The key is made
# with umask 077, so it is 0600 from its first byte; each file replaces the
# old one by rename.
_COPY_LIVE = r"""set -eu
live=$1 tls=$2
for f in fullchain chain; do
  cp -L -- "$live/$f.pem" "$tls/.$f.pem.new"
  chmod 0644 -- "$tls/.$f.pem.new"
  mv -f -- "$tls/.$f.pem.new" "$tls/$f.pem"
done
(umask 077 && cp -L -- "$live/privkey.pem" "$tls/.privkey.pem.new")
mv -f -- "$tls/.privkey.pem.new" "$tls/privkey.pem"
"""


def copy_live_argv(live_dir: str, tls_dir: str) -> list[str]:
    return ["sh", "-c", _COPY_LIVE, "claudegate-acme-copy", live_dir, tls_dir]


class AcmeStep(Step):
    name = "acme"
    title = "ACME certificate"

    def _live(self, ctx: Context) -> str:
        return posixpath.join(ctx.layout.acme_state, "live", CERT_NAME)

    def plan(self, ctx: Context) -> list[Change]:
        tls = ctx.cfg.tls
        if tls.mode != "acme":
            return []
        if tls.email is None:
            raise ConfigError("tls.mode acme needs tls.email")
        live = self._live(ctx)
        served = posixpath.join(ctx.layout.tls, TLS_FULLCHAIN)
        digests = parse_sha256(ctx.fact(host_cli.file_sha256([f"{live}/fullchain.pem", served])).text)
        issued = digests.get(f"{live}/fullchain.pem")
        directory = tls.acme_directory
        if issued is None:
            summary = f"obtain a certificate for {ctx.cfg.domain} from {directory} (certbot, HTTP-01 webroot)"
            return [Change(summary, (Call("certbot", self._obtain),))]
        chain = ctx.read_file(f"{live}/fullchain.pem") or b""
        try:
            cert = x509.load_pem_x509_certificate(chain)
        except ValueError:
            cert = None
        if cert is None or is_due(cert):
            when = f" (ends {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)" if cert is not None else ""
            return [
                Change(
                    f"renew the certificate for {ctx.cfg.domain}{when}",
                    (Call("certbot", functools.partial(self._obtain, renew=True)),),
                )
            ]
        if digests.get(served) != issued:
            return [Change("install the issued certificate for nginx", self._install_ops(ctx))]
        return []

    def _obtain(self, ctx: Context, *, renew: bool = False) -> None:
        """A Call: the DNS pre-check (Python) and the CA bundle's upload come before certbot's command."""
        cfg = ctx.cfg
        layout = ctx.layout
        # Fail in a second, with the DNS record to set, rather than burn the CA's rate limit.
        check_domain_reaches_host(ctx)
        bundle = os.environ.get(CA_BUNDLE_ENV)
        if bundle:
            ctx.connector.put_file(
                posixpath.join(layout.acme_state, ACME_CA_BUNDLE),
                Path(bundle).read_bytes(),
                0o644,
                sudo=ctx.sudo,
            )
        argv = certbot_argv(
            image=certbot_context().tag(cfg.images.base_image),
            prefix=layout.prefix,
            network=layout.egress_network,
            state_dir=layout.acme_state,
            webroot=layout.acme_webroot,
            domain=cfg.domain,
            email=cfg.tls.email or "",
            directory=cfg.tls.acme_directory,
            ca_bundle=bool(bundle),
            renew=renew,
        )
        ctx.note(f"asking {cfg.tls.acme_directory} for a certificate for {cfg.domain}")
        ctx.run(argv, timeout=600)
        for op in self._install_ops(ctx):
            ctx.execute(op)

    def _install_ops(self, ctx: Context) -> tuple[Run, Call]:
        copy = Run(tuple(copy_live_argv(self._live(ctx), ctx.layout.tls)))
        return copy, Call("reload nginx if it runs", self._reload)

    @staticmethod
    def _reload(ctx: Context) -> None:
        """A Call: a wait until only new workers serve, and only when nginx runs at that moment."""
        nginx = inspect(ctx, ctx.layout.nginx_container)
        if nginx is not None and nginx.running:
            reload_nginx(ctx)
