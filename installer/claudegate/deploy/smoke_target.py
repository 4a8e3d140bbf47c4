"""The smoke test's view of a deployment: what clients call, and how hard to push it.

Both the deploy's smoke step and the audit (:func:`claudegate.deploy.audit_run.target_for`)
start from it, so they reach the deployment the same way.
"""

from __future__ import annotations

from pathlib import Path

from claudegate.config.model import DeployConfig
from claudegate.knobs import size_in_bytes
from claudegate.redact import Secret
from claudegate.smoke import SmokeTarget

__all__ = ["target_for"]


def target_for(
    cfg: DeployConfig,
    *,
    trust: Path | None,
    client_key: Secret | None,
    max_body_bytes: int | None = None,
    per_ip_burst: int | None = None,
) -> SmokeTarget:
    """The smoke test's view of a deployment: what clients call, and how hard to push it."""
    https = cfg.ports.https
    if trust is None and cfg.tls.mode == "internal-ca":
        candidate = Path(cfg.state_dir) / "ca.pem"
        trust = candidate if candidate.exists() else None
    return SmokeTarget(
        base_url=f"https://{cfg.domain}" + ("" if https == 443 else f":{https}"),
        # Straight to the target: the domain may not resolve (yet) where the deploy runs.
        connect_host="127.0.0.1" if cfg.target.is_local else cfg.target.host,
        https_port=https,
        http_port=cfg.ports.http,
        ca_file=trust,
        client_key=client_key,
        max_body_bytes=max_body_bytes or size_in_bytes(cfg.limits.max_body_size),
        # Well past the per-address bucket, so nginx must answer 429.
        burst=2 * (per_ip_burst if per_ip_burst is not None else cfg.limits.per_ip.burst) + 40,
    )
