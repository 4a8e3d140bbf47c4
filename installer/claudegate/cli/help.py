"""The command lists of ``--help``: each command's first sentence, wrapped at the terminal's width.

Click cuts a command's one-line help to what fits beside its name and ends it with "..." (at 80
columns: "init  The setup wizard (a terminal UI); `--example..."): a newcomer reading the list cannot
tell what half the commands do. Here the sentence is whole, on as many lines as it takes.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

__all__ = ["WrappedHelpGroup"]

#: Long enough for any first sentence: the sentence is kept whole and wrapped by the formatter.
_WHOLE = 10_000


class WrappedHelpGroup(TyperGroup):
    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(_WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
