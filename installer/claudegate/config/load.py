"""Load ``deploy.yaml``: YAML with node positions, then the typed model, then one line per problem.

The YAML is composed into nodes first (they carry line and column), then
constructed with pyyaml's safe constructor. A map from field path (a
pydantic ``loc``: ``('clients', 1, 'rpm')``) to the position of its key lets
every validation error point at the line to edit::

    deploy.yaml:14:5: clients[1].rpm: must be a positive whole number, got -3; set it to e.g. 60

Problems are found in two passes: the schema (types, unknown keys, missing
keys, duplicate keys, anything that looks like an API key), then the rules
across sections (:mod:`claudegate.config.rules`). Both are reported in one
run: when the schema fails, the rules still run on the rest of the config
(the refused values cut out), so nobody fixes one list to meet the next.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from claudegate.config.model import RULES_DEFERRED, DeployConfig, _show
from claudegate.config.problems import DeployConfigError, Problem
from claudegate.config.rules import Loc, RuleProblem, format_path, rule_problems
from claudegate.errors import ConfigError

__all__ = ["Origin", "load_config", "load_config_text", "problem_at"]

#: Keys that would hold the Anthropic key inline; refused with the way to do it instead.
_INLINE_KEY_NAMES = {"api_key", "anthropic_api_key", "apikey", "key", "x_api_key", "x-api-key"}
_INLINE_KEY_FIX = (
    "put it in a file with mode 0600 and set upstream.api_key_file, or export it and set upstream.api_key_env"
)
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Origin:
    """Where a loaded config came from: the source name and the position of each key."""

    source: str
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    root: tuple[int, int] = (1, 1)

    def locate(self, loc: Loc) -> tuple[int, int]:
        """1-based (line, column) of ``loc``'s key, else of its nearest present parent."""
        for n in range(len(loc), 0, -1):
            found = self.positions.get(loc[:n])
            if found is not None:
                return found
        return self.root


def problem_at(origin: Origin | None, loc: Loc, problem: str, fix: str | None) -> Problem:
    """A :class:`Problem` about ``loc``, positioned if ``origin`` knows where it is."""
    if origin is None:
        return Problem(None, None, None, format_path(loc), problem, fix)
    line, column = origin.locate(loc)
    return Problem(origin.source, line, column, format_path(loc), problem, fix)


