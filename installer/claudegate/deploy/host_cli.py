"""Pure builders for the host (non-Docker) commands of a deploy.

Small POSIX shell scripts take every value as a positional parameter
(``sh -c SCRIPT NAME ARG...``): nothing is spliced into script text, so a
path with a space or a quote cannot change what runs. Facts print one record
a line for :mod:`claudegate.deploy.facts` to parse.
"""

from __future__ import annotations

from collections.abc import Sequence

from claudegate.deploy.layout import DirSpec
from claudegate.deploy.renewer_restore import start_failed_renewers_script

__all__ = [
    "DOCKERD_LOG",
    "apt_install",
    "command_path",
    "ensure_dir",
    "ensure_group",
    "extract_tar",
    "file_sha256",
    "file_stats",
    "group_entry",
    "list_dir",
    "os_release",
    "read_links",
    "remove_group",
    "remove_paths",
    "set_symlink",
    "start_docker",
    "sudo_check",
    "uname_machine",
]


def uname_machine() -> list[str]:
    return ["uname", "-m"]


def os_release() -> list[str]:
    return ["cat", "/etc/os-release"]


def sudo_check() -> list[str]:
    """Run with ``sudo=True``: fails at once (``sudo -n``) if sudo would prompt."""
    return ["true"]


def command_path(name: str) -> list[str]:
    """Prints the command's path; exits non-zero when it is not installed."""
    return ["sh", "-c", 'command -v -- "$1"', "claudegate-which", name]


def apt_install(*packages: str) -> list[str]:
    """Install Debian/Ubuntu packages without questions and without recommends."""
    script = 'apt-get update -qq && apt-get install -y -qq --no-install-recommends -- "$@"'
    return ["env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c", script, "claudegate-apt", *packages]


# systemd hosts: the packaged unit. Hosts without systemd (containers, some
# VPS images): Debian's init script needs CAP_SYS_RESOURCE for its ulimit and
# fails there, so dockerd is started directly with start-stop-daemon, using
# the pid file that script would use. Its output goes to DOCKERD_LOG in /run
# (root's alone: /var/log may be writable by a log group, where a planted
# symlink would make this root-run start write wherever it points), rotated
# at each start once past 10 MB with one old copy kept.
DOCKERD_LOG = "/run/claudegate-dockerd.log"
_START_DOCKER = f"""set -eu
if [ -d /run/systemd/system ]; then exec systemctl enable --now docker.service; fi
log={DOCKERD_LOG}
if [ -f "$log" ] && [ "$(stat -c %s -- "$log")" -gt 10485760 ]; then mv -f -- "$log" "$log.1"; fi
start-stop-daemon --start --oknodo --background --make-pidfile \
  --pidfile /var/run/docker-claudegate.pid --output "$log" \
  --exec /usr/sbin/dockerd -- -p /var/run/docker.pid
# What docker.service's claudegate drop-in does on systemd hosts (renewer_restore.py).
setsid sh -c "$1" claudegate-start-renewers </dev/null >/dev/null 2>&1 &"""


def start_docker() -> list[str]:
    return ["sh", "-c", _START_DOCKER, "claudegate-start-docker", start_failed_renewers_script()]


_FILE_STATS = """for p; do
  if [ -e "$p" ] || [ -L "$p" ]; then stat -c '%a %u %g %F|%n' -- "$p"; fi
done"""


def file_stats(paths: Sequence[str]) -> list[str]:
    """``MODE UID GID TYPE|PATH`` for each path that exists (missing ones print nothing)."""
    return ["sh", "-c", _FILE_STATS, "claudegate-stat", *paths]


_FILE_SHA256 = """for p; do
  if [ -f "$p" ]; then sha256sum -- "$p"; fi
done"""


def file_sha256(paths: Sequence[str]) -> list[str]:
    """``SHA256  PATH`` for each path that is a regular file."""
    return ["sh", "-c", _FILE_SHA256, "claudegate-sha256", *paths]


_READ_LINKS = """for p; do
  if [ -L "$p" ]; then printf '%s %s\\n' "$p" "$(readlink -- "$p")"; fi
done"""


def read_links(paths: Sequence[str]) -> list[str]:
    """``LINK TARGET`` for each path that is a symlink."""
    return ["sh", "-c", _READ_LINKS, "claudegate-readlink", *paths]


# Runs as root in directories only root can write (the layout is made
# parents first, each 0755 or tighter, root-owned). A path that exists but is
# a symlink is refused, never followed: chown -h and chmod would otherwise
# act on whatever it points at.
_ENSURE_DIR = """set -eu
if [ -L "$1" ]; then echo "claudegate: $1 is a symlink; refusing to follow it" >&2; exit 1; fi
mkdir -p -- "$1"
if [ -L "$1" ] || [ ! -d "$1" ]; then echo "claudegate: $1 is not a directory" >&2; exit 1; fi
chown -h -- "$2" "$1"
exec chmod -- "$3" "$1"
"""


def ensure_dir(spec: DirSpec) -> list[str]:
    return ["sh", "-c", _ENSURE_DIR, "claudegate-dir", spec.path, spec.owner, f"{spec.mode:04o}"]


def group_entry(name: str) -> list[str]:
    """``NAME:x:GID:MEMBERS`` of a host group; exits non-zero when there is none."""
    return ["getent", "group", name]


# A system group (gid from the system range, never a login account's): the
# gateway's container joins it to read the secrets.
_ENSURE_GROUP = 'getent group "$1" >/dev/null || groupadd --system -- "$1"'


def ensure_group(name: str) -> list[str]:
    return ["sh", "-c", _ENSURE_GROUP, "claudegate-group", name]


def remove_group(name: str) -> list[str]:
    return ["sh", "-c", 'if getent group "$1" >/dev/null; then groupdel -- "$1"; fi', "claudegate-group", name]


# A new symlink replaces the old one with rename(2): whoever follows it
# (nginx on reload) sees the old target or the new one, never nothing.
_SET_SYMLINK = 'ln -sfn -- "$2" "$1.tmp" && mv -fT -- "$1.tmp" "$1"'


def set_symlink(link: str, target: str) -> list[str]:
    return ["sh", "-c", _SET_SYMLINK, "claudegate-link", link, target]


# Unpack a tar from stdin next to the destination, then rename it into place:
# a directory that exists under its final name is always complete.
_EXTRACT_TAR = """set -eu
parent=$(dirname -- "$1")
tmp=$(mktemp -d "$parent/.incoming.XXXXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
tar -x --no-same-owner -C "$tmp" -f -
chmod 0755 "$tmp"
rm -rf -- "$1"
mv -T -- "$tmp" "$1"
trap - EXIT"""


def extract_tar(dest: str) -> list[str]:
    """Unpack the tar on stdin as directory ``dest`` (replacing it atomically)."""
    return ["sh", "-c", _EXTRACT_TAR, "claudegate-untar", dest]


def list_dir(path: str) -> list[str]:
    """Entry names of a directory, one a line (hidden ones too)."""
    return ["ls", "-1A", "--", path]


def remove_paths(*paths: str) -> list[str]:
    return ["rm", "-rf", "--", *paths]
