"""Steps that put files on the host: secrets, TLS material, the release."""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Sequence

from cryptography import x509

from claudegate.containers import GATEWAY_YAML, TLS_CHAIN, TLS_FULLCHAIN, TLS_PRIVKEY
from claudegate.control.interaction import ConsentQuestion
from claudegate.deploy import host_cli
from claudegate.deploy.build_contexts import tar_bytes
from claudegate.deploy.cert_status import expiry_warning
from claudegate.deploy.context import Context
from claudegate.deploy.diff import file_diff
from claudegate.deploy.engine import Change, Put, Run, Step
from claudegate.deploy.facts import parse_file_stats, parse_sha256
from claudegate.deploy.release import parse_manifest
from claudegate.deploy.secret_inputs import new_pepper
from claudegate.deploy.services import secrets_gid
from claudegate.deploy.state_secrets import pepper_change, state_file_changes, state_paths
from claudegate.deploy.tls_material import TLSMaterial, cert_summary, from_files, internal_ca, self_signed
from claudegate.errors import ConfigError

__all__ = ["ReleaseStep", "SecretsStep", "TLSStep"]

#: Secret files: root's, readable by the installation's secrets group.
SECRET_MODE = 0o640


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SecretsStep(Step):
    """The Anthropic key and the pepper: root's files, 0640, readable by the secrets group.

    They never belong to the image's uid 10001, which a host account could
    hold; the gateway's container joins the installation's system group
    (``--group-add``) to read them. The key is compared by hash (the host
    prints ``sha256sum``), so it never travels back. The pepper is made once
    and never replaced: every client key's stored hash depends on it.
    """

    name = "secrets"
    title = "Secrets"
    reads = frozenset({"secrets_gid"})

    def plan(self, ctx: Context) -> list[Change]:
        layout = ctx.layout
        key = ctx.state.upstream_key
        if key is None:
            if ctx.options.dry_run:
                ctx.note("the Anthropic key could not be read here, so whether it changed is unknown")
                return []
            raise ConfigError("no Anthropic API key was read for this deploy")
        paths = [layout.api_key_file, layout.pepper_file, *state_paths(ctx)]
        digests = parse_sha256(ctx.fact(host_cli.file_sha256(paths)).text)
        stats = parse_file_stats(ctx.fact(host_cli.file_stats(paths)).text)
        group = layout.secrets_group
        owner = f"0:{group}"
        wanted = (SECRET_MODE, 0, secrets_gid(ctx))
        where = f"{SECRET_MODE:04o}, root:{group}"
        changes: list[Change] = []
        key_stat = stats.get(layout.api_key_file)
        key_ok = key_stat is not None and (key_stat.mode, key_stat.uid, key_stat.gid) == wanted
        if digests.get(layout.api_key_file) != _sha(key.reveal_bytes()) or not key_ok:
            what = "replace" if layout.api_key_file in digests else "upload"
            changes.append(
                Change(
                    f"{what} the Anthropic API key ({layout.api_key_file}, {where})",
                    (Put(layout.api_key_file, key.reveal_bytes(), SECRET_MODE, owner),),
                )
            )
        pepper_stat = stats.get(layout.pepper_file)
        state_ok = {p: (st.mode, st.uid, st.gid) == wanted for p, st in stats.items()}
        changes += state_file_changes(ctx, digests, mode=SECRET_MODE, owner=owner, wanted_ok=state_ok)
        shared = ctx.cfg.state is not None
        if shared and (pepper_stat is None or pepper_stat.kind == "regular file"):
            # Shared state: every host holds the fleet's pepper (see deploy/state_secrets.py).
            changes += pepper_change(ctx, digests, mode=SECRET_MODE, owner=owner, exists=pepper_stat is not None)
        if pepper_stat is None:
            if not shared:
                changes.append(
                    Change(
                        f"create the client-key pepper ({layout.pepper_file}, {where})",
                        (Put(layout.pepper_file, new_pepper().reveal_bytes(), SECRET_MODE, owner),),
                    )
                )
        elif pepper_stat.kind != "regular file":
            raise ConfigError(f"{layout.pepper_file} is a {pepper_stat.kind}, not a file; remove it and deploy again")
        elif (pepper_stat.mode, pepper_stat.uid, pepper_stat.gid) != wanted:
            # The secrets directory is root's (0750): nobody else can swap the
            # file for a symlink between the check and the fix; -h all the same.
            fix = ("sh", "-c", 'chown -h -- "$2" "$1" && chmod 0640 -- "$1"', "claudegate-fix", layout.pepper_file,
                   owner)  # fmt: skip
            changes.append(Change(f"set {layout.pepper_file} to {where}", (Run(fix),)))
        return changes


