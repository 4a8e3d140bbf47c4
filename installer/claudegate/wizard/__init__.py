"""The wizard (``claudegate init``): from an empty terminal to a smoke-tested gateway, and the day-2 console.

A Textual app over the same core as the CLI: every call into the core is in
:mod:`.core` (the adapter), the questions the core asks are answered by
dialogs (:mod:`.interaction`), and the form model (:mod:`.form`) imports no
widgets. This package's ``__init__`` imports nothing heavy, so ``claudegate
--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run"]


def run(config: Path | None = None, *, fresh: bool = False, save_to: Path | None = None) -> int:
    """Run the wizard (or the console on an existing ``config``); Textual prints its closing message.

    Returns the exit code: not 0 when the app stopped on an error (Textual has printed it).
    """
    from claudegate.wizard.app import make_app

    app = make_app(config, fresh=fresh, save_to=save_to)
    app.run()
    return app.return_code or 0
