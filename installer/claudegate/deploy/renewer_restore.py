"""Start the renewer again when Docker's own restore could not: after a reboot or dockerd restart.

The renewer joins nginx's network and PID namespaces (see
steps/renewal.py for why). Docker refuses to start a container whose
namespace owner is not running ("cannot join network of a non running
container"), and when dockerd starts it restores the containers with a
restart policy all at once, in no order: links are waited for, ``--network
container:`` owners are not (moby/moby#50326, open). A restore start that
fails is not retried -- restart policies act on a container that exited,
not on one that never started -- so the renewer could stay down for good
while nginx and the gateway serve again.

Nothing inside Docker can retry it (a container holding the Docker socket
would be root on the host), so the retry runs on the host, right after
dockerd starts: on systemd hosts as an ``ExecStartPost`` of docker.service
(a drop-in; boot and every ``systemctl restart docker``), elsewhere from the
deploy's own start of dockerd. It starts only renewers whose last start
*failed* (Docker keeps the error in ``State.Error``): a renewer an operator
stopped by hand has no error and stays stopped, as ``unless-stopped`` says.
It gives up after a bounded time and never fails dockerd's start.
"""

from __future__ import annotations

from claudegate.deploy.layout import LABEL_ROLE

__all__ = ["HOOK_PATH", "SYSTEMD_DROPIN", "install_hook", "start_failed_renewers_script"]

#: Root-owned, outside any directory the deploy hands to a service.
HOOK_PATH = "/usr/local/sbin/claudegate-start-renewers"
SYSTEMD_DROPIN = "/etc/systemd/system/docker.service.d/claudegate-start-renewers.conf"

# Wait up to 60 s for dockerd to answer (it answers once its restore is
# done), then for up to 60 s start each renewer whose last start failed,
# once a second, until none is left (its nginx may still be starting).
_SCRIPT = f"""#!/bin/sh
# Installed by claudegate: start ACME renewers that Docker's restore could not start.
i=0
until docker info >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -le 60 ] || exit 0; sleep 1
done
i=0
while [ "$i" -lt 60 ]; do
  left=0
  for c in $(docker container ls --all --quiet --filter label={LABEL_ROLE}=certbot --filter status=exited); do
    [ -n "$(docker container inspect --format '{{{{.State.Error}}}}' "$c" 2>/dev/null)" ] || continue
    docker container start "$c" >/dev/null 2>&1 || left=1
  done
  [ "$left" -eq 1 ] || exit 0
  i=$((i + 1)); sleep 1
done
exit 0
"""

_DROPIN = f"""# Installed by claudegate: see {HOOK_PATH}.
[Service]
ExecStartPost=-{HOOK_PATH}
"""

# Write the hook (and on systemd hosts the drop-in) atomically, root-owned.
_INSTALL = """set -eu
umask 022
printf '%s' "$1" >"$3.tmp" && chmod 0755 "$3.tmp" && mv -f "$3.tmp" "$3"
if [ -d /run/systemd/system ]; then
  mkdir -p "$(dirname "$4")"
  if ! [ -f "$4" ] || [ "$(cat "$4")" != "$(printf '%s' "$2")" ]; then
    printf '%s' "$2" >"$4.tmp" && mv -f "$4.tmp" "$4" && systemctl daemon-reload
  fi
fi"""


def start_failed_renewers_script() -> str:
    """The hook's shell text (run in the background by the deploy's own start of dockerd)."""
    return _SCRIPT


def install_hook() -> list[str]:
    """Install the hook at HOOK_PATH and, on systemd hosts, docker.service's drop-in that runs it."""
    return ["sh", "-c", _INSTALL, "claudegate-install-hook", _SCRIPT, _DROPIN, HOOK_PATH, SYSTEMD_DROPIN]
