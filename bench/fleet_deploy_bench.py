"""How long a fresh fleet takes: a state host, then three gateway hosts, from nothing to smoke-tested.

Issue #15 asks for the fresh multi-host deploy time (3 hosts + a state host)
with a progress line at least every 5 s. This starts four "fresh server"
containers (sshd only, no Docker) on one bridge network, exactly as the
end-to-end tests do, with the fake Anthropic API as upstream, and runs what
an operator runs:

1. ``claudegate state deploy``: Redis and PostgreSQL on the first server
   (``state: host:``), Docker installed there first;
2. ``claudegate deploy`` with ``hosts:`` naming the other three: Docker on
   each, the images, the roll host by host, each smoke-tested.

Every progress event either run reports is timed; the table gives each
phase's seconds, the per-host times of the roll, and the longest silence
between two events (what an operator watching the screen would wait for).
Needs dockerd and the Debian base image (tests/infra/start-services.sh,
tests/infra/build-base-image.sh).

    .venv/bin/python bench/fleet_deploy_bench.py [--hosts 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from claudegate.control.progress import StepEvent  # noqa: E402
from claudegate.deploy.api import connector_for, deploy_hosts  # noqa: E402
from claudegate.deploy.state_host import deploy_state_host, state_config  # noqa: E402
from tests.deploy.support import server_target, upstream_url, write_config, write_secret  # noqa: E402
from tests.support.fake_anthropic import spawn_fake  # noqa: E402
from tests.support.fresh_server import start_fresh_servers  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=3, help="gateway hosts (a state host comes on top)")
    args = ap.parse_args()
    events: list[tuple[float, str]] = []

    def reporter(phase: str) -> Any:
        def report(event: StepEvent) -> None:
            events.append((time.monotonic(), f"{phase}: {event.step}"))

        return report

    canary = "sk-ant-api03-BENCH-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="cg-fleet-deploy-bench-") as tmp:
        directory = Path(tmp)
        started = time.monotonic()
        with start_fresh_servers(directory, args.hosts + 1) as servers:
            servers_up = time.monotonic() - started
            state, gateways = servers[0], servers[1:]
            fake = spawn_fake("0.0.0.0:0", api_keys=[canary], event_delay=0.01)
            try:
                known = directory / "known_hosts"
                doc = {
                    "hosts": [server_target(s, known) for s in gateways],
                    "domain": "gw.test",
                    "tls": {"mode": "internal-ca"},
                    "upstream": {"base_url": upstream_url(gateways[0].host_address, fake),
                                 "api_key_file": str(write_secret(directory / "anthropic_api_key", canary))},
                    "clients": [{"name": "team-a"}],
                    "state": {"host": server_target(state, known)},
                    "state_dir": str(directory / "state"),
                }  # fmt: skip
                cfg = write_config(directory, doc, "deploy.yaml")
                t0 = time.monotonic()
                events.append((t0, "state: start"))
                with connector_for(state_config(cfg)) as conn:
                    deploy_state_host(cfg, conn, reporter=reporter("state"))
                t1 = time.monotonic()
                events.append((t1, "fleet: start"))
                result = deploy_hosts(cfg, connector_for, reporter=reporter("fleet"))
                t2 = time.monotonic()
                assert all(h.smoke is not None and h.smoke.ok for h in result.hosts), "a host's smoke test failed"
            finally:
                fake.stop()
    gaps = sorted(((round(b[0] - a[0], 1), a[1], b[1]) for a, b in itertools.pairwise(events)), reverse=True)
    print(f"\nfresh fleet deploy: a state host + {args.hosts} gateway hosts "
          f"({platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)")  # fmt: skip
    print(f"  fresh-server containers up (not part of a deploy): {servers_up:6.1f} s")
    print(f"  claudegate state deploy:                           {t1 - t0:6.1f} s")
    print(f"  claudegate deploy ({args.hosts} hosts, rolled one by one):    {t2 - t1:6.1f} s")
    print(f"  both, as an operator waits for them:               {t2 - t0:6.1f} s")
    print(f"  progress events: {len(events)}; longest silences: "
          + "; ".join(f"{g} s after {a}" for g, a, _b in gaps[:3]))
    return 0 if gaps and gaps[0][0] <= 5.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
