"""The gateway's own paced stream: proof that nothing between it and a client buffers events.

``/v1/claudegate/pace`` (see claudegate_gateway.routes) sends
:data:`PACE_EVENTS` events :data:`PACE_INTERVAL` apart, made by the gateway,
never upstream, no tokens; arriving closer together than half that, they
were held somewhere on the way. The smoke test's ``stream.unbuffered`` and
the audit's ``edge.stream_unbuffered`` both run :func:`check_pace`.
"""

from __future__ import annotations

import itertools
import time

import httpx

from claudegate.probes.api import auth_headers
from claudegate.probes.http import snippet
from claudegate.probes.sse import SSEEvent, SSEParser
from claudegate.probes.verdict import Failed, describe_error
from claudegate.probes.wire import Endpoint

PACE_PATH = "/v1/claudegate/pace"
PACE_EVENTS = 6
PACE_INTERVAL = 0.1
#: A buffering proxy holds the events of every try; a reader that came late (its thread waited for the
#: GIL behind the wizard's screen, or for a CPU on a busy machine) bunches one try's events only, as the
#: wizard's deploy on a loaded 2-core machine saw once. So a stream reads as buffered only when every
#: try does.
PACE_TRIES = 3


def check_pace(ep: Endpoint, http: httpx.Client, key: str, deadline: float) -> str:
    """Pass when the paced events arrive apart on one of :data:`PACE_TRIES` tries (each within ``deadline`` s)."""
    for attempt in range(1, PACE_TRIES + 1):
        events = _paced_events(ep, http, key, deadline)
        gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(events)]
        held = sum(gap < PACE_INTERVAL / 2 for gap in gaps)
        if held <= len(gaps) // 2:
            retried = "" if attempt == 1 else f" (on try {attempt}: the earlier tries arrived bunched, as a late reader sees them)"
            return (
                f"{PACE_EVENTS} events sent {PACE_INTERVAL * 1000:.0f} ms apart arrived "
                f"{min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms apart: not buffered{retried}"
            )
    spread = events[-1].arrived - events[0].arrived
    raise Failed(
        f"events sent {PACE_INTERVAL * 1000:.0f} ms apart arrived within {spread * 1000:.0f} ms of each other "
        f"({held} of {len(gaps)} gaps under {PACE_INTERVAL * 500:.0f} ms, on each of {PACE_TRIES} tries): "
        "the stream is buffered somewhere on the way (e.g. proxy_buffering on in nginx)"
    )


def _paced_events(ep: Endpoint, http: httpx.Client, key: str, deadline: float) -> list[SSEEvent]:
    """One paced stream's events, each stamped with when it was read."""
    headers = {**auth_headers(key), "accept": "text/event-stream", "accept-encoding": "identity"}
    parser = SSEParser()
    events: list[SSEEvent] = []
    started = time.monotonic()
    with http.stream("GET", ep.https_url(PACE_PATH), headers=headers) as response:
        if response.status_code != 200:
            response.read()
            hint = {
                403: " (the smoke client's scopes predate it: deploy again to renew them)",
                404: " (the gateway is older than this claudegate: deploy again)",
            }.get(response.status_code, "")
            raise Failed(f"GET {PACE_PATH}: {response.status_code} {snippet(response)}{hint}")
        try:
            for chunk in response.iter_raw():
                arrived = time.monotonic() - started
                events.extend(e for e in parser.feed(chunk, arrived) if e.event == "claudegate_pace")
                if arrived > deadline:
                    raise Failed(f"the paced stream was still going after {arrived:.0f} s")
        except httpx.TransportError as exc:
            raise Failed(f"the paced stream broke after {len(events)} events: {describe_error(exc)}") from None
    if len(events) != PACE_EVENTS:
        raise Failed(f"the paced stream carried {len(events)} events, {PACE_EVENTS} were sent")
    return events
