"""Reading a request body before it goes upstream: scopes, caps and filters.

:func:`inspect_body` is a pure function of (route kind, body, scopes,
filter policy): it touches no gateway state, never raises, and returns a
picklable :class:`Inspection`, so the proxy can run it inline for small
bodies or in a worker process for large ones (see offload.py) with the
same result.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from claudegate_gateway.filecontents import PDF_MAX_SECONDS, Contents, contents
from claudegate_gateway.filters import FilterPolicy, FilterResult, Verdict
from claudegate_gateway.jsonbody import BodyError, parse_object
from claudegate_gateway.keystore import Scopes
from claudegate_gateway.ownership import referenced_file_ids
from claudegate_gateway.reservation import References, references
from claudegate_gateway.uploads import inside_document


class Refused(Exception):
    """An inspection that says no: the Anthropic error type and the message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass
class Inspection:
    """What the inspection found; ``error`` set means the request is refused."""

    body: bytes  # what goes upstream: the input itself, or re-serialised after redaction
    changed: bool = False  # body is not the input (a worker then need not send the input back)
    tokens: int = 0  # to reserve: input estimate + max_tokens, before referenced content (refs)
    max_tokens: int = 0  # summed over a batch's requests
    model: str | None = None
    stream: bool = False
    verdicts: list[Verdict] = field(default_factory=list)
    filter_blocked: bool = False
    error: tuple[str, str] | None = None  # (Anthropic error type, message)
    file_ids: list[str] = field(default_factory=list)  # each must be the caller's (checked by the proxy)
    container_ids: list[str] = field(default_factory=list)  # `container` reused: each must be the caller's
    # Content the body points at (files, URLs, server tools): reservation.py adds its cost to ``tokens``.
    refs: References = field(default_factory=References)
    # An inline PDF met where PDFs are not parsed (on the event loop): inspect again in the worker.
    needs_worker: bool = False
    parse_pdfs: bool = True
    # When the body's inline PDFs have had their time, all of them together (every request of a batch).
    pdfs_until: float | None = None


class _NeedsWorker(Exception):
    pass


def estimate_tokens(size: int) -> int:
    # Deliberately generous (bytes / 3): the reservation is settled from the
    # usage the response reports, so over-estimating only delays, never leaks.
    return size // 3 + 1


def inspect_body(
    kind: str, body: bytes, scopes: Scopes, policy: FilterPolicy, *, parse_pdfs: bool = True
) -> Inspection:
    """Check a JSON body of route kind ``message``, ``count_tokens`` or ``batch``.

    ``parse_pdfs`` False (inline, on the event loop): a body with an inline PDF
    comes back with ``needs_worker`` set, for the caller to inspect it there.
    """
    found = Inspection(body, parse_pdfs=parse_pdfs)
    try:
        _inspect(kind, body, scopes, policy, found)
    except _NeedsWorker:
        return Inspection(body, needs_worker=True)
    except Refused as no:
        found.error = (no.error_type, no.message)
    except BodyError as exc:
        found.error = ("invalid_request_error", str(exc))
    except RecursionError:
        # A filter walking a document that parsing accepted: still the client's doing.
        found.error = ("invalid_request_error", "The request body is nested too deeply")
    return found


def _inspect(kind: str, body: bytes, scopes: Scopes, policy: FilterPolicy, found: Inspection) -> None:
    doc = parse_object(body)
    try:
        found.file_ids = referenced_file_ids(doc)
    except ValueError as exc:
        raise Refused("invalid_request_error", str(exc)) from None
    found.refs = references(doc)
    if kind == "batch":
        requests = doc.get("requests")
        if not isinstance(requests, list) or not requests:
            raise Refused("invalid_request_error", "requests: a non-empty list is required")
        # custom_id and every field outside params: scanned too, and since a
        # custom_id names the result it must keep, a redaction blocks instead.
        outside = {k: v for k, v in doc.items() if k != "requests"}
        outside["requests"] = [{k: v for k, v in item.items() if k != "params"} if isinstance(item, dict) else item
                               for item in requests]
        _filter(policy.apply(outside, fixed=True), found)
        changed = False
        for i, item in enumerate(requests):
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(params, dict):
                raise Refused("invalid_request_error", f"requests.{i}.params: an object is required")
            new_params, item_changed = _check_params(params, scopes, policy, found, True, f"requests.{i}.params.")
            if item_changed:
                item["params"] = new_params
                changed = True
        found.body, found.changed = (json.dumps(doc).encode(), True) if changed else (body, False)
        found.tokens = estimate_tokens(len(found.body)) + found.max_tokens
        return
    new_doc, changed = _check_params(doc, scopes, policy, found, kind == "message", "")
    found.body, found.changed = (json.dumps(new_doc).encode(), True) if changed else (body, False)
    # count_tokens reserves its input too (referenced files included) and is
    # settled to the nothing upstream bills for it: a key cannot count a file
    # its budget could not pay for.
    found.tokens = estimate_tokens(len(found.body)) + found.max_tokens


