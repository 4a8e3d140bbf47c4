"""The engine operator regexes run on: RE2 (linear time) when installed, else ``re`` behind the shape check.

The gateway image installs ``google-re2`` (a wheel shipped with the image):
RE2 runs every pattern in time linear in the text, whatever its shape, so
no operator pattern can stall the gateway. Where it is not installed (a
host where the wheel cannot load, a development checkout without it),
patterns run on Python's backtracking ``re``, guarded by regex_safety.py,
which refuses the shapes that make it super-linear.

Which patterns are accepted does not depend on the engine: the shape check
runs on both, and a pattern may use only what RE2 can run -- so deploy.yaml
validated on an operator machine without RE2 and the gateway with it agree.
That is: no look-around, no
back-references, no atomic groups or possessive repeats, no ``\\Z``
(checked on the parse tree here, so a machine without RE2 refuses them
too). With RE2, ``\\w``, ``\\d``, ``\\s`` and ``\\b`` mean their ASCII forms;
request text is NFKC-normalised first, so fullwidth digits and letters are
plain ASCII by then.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any, Protocol

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

try:
    import re2 as _re2  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _re2 = None

#: "re2" or "re": which engine operator patterns run on in this process.
ENGINE = "re" if _re2 is None else "re2"


class Pattern(Protocol):
    """What the filters use of a compiled pattern (``re.Pattern`` and RE2's both have it)."""

    @property
    def pattern(self) -> str: ...

    def finditer(self, text: str, pos: int = ..., endpos: int = ...) -> Iterator[Any]: ...


class Unsupported(ValueError):
    """A pattern that uses a feature RE2 cannot run; ``fix`` says what to write."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


_FEATURES: dict[Any, tuple[str, str]] = {
    _c.ASSERT: ("uses a look-around ((?=...), (?<=...))", "match the surrounding text itself, or use \\b"),
    _c.ASSERT_NOT: (
        "uses a negative look-around ((?!...), (?<!...))",
        "use a negated class such as [^x] or \\b",
    ),
    _c.GROUPREF: ("uses a back-reference", "match the text itself instead of referring back to a group"),
    _c.GROUPREF_EXISTS: ("uses a conditional group (?(1)...)", "write the alternatives out with |"),
    _c.ATOMIC_GROUP: (
        "uses an atomic group (?>...)",
        "use a plain group (?:...): the engine never backtracks",
    ),
    _c.POSSESSIVE_REPEAT: (
        "uses a possessive repeat (*+, ++, ?+)",
        "drop the second +: the engine never backtracks",
    ),
}


def check_supported(pattern: str, flags: int = 0) -> None:
    """Raise :class:`Unsupported` when ``pattern`` needs a feature of ``re`` that RE2 lacks."""
    stack = [list(_parser.parse(pattern, flags))]
    while stack:
        for op, av in stack.pop():
            if op in _FEATURES:
                problem, fix = _FEATURES[op]
                raise Unsupported(
                    f"{problem}, which the gateway's linear-time regex engine (RE2) cannot run", fix
                )
            if op == _c.AT and av == _c.AT_END_STRING:
                raise Unsupported(
                    "uses \\Z, which the gateway's linear-time regex engine (RE2) does not know",
                    "use $ instead",
                )
            if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
                stack.append(list(av[2]))
            elif op == _c.SUBPATTERN:
                stack.append(list(av[3]))
            elif op == _c.BRANCH:
                stack.extend(list(b) for b in av[1])


def compile_pattern(pattern: str) -> Pattern:
    """An operator pattern compiled case-insensitively on this process's engine.

    Raises :class:`Unsupported` when RE2 refuses it (after :func:`check_supported`
    passed: a corner of the syntax the two engines read differently).
    """
    if _re2 is None:
        return re.compile(pattern, re.IGNORECASE)
    options = _re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the refusal is reported once, as a config error
    try:
        compiled: Pattern = _Re2Pattern(_re2.compile(pattern, options))
    except _re2.error as exc:
        detail = (
            exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        )
        raise Unsupported(
            f"is not a pattern the gateway's linear-time regex engine (RE2) accepts ({detail})",
            "rewrite it without that construct",
        ) from None
    return compiled


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Re2Pattern:
    """RE2's pattern, taking any ``str``: RE2 reads UTF-8, which a lone surrogate
    (legal in JSON, ``"\\ud83d"``) has no encoding in. Such text is searched with
    each surrogate read as U+FFFD: one character for one, so offsets are the same."""

    __slots__ = ("_rx",)

    def __init__(self, rx: Any) -> None:
        self._rx = rx

    @property
    def pattern(self) -> str:
        return str(self._rx.pattern)

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Any]:
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = _SURROGATE.sub("\ufffd", text)
        return self._rx.finditer(text, pos, len(text) if endpos is None else endpos)  # type: ignore[no-any-return]