def tls_material(ctx: Context) -> TLSMaterial:
    cfg = ctx.cfg
    tls = cfg.tls
    if tls.mode == "internal-ca":
        return internal_ca(cfg.state_dir, cfg.domain, keep=not ctx.options.dry_run)
    if tls.mode == "files":
        if tls.cert_file is None or tls.key_file is None:
            raise ConfigError("tls.mode files needs tls.cert_file and tls.key_file")
        return from_files(cfg.domain, tls.cert_file, tls.key_file, tls.chain_file)
    return self_signed(cfg.domain)


class TLSStep(Step):
    """Certificate, key and chain in ``shared/tls`` (key 0600 root).

    With ACME this only installs a temporary self-signed certificate when
    there is none yet, so nginx can start and serve the HTTP-01 challenge;
    the ``acme`` step replaces it.
    """

    name = "tls"
    title = "TLS certificate"

    def plan(self, ctx: Context) -> list[Change]:
        tls_dir = ctx.layout.tls
        files = {
            name: posixpath.join(tls_dir, name) for name in (TLS_FULLCHAIN, TLS_PRIVKEY, TLS_CHAIN)
        }
        digests = parse_sha256(ctx.fact(host_cli.file_sha256(list(files.values()))).text)
        if ctx.cfg.tls.mode == "acme" and files[TLS_FULLCHAIN] in digests:
            return []  # the acme step owns an existing certificate
        material = tls_material(ctx)
        ctx.state.tls = material
        if ctx.options.dry_run:
            self._warn_expiry(ctx, material)
        wanted = {
            TLS_FULLCHAIN: material.fullchain,
            TLS_PRIVKEY: material.privkey,
            TLS_CHAIN: material.chain,
        }
        stats = parse_file_stats(ctx.fact(host_cli.file_stats([files[TLS_PRIVKEY]])).text)
        key_stat = stats.get(files[TLS_PRIVKEY])
        changes: list[Change] = []
        for name, data in wanted.items():
            path = files[name]
            mode = 0o600 if name == TLS_PRIVKEY else 0o644
            wrong_mode = (
                name == TLS_PRIVKEY and key_stat is not None and (key_stat.mode, key_stat.uid) != (0o600, 0)
            )
            if digests.get(path) == _sha(data) and not wrong_mode:
                continue
            consent = None
            if name == TLS_FULLCHAIN:
                old = ctx.read_file(path) if path in digests else None
                summary = f"install the certificate: {material.summary}"
                if old:
                    with contextlib.suppress(ValueError):
                        summary += f" (replaces: {cert_summary(old)})"
                    # nginx will serve a different certificate: clients that pinned the old one break.
                    consent = ConsentQuestion(
                        topic="replace-certificate", target=ctx.connector.target, detail=f"{summary[0].upper()}{summary[1:]}"
                    )
            elif name == TLS_PRIVKEY:
                summary = f"install the private key ({path}, 0600 root)"
            else:
                summary = f"install the chain ({path})"
            changes.append(Change(summary, (Put(path, data, mode, "0:0"),), consent=consent))
        return changes

    def apply(self, ctx: Context, changes: Sequence[Change]) -> None:
        super().apply(ctx, changes)
        ctx.state.reload_nginx = True

    def perform(self, ctx: Context) -> None:
        if ctx.state.tls is not None:
            self._warn_expiry(ctx, ctx.state.tls)  # once per real run (plan runs again to verify)

    @staticmethod
    def _warn_expiry(ctx: Context, material: TLSMaterial) -> None:
        with contextlib.suppress(ValueError):
            warning = expiry_warning(x509.load_pem_x509_certificate(material.fullchain), mode=ctx.cfg.tls.mode)
            if warning:
                ctx.note(warning)


