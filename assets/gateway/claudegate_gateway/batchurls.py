"""Batch objects point their ``results_url`` at the gateway, not at upstream.

Anthropic's batch objects carry ``results_url``, an absolute URL on
api.anthropic.com, and the SDKs fetch results from it as given: through a
gateway that URL would send the client's gateway key to Anthropic (a 401,
and a key sent where it does not belong). The gateway replaces it with the
path of its own results operation, built from the batch's validated id; the
SDKs resolve a path against their base URL, so results come back through the
gateway, its scopes and its audit.
"""

from __future__ import annotations

import json
from typing import Any

from claudegate_gateway.routes import ID_RE, MAX_ID_LEN

_RESULTS = "/v1/messages/batches/{}/results"


def _local(batch: Any) -> bool:
    if not isinstance(batch, dict) or batch.get("type") != "message_batch" or not batch.get("results_url"):
        return False
    batch_id = batch.get("id")
    if isinstance(batch_id, str) and len(batch_id) <= MAX_ID_LEN and ID_RE.fullmatch(batch_id):
        batch["results_url"] = _RESULTS.format(batch_id)
    else:
        batch["results_url"] = None  # no URL of ours to give: never upstream's
    return True


def localise_page(doc: Any) -> bool:
    """Rewrite in place a batch object or a page of them; True if anything was a batch."""
    data = doc.get("data") if isinstance(doc, dict) else None
    items: list[Any] = data if isinstance(data, list) else [doc]
    return any([_local(item) for item in items])


def localise_results_urls(body: bytes) -> bytes:
    """A batch object, or a page of them, with results_url rewritten; other bodies unchanged."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    return json.dumps(doc).encode() if localise_page(doc) else body
