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

Several hosts (see :mod:`claudegate.deploy.acme_share`): every host first
gets the share's files; the first host (the issuer) then does the above and
seals the certificate into the state tier (``publish``, when the one it
shared last is another); any other host (a follower) runs no certbot and
installs the shared certificate (``sync``) when it serves another one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
from pathlib import Path

from cryptography import x509

from claudegate.containers import ACME_CA_BUNDLE, CERTBOT_STATE, CERTBOT_WEBROOT, TLS_FULLCHAIN
from claudegate.deploy import acme_share, host_cli
from claudegate.deploy.acme_precheck import check_domain_reaches_host
from claudegate.deploy.build_contexts import SHARE_IN_IMAGE, certbot_context
from claudegate.deploy.cert_lifetime import is_due
from claudegate.deploy.context import Context
from claudegate.deploy.docker_cli import LOG_OPTIONS
from claudegate.deploy.engine import Call, Change, Put, Run, Step
from claudegate.deploy.facts import parse_sha256
from claudegate.deploy.layout import LABEL_INSTANCE, LABEL_ROLE
from claudegate.deploy.services import inspect, reload_nginx
from claudegate.errors import ConfigError, DeployFailed
from claudegate.redact import Secret

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
        role = acme_share.host_role(ctx)
        if role is None:
            return self._issue_plan(ctx)
        changes = self._share_file_changes(ctx, role)
        if role == "follower":
            return changes + self._follower_plan(ctx)
        issued = self._issue_plan(ctx)
        return changes + issued + self._publish_plan(ctx, after_issue=bool(issued))

    # -- several hosts ----------------------------------------------------------
    def _share_file_changes(self, ctx: Context, role: acme_share.Role) -> list[Change]:
        files = acme_share.share_files(ctx, role)
        digests = parse_sha256(ctx.fact(host_cli.file_sha256([f.path for f in files])).text)
        where = acme_share.share_dir(ctx.layout)
        mkdir = Run(("mkdir", "-p", "-m", "0700", "--", where))
        changes: list[Change] = []
        for item in files:
            if item.data is None:
                changes.append(Change(f"create {item.what} ({item.path}, 0600)"))
                continue
            if item.path.endswith("pg_password"):
                ctx.connector.add_secret(Secret(item.data.decode(errors="replace").strip()))
            if digests.get(item.path) == hashlib.sha256(item.data).hexdigest():
                continue
            verb = "replace" if item.path in digests else "upload"
            changes.append(Change(f"{verb} {item.what} ({item.path}, 0600)", (mkdir, Put(item.path, item.data, 0o600, "0:0"))))
        return changes

    def _follower_plan(self, ctx: Context) -> list[Change]:
        installed = _json_serial(ctx.read_file(posixpath.join(acme_share.share_dir(ctx.layout), "installed.json")))
        served = ctx.read_file(posixpath.join(ctx.layout.tls, TLS_FULLCHAIN)) or b""
        try:
            serving = format(x509.load_pem_x509_certificate(served).serial_number, "x")
        except ValueError:
            serving = None
        if installed is not None and installed == serving:
            return []  # the host's renewer keeps it in step with the state tier
        issuer = ctx.cfg.fleet[0].host
        return [
            Change(
                f"install the fleet's certificate for {ctx.cfg.domain} from the state tier (issued by {issuer})",
                (Call("install the shared certificate", self._sync),),
            )
        ]

    def _publish_plan(self, ctx: Context, *, after_issue: bool) -> list[Change]:
        summary = "share the certificate with the other hosts (sealed into the state tier)"
        call = (Call("share the certificate", self._publish),)
        if after_issue:
            return [Change(summary, call)]
        shared = _json_serial(ctx.read_file(posixpath.join(acme_share.share_dir(ctx.layout), "published.json")))
        chain = ctx.read_file(f"{self._live(ctx)}/fullchain.pem") or b""
        try:
            serial = format(x509.load_pem_x509_certificate(chain).serial_number, "x")
        except ValueError:
            return []
        return [] if shared == serial else [Change(f"{summary}: serial {serial}", call)]

    def _share_argv(self, ctx: Context, command: str) -> list[str]:
        return acme_share.share_argv(
            image=certbot_context().tag(ctx.cfg.images.base_image), layout=ctx.layout,
            command="publish" if command == "publish" else "sync",
            live=CERTBOT_STATE.file("live", CERT_NAME), script=SHARE_IN_IMAGE,
        )  # fmt: skip

    def _publish(self, ctx: Context) -> None:
        """A Call: seal the issued certificate into PostgreSQL for the other hosts."""
        done = ctx.run(self._share_argv(ctx, "publish"), timeout=120, check=False)
        if not done.ok:
            raise DeployFailed(
                f"the certificate was issued but could not be shared with the other hosts: {_out(done.stderr)}",
                hint="check that this host reaches state.postgres (the gateway's URL, password and TLS), "
                "then deploy again; the other hosts keep serving the certificate they have",
            )
        ctx.note(_out(done.stdout))

    def _sync(self, ctx: Context) -> None:
        """A Call: install the newest certificate the issuer shared (checked: key, name, not older)."""
        done = ctx.run(self._share_argv(ctx, "sync"), timeout=120, check=False)
        issuer = f"host 1/{len(ctx.cfg.fleet)} ({ctx.cfg.fleet[0].host})"
        if done.exit_status == acme_share.EXIT_NOTHING:
            raise DeployFailed(
                f"the state tier holds no certificate for {ctx.cfg.domain} that this host accepts: {_out(done.stdout)}",
                hint=f"{issuer} obtains it and shares it: deploy it first (a deploy does, in rollout order), "
                "and check its renewer with `claudegate status`",
            )
        if done.exit_status not in (acme_share.EXIT_INSTALLED, acme_share.EXIT_UNCHANGED):
            raise DeployFailed(
                f"could not read the fleet's certificate from the state tier: {_out(done.stderr or done.stdout)}",
                hint="check that this host reaches state.postgres (the gateway's URL, password and TLS)",
            )
        ctx.note(_out(done.stdout))
        if done.exit_status == acme_share.EXIT_INSTALLED:
            self._reload(ctx)

    # -- the issuer (or the only host) ------------------------------------------
    def _issue_plan(self, ctx: Context) -> list[Change]:
        tls = ctx.cfg.tls
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


def _json_serial(data: bytes | None) -> str | None:
    """``serial`` of a share record (installed.json / published.json), None if absent or unreadable."""
    try:
        value = json.loads(data or b"").get("serial")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _out(data: bytes) -> str:
    return " | ".join(data.decode(errors="replace").strip().splitlines()[-4:]) or "(no output)"
