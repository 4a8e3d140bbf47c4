"""Every wait of a probe: a sleep that the run's Cancel interrupts.

The smoke test waits out a left-over 429, the audit paces its requests and
waits for rate buckets to refill; all of it goes through
:func:`claudegate.control.cancel.sleep` with the run's token (the session's
controls), so Cancel stops a waiting run at once. A probe thread of its own
has no token and simply sleeps.
"""

from __future__ import annotations

from claudegate.control import cancel as _cancel
from claudegate.control.controls import current


def pause(seconds: float) -> None:
    """Sleep ``seconds``; Cancelled as soon as the run's token fires."""
    _cancel.sleep(seconds, current().cancel)