class ReleaseStep(Step):
    """The rendered release files, as one directory per release id (and per gateway id).

    Each directory is unpacked from a tar next to its final name and renamed
    into place, so a release directory that exists is complete. The plan's
    diffs compare with the release that serves now.
    """

    name = "release"
    title = "Release files"
    reads = frozenset({"current"})

    def plan(self, ctx: Context) -> list[Change]:
        release = ctx.state.release
        if release is None:
            raise ConfigError("no release to deploy")
        if ctx.state.journal is not None and ctx.state.journal.release != release.rid:
            ctx.state.journal.release = release.rid
        layout = ctx.layout
        rdir, gdir = layout.release_dir(release.rid), layout.gateway_dir(release.gateway_id)
        wanted = {posixpath.join(rdir, rel): data for rel, data in release.files.items()}
        wanted.update({posixpath.join(gdir, rel): data for rel, data in release.gateway_files.items()})
        digests = parse_sha256(ctx.fact(host_cli.file_sha256(sorted(wanted))).text)
        release_ok = all(digests.get(p) == _sha(d) for p, d in wanted.items() if p.startswith(rdir + "/"))
        gateway_ok = all(digests.get(p) == _sha(d) for p, d in wanted.items() if p.startswith(gdir + "/"))
        changes: list[Change] = []
        if not gateway_ok:
            old_id, old = self._current_gateway_files(ctx)
            where = f"{{{old_id} -> {release.gateway_id}}}" if old_id else release.gateway_id
            diff = "".join(
                file_diff(f"gateways/{where}/{rel}", old.get(rel), data)
                for rel, data in sorted(release.gateway_files.items())
            )
            tar = tar_bytes(release.gateway_files)
            changes.append(
                Change(
                    f"upload gateway config {release.gateway_id} ({gdir})",
                    (Run(tuple(host_cli.extract_tar(gdir)), input=tar),),
                    diff,
                )
            )
        if not release_ok:
            diff = ""
            if ctx.facts.current is not None:
                for rel, data in sorted(release.files.items()):
                    old_file = ctx.read_file(posixpath.join(layout.release_dir(ctx.facts.current), rel))
                    diff += file_diff(f"releases/{{{ctx.facts.current} -> {release.rid}}}/{rel}", old_file, data)
            else:
                diff = "".join(
                    file_diff(f"releases/{release.rid}/{rel}", None, d)
                    for rel, d in sorted(release.files.items())
                )
            tar = tar_bytes(release.files)
            changes.append(
                Change(
                    f"upload release {release.rid} ({len(release.files)} files, {rdir})",
                    (Run(tuple(host_cli.extract_tar(rdir)), input=tar),),
                    diff,
                )
            )
        return changes

    def _current_gateway_files(self, ctx: Context) -> tuple[str | None, dict[str, bytes | None]]:
        """The serving release's gateway id and files, to diff against."""
        if ctx.facts.current is None:
            return None, {}
        manifest = ctx.read_file(posixpath.join(ctx.layout.release_dir(ctx.facts.current), "release.json"))
        if manifest is None:
            return None, {}
        try:
            current = parse_manifest(ctx.facts.current, manifest)
        except ValueError:
            return None, {}
        path = posixpath.join(ctx.layout.gateway_dir(current.gateway_id), GATEWAY_YAML)
        return current.gateway_id, {GATEWAY_YAML: ctx.read_file(path)}