def _check_params(
    doc: dict[str, Any], scopes: Scopes, policy: FilterPolicy, found: Inspection, generates: bool, where: str
) -> tuple[dict[str, Any], bool]:
    container = doc.get("container")
    if container is not None:
        # A container holds what an earlier request put in it (uploaded files, outputs): naming one
        # reuses it, so it must be the caller's (an id string, or an object with its id).
        named = container.get("id") if isinstance(container, dict) else container
        if not isinstance(named, str) and not (isinstance(container, dict) and named is None):
            raise Refused("invalid_request_error", f"{where}container: an id string or an object is required")
        if isinstance(named, str):
            found.container_ids.append(named)
        skills = container.get("skills") if isinstance(container, dict) else None
        for skill in skills if isinstance(skills, list) else []:
            # A custom skill is an object of the shared workspace (its code, its files) that no
            # client made through the gateway (it serves no skills API): nobody's, like a file made
            # outside it. Anthropic's own skills are everyone's.
            if not (isinstance(skill, dict) and skill.get("type") == "anthropic"):
                skill_id = skill.get("skill_id") if isinstance(skill, dict) else None
                raise Refused("not_found_error", f"Skill not found: {str(skill_id)[:128]}")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise Refused("invalid_request_error", f"{where}model: Field required")
    found.model = found.model or model
    if not scopes.model_allowed(model):
        raise Refused("permission_error", f"This key may not use model {model[:200]!r}")
    stream = doc.get("stream", False)
    if not isinstance(stream, bool):
        # Another parser might take "true" or 1 for a stream the gateway did not meter as one.
        raise Refused("invalid_request_error", f"{where}stream: must be true or false")
    if generates:
        asked = doc.get("max_tokens")
        if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
            raise Refused("invalid_request_error", f"{where}max_tokens: a positive integer is required")
        if scopes.max_tokens is not None and asked > scopes.max_tokens:
            raise Refused(
                "invalid_request_error", f"{where}max_tokens: {asked} is above this key's cap of {scopes.max_tokens}"
            )
        found.max_tokens += asked
        if stream:
            if where:
                raise Refused("invalid_request_error", f"{where}stream: batch requests cannot stream")
            if not scopes.stream:
                raise Refused("permission_error", "This key may not stream responses")
            found.stream = True
    result = policy.apply(doc)
    _filter(result, found)
    _check_inline_pdfs(doc, policy, found, where)
    return result.body, result.changed


def _check_inline_pdfs(doc: dict[str, Any], policy: FilterPolicy, found: Inspection, where: str) -> None:
    """A PDF sent inline (a base64 document source) is read like an uploaded one (filecontents.py).

    The model reads its text; the filters saw only base64. A match blocks (the
    PDF cannot be rewritten in place); a PDF that cannot be read whole is refused.
    """
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            media = node.get("media_type")
            # (Spelled in any case, with parameters: a lenient reader upstream must not read a PDF unseen.)
            if node.get("type") == "base64" and str(media).split(";")[0].strip().lower() == "application/pdf":
                data = node.get("data")
                if isinstance(data, str):
                    _check_pdf(data, policy, found, where)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))


def _check_pdf(data: str, policy: FilterPolicy, found: Inspection, where: str) -> None:
    try:
        pdf = base64.b64decode(data)
    except ValueError:
        return  # not base64: upstream refuses it, the model reads nothing from it
    if not found.parse_pdfs:
        raise _NeedsWorker
    if found.pdfs_until is None:
        found.pdfs_until = time.monotonic() + PDF_MAX_SECONDS
    until = found.pdfs_until
    # Only a PDF (its header where readers look for it): upstream reads nothing else as one.
    inside = contents(pdf, until - time.monotonic()) if b"%PDF-" in pdf[:1024] else Contents()
    if inside.refused is not None:
        raise Refused("invalid_request_error", f"{where}a PDF document: the gateway cannot inspect it: "
                      f"{inside.refused}")  # fmt: skip
    if not inside.texts:
        return
    result = policy.apply(inside_document(inside.texts))
    found.verdicts.extend(result.verdicts)
    rule = result.blocked or next((v for v in result.verdicts if v.action != "log"), None)
    if rule is not None:
        found.filter_blocked = True
        kind = "permission_error" if result.status == 403 else "invalid_request_error"
        raise Refused(kind, f"The request was blocked by the gateway's filter rule {rule.rule!r} (in a PDF document)")


def _filter(result: FilterResult, found: Inspection) -> None:
    found.verdicts.extend(result.verdicts)
    if result.blocked is not None:
        found.filter_blocked = True
        kind = "permission_error" if result.status == 403 else "invalid_request_error"
        raise Refused(kind, f"The request was blocked by the gateway's filter rule {result.blocked.rule!r}")