# --- reading ------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> DeployConfig:
    """Read, parse and validate a deploy config file. Raises :class:`ConfigError` with every problem.

    Relative paths in the file are relative to the file's directory. The
    secret files are *not* read or checked here; the deploy calls
    :func:`claudegate.config.check_secret_files` before it needs them.
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{source}: cannot read the config: {exc.strerror or exc}",
            hint="check the path given to --config (default ./deploy.yaml); `claudegate init` makes one",
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DeployConfigError(
            [Problem(source, line, None, "", "is not UTF-8 text", "save the file as UTF-8")]
        ) from None
    return load_config_text(text, source=source, base_dir=path.parent.absolute())


def load_config_text(text: str, *, source: str = "deploy.yaml", base_dir: Path | None = None) -> DeployConfig:
    """Parse and validate deploy config text; ``source`` names it in messages."""
    data, origin, problems = _parse(text, source)
    if data is None and not problems:
        raise DeployConfigError(
            [
                Problem(
                    source,
                    1,
                    1,
                    "",
                    "the config is empty",
                    "write one with the wizard (claudegate init) or from a commented example:"
                    " claudegate init --example local --out deploy.yaml",
                )
            ]
        )
    return validate_data(data, origin, problems, base_dir=base_dir)


def validate_data(
    data: Any, origin: Origin | None, problems: list[Problem], *, base_dir: Path | None = None
) -> DeployConfig:
    """Validate parsed data (a file's, or a document built in code when ``origin`` is None).

    Raises :class:`DeployConfigError` with ``problems`` plus every problem found;
    without an origin the problems carry the field but no file position.
    """
    problems = list(problems)
    reported = {p.field for p in problems}
    context = {"base_dir": base_dir, RULES_DEFERRED: True}
    cfg: DeployConfig | None = None
    errors: list[ErrorDetails] = []
    try:
        cfg = DeployConfig.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A misspelled key (TLS:) is one problem, not also a missing one (tls:).
        suggested = {
            (*error["loc"][:-1], name)
            for error in errors
            if error["type"] == "extra_forbidden" and (name := _suggestion(tuple(error["loc"]))) is not None
        }
        for error in errors:
            if error["type"] == "default_factory_not_called":
                continue  # a consequence of another error
            if error["type"] == "missing" and tuple(error["loc"]) in suggested:
                continue
            problem = _problem_from_error(error, origin)
            if problem.field not in reported or problem.field == "":
                problems.append(problem)
    for loc in _secret_looking(data):
        if format_path(loc) not in {p.field for p in problems}:
            problems.append(
                problem_at(
                    origin,
                    loc,
                    "holds what looks like an Anthropic API key",
                    "remove it (and revoke the key if this file was shared); " + _INLINE_KEY_FIX,
                )
            )
    if problems:
        if cfg is None:
            said = {p.field for p in problems}
            problems += [
                _rule_problem(r, origin) for r in _rules_on_the_rest(data, errors, context)
                if format_path(r.loc) not in said
            ]
        raise DeployConfigError(problems)
    assert cfg is not None
    rules = [_rule_problem(r, origin) for r in rule_problems(cfg)]
    if rules:
        raise DeployConfigError(rules)
    if origin is not None:
        cfg._origin = origin
    return cfg


class _Loader(yaml.SafeLoader):
    """The safe loader; a value its constructor chokes on becomes a positioned YAML error."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            what = "date" if node.tag.endswith(":timestamp") else "value"
            raise yaml.constructor.ConstructorError(
                None, None, f"this {what} cannot be read: {exc}", node.start_mark
            ) from None


def _parse(text: str, source: str) -> tuple[Any, Origin, list[Problem]]:
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
            problems = list(_duplicate_keys(node, source)) if node is not None else []
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            raise _yaml_error(exc, source) from None
        except yaml.YAMLError as exc:
            raise DeployConfigError(
                [Problem(source, None, None, "", f"is not valid YAML: {exc}", None)]
            ) from None
        except RecursionError:
            raise DeployConfigError(
                [Problem(source, None, None, "", "is nested too deeply to be a deploy config", None)]
            ) from None
        positions: dict[Loc, tuple[int, int]] = {}
        root = (1, 1)
        if node is not None:
            root = (node.start_mark.line + 1, node.start_mark.column + 1)
            _record_positions(loader, node, (), positions, set(), 0)
        return data, Origin(source, positions, root), problems
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.MarkedYAMLError, source: str) -> DeployConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    what = exc.problem or exc.context or "the YAML cannot be read"
    if exc.context and exc.problem and exc.context_mark is not None:
        what = f"{exc.problem} ({exc.context} on line {exc.context_mark.line + 1})"
    fix = "fix the YAML syntax there"
    if "this date cannot be read" in what:
        fix = "write a real date and time, e.g. 2027-06-30T00:00:00Z"
    if "\t" in what or "'\\t'" in what:
        fix = "indent with spaces; YAML does not allow tabs for indentation"
    elif "expected <block end>" in what:
        fix = "check the indentation: the keys of one section must start in the same column"
    elif "mapping values are not allowed" in what:
        fix = "put a space after each ':' and quote values that contain ': '"
    elif "found character '@'" in what or "found character '`'" in what:
        fix = "quote the value ('...')"
    elif "unhashable" in what:
        fix = "keys must be plain names, not lists or mappings"
    return DeployConfigError([Problem(source, line, column, "", f"invalid YAML: {what}", fix)])


def _key_value(loader: yaml.SafeLoader, key_node: yaml.Node) -> Any:
    return loader.construct_object(key_node, deep=True)


