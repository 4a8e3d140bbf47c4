"""Image build contexts, and the content-addressed tags that name them.

A context is a set of files (relative path -> bytes). Its tag is
``claudegate/<name>:<12 hex>``, a SHA-256 over the files and the base image
reference, so "is the image there?" is a single ``docker image inspect`` of
the tag: the same sources and base always give the same tag, and any change
gives a new one (and so a new release). The gateway's wheels are not part of
the hash: ``requirements.lock`` pins them by hash already.

Contexts travel to the host as one deterministic tar on ``docker build``'s
stdin.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from claudegate.resources import ASSETS_DIR

__all__ = [
    "ASSETS_DIR",
    "BuildContext",
    "certbot_context",
    "gateway_context",
    "nginx_context",
    "tar_bytes",
    "with_refresh",
]

#: ``<repo>/assets`` in a source checkout (as for the nginx templates).

IMAGE_REPOSITORY = "claudegate"


@dataclass(frozen=True)
class BuildContext:
    """One image's build context: its files, and where extra wheels go."""

    name: str
    files: Mapping[str, bytes]
    #: Directory whose ``*.whl`` files are added as ``wheels/`` when the tar is made.
    needs_wheels: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def digest(self, base_image: str) -> str:
        sha = hashlib.sha256()
        sha.update(f"claudegate-context-v1\0{self.name}\0{base_image}\0".encode())
        for rel in sorted(self.files):
            data = self.files[rel]
            sha.update(f"{rel}\0{len(data)}\0".encode())
            sha.update(data)
        return sha.hexdigest()

    def tag(self, base_image: str) -> str:
        return f"{IMAGE_REPOSITORY}/{self.name}:{self.digest(base_image)[:12]}"

    @property
    def repository(self) -> str:
        return f"{IMAGE_REPOSITORY}/{self.name}"

    def tar(self, wheels: Path | None = None) -> bytes:
        files = dict(self.files)
        if self.needs_wheels:
            if wheels is None:
                raise ValueError(f"the {self.name} context needs a wheelhouse")
            for wheel in sorted(wheels.glob("*.whl")):
                files[f"wheels/{wheel.name}"] = wheel.read_bytes()
        return tar_bytes(files)


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """A tar of ``files`` that depends on nothing but their names and contents.

    Fixed owner, mode and mtime, sorted names: the same files always give
    the same bytes (and Docker's build cache sees the same layers).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs: set[str] = set()
        for rel in sorted(files):
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen_dirs:
                    seen_dirs.add(directory)
                    tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, 0))
            data = files[rel]
            tar.addfile(_info(rel, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def gateway_context(assets: Path = ASSETS_DIR) -> BuildContext:
    """Dockerfile, requirements.lock and the service's sources; wheels are added at tar time."""
    gateway = assets / "gateway"
    files = {
        "Dockerfile": (gateway / "Dockerfile").read_bytes(),
        "requirements.lock": (gateway / "requirements.lock").read_bytes(),
        **_tree(gateway / "claudegate_gateway", "claudegate_gateway"),
    }
    return BuildContext("gateway", files, needs_wheels=True)


def nginx_context(assets: Path = ASSETS_DIR) -> BuildContext:
    return BuildContext("nginx", {"Dockerfile": (assets / "nginx" / "Dockerfile").read_bytes()})


# certbot from Debian, run on the host (see steps/acme.py for why there), and
# the renewer loop that runs in it (assets/certbot/claudegate_renew.py). nginx
# and its set-misc module are the same Debian packages as the nginx image's:
# the renewer runs ``nginx -t`` on the served configuration before a reload.
# psycopg2: with several hosts the certificate is shared through PostgreSQL
# (assets/certbot/claudegate_share.py).
_CERTBOT_DOCKERFILE = b"""\
# claudegate's certbot: Debian's package on the configured base image.
ARG BASE_IMAGE=claudegate/debian-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        certbot ca-certificates nginx libnginx-mod-http-set-misc python3-psycopg2 \\
 && apt-get clean \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /etc/nginx/sites-enabled/default /var/www/html
COPY claudegate_renew.py claudegate_share.py /usr/local/lib/claudegate/
ENTRYPOINT ["certbot"]
"""

#: Where the renewer script is inside the certbot image.
RENEWER_IN_IMAGE = "/usr/local/lib/claudegate/claudegate_renew.py"
#: ... and the certificate share (several hosts), run one-shot by the deploy.
SHARE_IN_IMAGE = "/usr/local/lib/claudegate/claudegate_share.py"


def certbot_context(assets: Path = ASSETS_DIR) -> BuildContext:
    files = {
        "Dockerfile": _CERTBOT_DOCKERFILE,
        "claudegate_renew.py": (assets / "certbot" / "claudegate_renew.py").read_bytes(),
        "claudegate_share.py": (assets / "certbot" / "claudegate_share.py").read_bytes(),
    }
    return BuildContext("certbot", files)


def with_refresh(context: BuildContext, stamp: str) -> BuildContext:
    """``context`` marked with a refresh stamp (``deploy --refresh``): a new tag for the same sources.

    The stamp is a file the Dockerfiles never read; it only moves the tag, so
    a refresh is a new release that goes through the smoke-tested switch.
    No stamp: the context unchanged (the tags of every earlier deploy stay).
    """
    if not stamp:
        return context
    return BuildContext(context.name, {**context.files, "REFRESH": f"{stamp}\n".encode()},
                        context.needs_wheels, context.labels)  # fmt: skip
