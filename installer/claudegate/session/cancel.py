"""Moved to :mod:`claudegate.control.cancel` (the deploy and the probes use it, below the session).

This name stays for the front ends and older callers; it is the same module object.
"""

import sys

from claudegate.control import cancel as _moved
from claudegate.control.cancel import *  # noqa: F403 - the names, for type checkers

sys.modules[__name__] = _moved
