"""The policy: rules built from config, applied to a request body."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from claudegate_gateway.config import ConfigError
from claudegate_gateway.filters import engine, regex_safety
from claudegate_gateway.filters.detectors import _ALL_DETECTORS, _DETECTOR_LIST, DETECTORS, PII_DETECTORS
from claudegate_gateway.filters.matchers import _Matcher
from claudegate_gateway.filters.normalise import _IGNORABLE_RE, _special_tables
from claudegate_gateway.filters.patterns import _pattern_matcher
from claudegate_gateway.filters.results import _ERROR_TYPES, FilterResult, Verdict
from claudegate_gateway.filters.scan import _Hit, _rebuild, _Scan, _splice
from claudegate_gateway.filters.walker import _FIXED_KINDS, _collect


@dataclass(frozen=True)
class _Rule:
    name: str
    action: str
    status: int
    matchers: tuple[_Matcher, ...]
    detector_rule: bool
    direction: str = "request"

    @property
    def on_requests(self) -> bool:
        return self.direction in ("request", "both")

    @property
    def on_responses(self) -> bool:
        return self.direction in ("response", "both")


_RULE_KEYS = ("name", "detectors", "pattern", "direction", "action", "status")
_ACTIONS = ("block", "redact", "log")
_DIRECTIONS = ("request", "response", "both")
#: Client override values: a rule's action for that client, or ``off``.
OVERRIDES = ("off", *_ACTIONS)
#: The longest match a response rule may have: the stream holds back this many characters.
MAX_RESPONSE_WIDTH = 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _fail(source: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}; {fix}")


def _suggest(value: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"known {what}: {', '.join(known)}"


class FilterPolicy:
    """An ordered set of rules; build with :meth:`from_config` or :meth:`default`."""

    __slots__ = ("_all", "_matchers", "_need_plain", "_rules")

    def __init__(self, rules: Sequence[_Rule] = ()) -> None:
        self._all = tuple(rules)
        # apply() scans requests: only the rules that look at them.
        self._rules = tuple(r for r in self._all if r.on_requests)
        seen: dict[int, _Matcher] = {}
        for rule in self._rules:
            for m in rule.matchers:
                seen.setdefault(id(m), m)
        self._matchers = tuple(seen.values())
        self._need_plain = any(not m.folded for m in self._matchers)
        if any(r.action == "redact" for r in self._rules):
            _special_tables()  # build the redaction tables now, not on a request

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._all)

    @property
    def rules(self) -> tuple[_Rule, ...]:
        """Every rule, both directions, in config order."""
        return self._all

    @property
    def response_rules(self) -> tuple[_Rule, ...]:
        return tuple(r for r in self._all if r.on_responses)

    def __len__(self) -> int:
        return len(self._all)

    def __repr__(self) -> str:
        return f"FilterPolicy({', '.join(f'{r.name}:{r.action}' + (f'@{r.direction}' if r.direction != 'request' else '') for r in self._all)})"

    def check_overrides(self, client_filters: Mapping[str, Mapping[str, str]], source: str) -> None:
        """Every rule a client override names exists, and every value is ``off`` or an action."""
        names = self.rule_names
        for client, overrides in client_filters.items():
            for rule, value in overrides.items():
                where = f"client_filters.{client}.{rule}"
                if rule not in names:
                    raise _fail(source, where, "names no rule in filters",
                                _suggest(rule, names, "rules") if names else "there are no rules to override")
                if value not in OVERRIDES:
                    raise _fail(source, where, f"{value!r} is not an override", "use off, block, redact or log")

    def for_client(self, overrides: Mapping[str, str]) -> FilterPolicy:
        """This policy with one client's overrides (rule name -> ``off`` or an action) applied."""
        if not overrides:
            return self
        rules: list[_Rule] = []
        for rule in self._all:
            change = overrides.get(rule.name)
            if change == "off":
                continue
            rules.append(rule if change is None else replace(rule, action=change))
        return FilterPolicy(rules)

    @classmethod
    def default(cls) -> FilterPolicy:
        """Every detector, action block, status 400 (used when ``filters`` is absent)."""
        return cls([_Rule("secrets", "block", 400, _DETECTOR_LIST, True)])

    @classmethod
    def from_config(cls, rules: Sequence[Mapping[str, Any]], source: str = "<config>") -> FilterPolicy:
        """Validate the ``filters`` list; ``[]`` gives a policy with no rules."""
        if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
            raise _fail(source, "filters", f"must be a list of rules, got {type(rules).__name__}",
                        "write each rule as a '- name: ...' item under filters:")
        built: list[_Rule] = []
        names: set[str] = set()
        for i, raw in enumerate(rules):
            rule = _parse_rule(raw, f"filters[{i}]", source)
            if rule.name in names:
                raise _fail(source, f"filters[{i}].name", f"duplicate rule name {rule.name!r}",
                            "give every rule its own name")
            names.add(rule.name)
            built.append(rule)
        return cls(built)

    def apply(self, body: dict[str, Any], *, fixed: bool = False) -> FilterResult:
        """Scan a parsed request body; never mutates it.

        ``fixed``: every field of ``body`` is one that cannot be rewritten
        (see walker), so a redact rule that matches blocks instead.
        """
        clean = FilterResult(body=body, changed=False, blocked=None, status=200, verdicts=[])
        if not self._rules or not isinstance(body, dict):
            return clean
        pieces = _collect(body, fixed=fixed)
        if not pieces:
            return clean
        scan = _Scan(pieces, self._need_plain)
        found: dict[int, list[_Hit]] = {}
        for m in self._matchers:
            hits = scan.run(m)
            if hits:
                found[id(m)] = hits
        if not found:
            return clean

        verdicts: list[Verdict] = []
        blocked: Verdict | None = None
        status = 200
        redactions: list[tuple[str, list[_Hit]]] = []
        for rule in self._rules:
            hits = [h for m in rule.matchers for h in found.get(id(m), ())]
            if not hits:
                continue
            fired = tuple(m.name for m in rule.matchers if id(m) in found) if rule.detector_rule else ()
            action = rule.action
            if action == "redact" and any(pieces[k][0] in _FIXED_KINDS for h in hits for k, _, _ in h.parts):
                # A tool name, property name, custom_id...: rewriting it would
                # break the request (or silently change what it means).
                action = "block"
            verdict = Verdict(rule.name, action, len({h.sig for h in hits}), fired)
            verdicts.append(verdict)
            if action == "block":
                if blocked is None:
                    blocked, status = verdict, rule.status
            elif action == "redact":
                redactions.append((rule.name, hits))
        if blocked is not None or not redactions:
            return FilterResult(body=body, changed=False, blocked=blocked, status=status, verdicts=verdicts)

        spans: dict[int, list[tuple[int, int, str]]] = {}
        for name, hits in redactions:
            label = f"[REDACTED:{name}]"
            for hit in hits:
                for k, a, b in hit.parts:
                    if b > a:
                        oa, ob = scan.original_span(k, a, b)
                        spans.setdefault(k, []).append((oa, ob, label))
        edits = [(pieces[k], _splice(pieces[k][2], sp)) for k, sp in spans.items()]
        edits = [(p, new) for p, new in edits if new != p[2]]
        if not edits:
            return FilterResult(body=body, changed=False, blocked=None, status=200, verdicts=verdicts)
        return FilterResult(body=_rebuild(body, edits), changed=True, blocked=None, status=200, verdicts=verdicts)


