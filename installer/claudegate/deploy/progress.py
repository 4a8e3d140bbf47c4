"""Moved to :mod:`claudegate.control.progress` (the deploy and the probes use it, below the session).

This name stays for the front ends and older callers; it is the same module object.
"""

import sys

from claudegate.control import progress as _moved
from claudegate.control.progress import *  # noqa: F403 - the names, for type checkers

sys.modules[__name__] = _moved
