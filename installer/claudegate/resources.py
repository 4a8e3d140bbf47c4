"""Where the files that go onto the host live: ``assets/`` and ``playbooks/`` (and ``examples/``).

In a checkout (and an editable install) they sit beside ``installer/``. An
installed wheel carries them as data files under ``<prefix>/share/claudegate``
(see ``[tool.setuptools.data-files]`` in pyproject.toml), since they are not
Python packages of their own.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _find(name: str) -> Path:
    candidates = [_CHECKOUT / name]
    for prefix in (sysconfig.get_path("data"), sys.prefix):
        candidates.append(Path(prefix) / "share" / "claudegate" / name)
    for path in candidates:
        if path.is_dir():
            return path
    # The first is where a developer expects it; errors will name it.
    return candidates[0]


ASSETS_DIR = _find("assets")
PLAYBOOKS_DIR = _find("playbooks")
#: The commented example configs ``claudegate init --example`` writes.
EXAMPLES_DIR = _find("examples")