def _parse_rule(raw: Any, where: str, source: str) -> _Rule:
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be a mapping, got {type(raw).__name__}",
                    "give it a name and either detectors or pattern")
    for key in raw:
        if key not in _RULE_KEYS:
            hint = _suggest(str(key), _RULE_KEYS, "keys")
            if hint.startswith("did you mean"):
                hint = f"did you mean {where}.{hint.removeprefix('did you mean ')}"
            raise _fail(source, f"{where}.{key}", "unknown key", hint)

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        problem = "missing" if name is None else f"{name!r} is not a valid rule name"
        raise _fail(source, f"{where}.name", problem,
                    "use 1-64 letters, digits, '_', '.' or '-', e.g. name: no-project-x")

    action = raw.get("action", "block")
    if action not in _ACTIONS:
        raise _fail(source, f"{where}.action", f"{action!r} is not an action",
                    _suggest(str(action), _ACTIONS, "actions") + " (block, redact or log)")

    direction = raw.get("direction", "request")
    if direction not in _DIRECTIONS:
        raise _fail(source, f"{where}.direction", f"{direction!r} is not a direction",
                    _suggest(str(direction), _DIRECTIONS, "directions") + " (request, response or both)")

    if "status" in raw:
        status = raw["status"]
        if action != "block":
            raise _fail(source, f"{where}.status", "status only applies to action: block",
                        "remove status, or set action: block")
        if not isinstance(status, int) or isinstance(status, bool) or status not in _ERROR_TYPES:
            raise _fail(source, f"{where}.status", f"{status!r} is not an allowed status",
                        "use 400 (invalid_request_error) or 403 (permission_error)")
    else:
        status = 400

    has_det, has_pat = "detectors" in raw, "pattern" in raw
    if has_det == has_pat:
        problem = "has both detectors and pattern" if has_det else "has neither detectors nor pattern"
        raise _fail(source, where, problem,
                    "give exactly one: detectors: [all] for secrets, or pattern: '<regex>' (one rule each)")
    if has_det:
        matchers = _parse_detectors(raw["detectors"], f"{where}.detectors", source)
        return _Rule(name, action, status, matchers, True, direction)
    responses = direction != "request"
    matcher = _parse_pattern(name, raw["pattern"], f"{where}.pattern", source, responses=responses)
    return _Rule(name, action, status, (matcher,), False, direction)