def _record_positions(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Loc,
    positions: dict[Loc, tuple[int, int]],
    seen: set[int],
    depth: int,
) -> None:
    """``positions[path]`` = 1-based (line, column) of the key (or list item) at ``path``.

    An aliased node is descended once (a YAML "billion laughs" stays cheap);
    deeper paths through a second alias fall back to the alias's own position.
    """
    if id(node) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            try:
                key = _key_value(loader, key_node)
            except yaml.YAMLError:
                continue
            if not isinstance(key, str | int):
                key = str(key)
            child = (*path, key)
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _record_positions(loader, value_node, child, positions, seen, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _record_positions(loader, item, child, positions, seen, depth + 1)


def _duplicate_keys(node: yaml.Node, source: str) -> Iterator[Problem]:
    """pyyaml keeps the last of two equal keys silently; we say so instead."""
    stack: list[tuple[yaml.Node, str]] = [(node, "")]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    ident = (key_node.tag, key_node.value)
                    child = f"{path}.{key_node.value}" if path else key_node.value
                    if ident in first_line:
                        yield Problem(
                            source,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            child,
                            f"is given twice in this mapping (first on line {first_line[ident]})",
                            "keep one of them; YAML would silently use the last",
                        )
                    else:
                        first_line[ident] = key_node.start_mark.line + 1
                    stack.append((value_node, child))
                else:
                    stack.append((value_node, path))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                stack.append((item, f"{path}[{index}]"))


def _secret_looking(data: Any) -> list[Loc]:
    found: list[Loc] = []
    stack: list[tuple[Any, Loc]] = [(data, ())]
    seen: set[int] = set()
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            if "sk-ant-" in value:
                found.append(loc)
        elif isinstance(value, dict | list) and id(value) not in seen and len(loc) <= _MAX_DEPTH:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((item, (*loc, key if isinstance(key, str | int) else str(key))))
    return sorted(found, key=str)


# --- pydantic errors -> problems ----------------------------------------------------------


def _rules_on_the_rest(data: Any, errors: list[ErrorDetails], context: dict[str, Any]) -> list[RuleProblem]:
    """The rules' problems in the parts of ``data`` the schema accepted (empty when it cannot tell).

    Each refused value is cut out and the rest validated again, so defaults stand in: a mapping key is
    deleted; an entry of a top-level list (a client without a valid name, a bad allowlist range) is
    taken out of its list, the others keeping their own positions in what is said. A rule about a part
    that lost a value is not said (it could be about the stand-in).
    """
    pruned = copy.deepcopy(data)
    if not isinstance(pruned, dict):
        return []
    #: For each top-level list: the file's index of each entry still in ``pruned``.
    kept = {key: list(range(len(value))) for key, value in pruned.items() if isinstance(value, list)}
    cuts: list[Loc] = []  # in the file's positions

    def in_file(loc: Loc) -> Loc:
        if len(loc) > 1 and loc[0] in kept and isinstance(loc[1], int) and loc[1] < len(kept[str(loc[0])]):
            return (loc[0], kept[str(loc[0])][loc[1]], *loc[2:])
        return loc

    locs = _refused(errors)
    for _round in range(3):  # a cut can uncover a problem the first error hid; a few rounds settle it
        drops: dict[str, set[int]] = {}
        for loc in locs:
            where = in_file(loc)
            if any(where[: len(cut)] == cut for cut in cuts):
                continue  # inside what is cut out already
            if len(loc) == 2 and loc[0] in kept and isinstance(loc[1], int):
                drops.setdefault(str(loc[0]), set()).add(loc[1])
                cuts.append(where)
                continue
            cut = _cut(pruned, loc)
            if cut is None:
                return []
            cuts.append(in_file(cut))
        for key, indices in drops.items():
            for index in sorted(indices, reverse=True):  # from the end: the others keep their indices
                del pruned[key][index]
                del kept[key][index]
        try:
            cfg = DeployConfig.model_validate(pruned, context=context)
        except ValidationError as exc:
            locs = _refused(exc.errors(include_url=False))
            continue
        said = [RuleProblem(in_file(r.loc), r.problem, r.fix) for r in rule_problems(cfg)]
        return [r for r in said if r.loc and not any(_related(r.loc, cut) for cut in cuts)]
    return []


def _refused(errors: list[ErrorDetails]) -> list[Loc]:
    """What to cut out for ``errors``: a refused value, or the mapping that lacks a required key."""
    locs: list[Loc] = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "default_factory_not_called":
            continue  # a default computed from fields that failed: a consequence, not a value
        locs.append(loc[:-1] if error["type"] == "missing" else loc)
    return locs


def _cut(data: Any, loc: Loc) -> Loc | None:
    """Remove the innermost mapping key on ``loc`` from ``data``; its path, or None when there is none."""
    node, holder, key = data, None, None
    path: Loc = ()
    at: Loc = ()
    for part in loc:
        if isinstance(node, dict) and part in node:
            holder, key, path = node, part, (*at, part)
        elif not (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            return None  # a missing key, or a loc naming a type rather than a key
        at = (*at, part)
        node = node[part]
    if holder is None or key is None:
        return None
    del holder[key]
    return path


def _related(loc: Loc, cut: Loc) -> bool:
    """Whether a rule's verdict at ``loc`` may be about the stand-in for ``cut``.

    A list entry's rules (a client's) are each about one field of it: only one on the cut value, or
    above it, may be. A section's rules weigh its keys together (a burst against its rate): any of them.
    """
    if len(cut) > 1 and isinstance(cut[1], int):
        shorter = min(len(loc), len(cut))
        return loc[:shorter] == cut[:shorter]
    return loc[:1] == cut[:1]


def _rule_problem(rule: RuleProblem, origin: Origin | None) -> Problem:
    return problem_at(origin, rule.loc, rule.problem, rule.fix)


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@dataclass
class _Spot:
    """What the schema says about one ``loc``: its type, and the field (and whether ``loc`` is an item of it)."""

    tp: Any = None
    info: FieldInfo | None = None
    item: bool = False


def _spot(loc: Loc) -> _Spot:
    spot = _Spot(tp=DeployConfig)
    for part in loc:
        tp = _unwrap(spot.tp)
        if isinstance(part, int) and get_origin(tp) in (list, tuple):
            spot = _Spot(tp=get_args(tp)[0], info=spot.info, item=True)
        elif isinstance(part, str) and _is_model(tp) and part in tp.model_fields:
            info = tp.model_fields[part]
            spot = _Spot(tp=info.annotation, info=info, item=False)
        else:
            return _Spot()
    return spot


def _example(spot: _Spot) -> str | None:
    if spot.info is None or not spot.info.examples:
        return None
    value = spot.info.examples[0]
    if spot.item and isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    return _flow(value)


def _flow(value: Any) -> str:
    """``value`` as inline YAML: ``60``, ``[claude-sonnet-*]``, ``'@x'``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _whole_number(spot: _Spot) -> str:
    low = high = None
    for meta in spot.info.metadata if spot.info is not None else ():
        if isinstance(meta, annotated_types.Gt):
            low = int(meta.gt) + 1  # type: ignore[call-overload]
        elif isinstance(meta, annotated_types.Ge):
            low = int(meta.ge)  # type: ignore[call-overload]
        elif isinstance(meta, annotated_types.Lt):
            high = int(meta.lt) - 1  # type: ignore[call-overload]
        elif isinstance(meta, annotated_types.Le):
            high = int(meta.le)  # type: ignore[call-overload]
    if low is not None and high is not None:
        return f"a whole number from {low} to {high}"
    if low == 1:
        return "a positive whole number"
    if low == 0:
        return "a whole number, 0 or more"
    if low is not None:
        return f"a whole number of at least {low}"
    return "a whole number"


def _literal_values(spot: _Spot) -> list[str]:
    tp = _unwrap(spot.tp)
    if get_origin(tp) is Literal:
        return [str(v) for v in get_args(tp)]
    return []


_NUMBER_ERRORS = {
    "int_type",
    "int_parsing",
    "int_from_float",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
}
_MODEL_ERRORS = {"model_type", "dict_type", "model_attributes_type"}


def _problem_from_error(error: ErrorDetails, origin: Origin | None) -> Problem:
    loc: Loc = tuple(error["loc"])
    problem, fix = _describe(error, loc)
    return problem_at(origin, loc, problem, fix)


def _describe(error: ErrorDetails, loc: Loc) -> tuple[str, str | None]:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return _missing(loc)
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "invalid_key":
        return f"{_show(loc[-1] if loc else None)} is not a known key (keys are names)", _allowed_hint(loc)
    spot = _spot(loc)
    example = _example(spot)
    set_it = f"set it to e.g. {example}" if example else None
    if kind == "claudegate":
        return str(ctx.get("problem", error["msg"])), str(ctx.get("fix") or "") or None
    if kind == "value_error":
        problem, _, fix = str(ctx.get("error", error["msg"])).partition("; ")
        return problem, fix or set_it
    if kind in _NUMBER_ERRORS:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return (
                f"must be {_whole_number(spot)}, got the text {_show(value)}",
                f"write it without quotes: {value.strip()}",
            )
        return f"must be {_whole_number(spot)}, got {_show(value)}", set_it
    if kind in ("bool_type", "bool_parsing"):
        if isinstance(value, str):
            return (
                f"must be true or false, got the text {_show(value)}",
                "write true or false, without quotes",
            )
        return f"must be true or false, got {_show(value)}", "write true or false"
    if kind == "literal_error":
        choices = _literal_values(spot)
        problem = f"must be one of {', '.join(choices)}; got {_show(value)}"
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.5)
            if close:
                return problem, f"did you mean {close[0]}?"
        return problem, f"write one of {', '.join(choices)}"
    if kind in ("string_type", "str_type"):
        if loc and loc[-1] == "rate" and isinstance(value, int | float) and not isinstance(value, bool):
            # A bare number is the most natural slip: say which unit it probably meant.
            number = f"{value:g}"
            return f"must be a rate with a unit, got the number {number}", f"write {number}r/s (per second) or {number}r/m (per minute)"
        return f"must be text, got {_show(value)}", set_it
    if kind in ("list_type", "tuple_type"):
        if isinstance(value, str):
            return (
                f"must be a list, got the single value {_show(value)}",
                f"write it as a list: {_flow([value])}",
            )
        listed = get_args(_unwrap(spot.tp))
        item = _unwrap(listed[0]) if listed else None
        if _is_model(item):
            first = next(iter(item.model_fields))
            return f"must be a list, got {_show(value)}", f"start each entry with '- ', e.g. '- {first}: ...'"
        return (
            f"must be a list, got {_show(value)}",
            f"write it as a list, e.g. {example}" if example else None,
        )
    if kind == "too_short":
        return "must list at least one value", _too_short_fix(loc)
    if kind in _MODEL_ERRORS:
        if not loc:
            return (
                f"the config must be a mapping of settings (key: value lines), got {_show(value)}",
                "write one with the wizard (claudegate init) or from a commented example:"
                " claudegate init --example local --out deploy.yaml",
            )
        names = ", ".join(_allowed_keys(loc)) or "see examples/remote.yaml"
        return f"must be a mapping (key: value lines), got {_show(value)}", f"its keys are: {names}"
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]}", set_it


def _too_short_fix(loc: Loc) -> str:
    if loc and loc[-1] == "betas":
        return "leave betas out to allow any anthropic-beta value, or list the allowed ones"
    if loc and loc[-1] == "models":
        return "write ['*'] to allow every model"
    if loc and loc[-1] == "endpoints":
        return "leave endpoints out for the default ['/v1/*']"
    return "add a value, or remove the key for the default"


def _allowed_keys(loc: Loc) -> list[str]:
    tp = _unwrap(_spot(loc).tp)
    return list(tp.model_fields) if _is_model(tp) else []


def _missing(loc: Loc) -> tuple[str, str]:
    spot = _spot(loc)
    key = str(loc[-1]) if loc else "?"
    parent = format_path(loc[:-1])
    where = f"under {parent}:" if parent else "at the top level"
    tp = _unwrap(spot.tp)
    if _is_model(tp):
        return "is required", f"add a {key}: section {where} (see examples/remote.yaml)"
    choices = _literal_values(spot)
    if choices:
        return "is required", f"add {key}: {where}, one of {', '.join(choices)}"
    example = _example(spot)
    return "is required", f"add {key}: {example} {where}" if example else f"add {key}: {where}"


@functools.cache
def _field_index() -> dict[str, list[str]]:
    """Every field name in the schema -> the paths it lives at."""
    index: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            index.setdefault(name, []).append(path)
            tp = _unwrap(info.annotation)
            if get_origin(tp) in (list, tuple):
                tp = _unwrap(get_args(tp)[0])
                path += "[]"
            if _is_model(tp):
                walk(tp, path)

    walk(DeployConfig, "")
    return index


def _suggestion(loc: Loc) -> str | None:
    """The known key an unknown one at ``loc`` is probably a misspelling of."""
    key = loc[-1] if loc else None
    if not isinstance(key, str) or key.lower() in _INLINE_KEY_NAMES:
        return None
    by_lower = {name.lower(): name for name in _allowed_keys(loc[:-1])}
    normal = key.strip().lower().replace("-", "_").replace(" ", "_")
    if normal in by_lower:
        return by_lower[normal]
    close = difflib.get_close_matches(normal, list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _unknown_key(loc: Loc) -> tuple[str, str]:
    key = loc[-1] if loc else "?"
    if not isinstance(key, str):
        return "is not a known key (keys are names, not numbers)", _allowed_hint(loc)
    if key.lower() in _INLINE_KEY_NAMES:
        return "the Anthropic API key must never be written in deploy.yaml", _INLINE_KEY_FIX
    suggestion = _suggestion(loc)
    if suggestion is not None:
        return "is not a known key", f"did you mean {suggestion}?"
    normal = key.strip().lower().replace("-", "_").replace(" ", "_")
    elsewhere = [p for p in _field_index().get(normal, []) if p != format_path(loc)]
    if elsewhere:
        # The nearest homes only: `sudo:` at the top belongs at target.sudo, not
        # also at state.host.sudo (which repeats target's keys one level down).
        nearest = min(p.count(".") for p in elsewhere)
        elsewhere = [p for p in elsewhere if p.count(".") == nearest]
        return "is not a known key here", f"it belongs at {' or '.join(elsewhere)}"
    return "is not a known key", _allowed_hint(loc)


def _allowed_hint(loc: Loc) -> str:
    allowed = _allowed_keys(loc[:-1])
    return f"the keys allowed here are: {', '.join(allowed)}" if allowed else "remove it"
