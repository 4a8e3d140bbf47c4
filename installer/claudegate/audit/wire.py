"""Moved to :mod:`claudegate.probes.wire` (the smoke test uses it too, and sits below the audit).

This name stays for older callers; it is the same module object.
"""

import sys

from claudegate.probes import wire as _moved
from claudegate.probes.wire import *  # noqa: F403 - the names, for type checkers

sys.modules[__name__] = _moved