def _parse_detectors(value: Any, where: str, source: str) -> tuple[_Matcher, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(source, where, f"must be a non-empty list, got {value!r}",
                    f"e.g. detectors: [all] or [{', '.join(DETECTORS[:2])}]")
    chosen: list[_Matcher] = []
    for j, name in enumerate(value):
        if name == "all":
            return _DETECTOR_LIST
        if not isinstance(name, str) or name not in _ALL_DETECTORS:
            raise _fail(source, f"{where}[{j}]", f"unknown detector {name!r}",
                        _suggest(str(name), (*DETECTORS, *PII_DETECTORS, "all"), "detectors"))
        if _ALL_DETECTORS[name] not in chosen:
            chosen.append(_ALL_DETECTORS[name])
    return tuple(chosen)


def _parse_pattern(name: str, value: Any, where: str, source: str, *, responses: bool = False) -> _Matcher:
    if not isinstance(value, str) or not value:
        raise _fail(source, where, f"must be a non-empty string, got {value!r}",
                    "quote the regex in single quotes, e.g. pattern: 'project\\s*x'")
    try:
        rx = re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise _fail(source, where, f"not a valid regular expression ({exc})",
                    "fix the regex; escape literal ( ) [ ] . * + ? with a backslash") from None
    normal = _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", value))
    if normal != value:
        raise _fail(source, where, "contains characters that text normalisation removes or rewrites "
                    "(fullwidth/compatibility forms, zero-width characters), so it could never match",
                    f"write the plain form instead: {normal!r}")
    if any(m.start() == m.end() for probe in ("", "x", " x ") for m in rx.finditer(probe)):
        raise _fail(source, where, "can match the empty string, so it would fire on every request",
                    "make it require at least one character (e.g. use + instead of *)")
    try:
        # Only what RE2 runs, and only shapes that are linear on the
        # backtracking engine too, whichever engine this process has: the
        # installer (maybe without RE2) and the gateway then accept the same
        # patterns (see engine.py).
        engine.check_supported(value, re.IGNORECASE)
        regex_safety.check(value, re.IGNORECASE)
        compiled = engine.compile_pattern(value)
    except (regex_safety.UnsafePattern, engine.Unsupported) as exc:
        raise _fail(source, where, exc.problem, exc.fix) from None
    width = regex_safety.max_width(value, re.IGNORECASE)
    if responses and (width is None or width > MAX_RESPONSE_WIDTH):
        raise _fail(source, where,
                    f"a response rule must have a bounded match length of at most {MAX_RESPONSE_WIDTH}"
                    " characters (streams hold back that many), this one is "
                    + ("unbounded" if width is None else f"up to {width}"),
                    "bound each repeat, e.g. \\s{0,8} instead of \\s* or \\w{1,64} instead of \\w+")
    return _pattern_matcher(name, compiled, width)
