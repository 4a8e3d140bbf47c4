"""``GET /v1/models`` within the caller's model scope.

A key scoped to some models sees only those: ``GET /v1/models/{id}`` for an
id outside the scope is the 404 upstream gives for a model that does not
exist (same type, same words; upstream is not asked), and the list shows
only the entries whose ``id`` the scope allows.

The list cannot be upstream's page with entries taken out: ``limit``,
``has_more``, ``first_id``/``last_id`` and the cursors would then describe
upstream's catalogue (a page of 2 showing 0 entries and ``has_more``; a
cursor naming a hidden model placing it in the order). So the gateway reads
upstream's whole catalogue (a few dozen entries; at most
:data:`MAX_UPSTREAM_PAGES` pages of :data:`UPSTREAM_PAGE`), keeps the
caller's entries, and pages that list itself the way Anthropic pages:
newest first, ``after_id``/``before_id``/``limit`` (1-1000, default 20),
``has_more``, ``first_id``, ``last_id``. A cursor that is not an entry of
the caller's list (a hidden model, an unknown id) answers the same empty
page, so no cursor tells whether a model outside the scope exists.

Scopes are matched against the ids the list shows (dated ids such as
``claude-opus-4-5-20251101``) and against the alias of each, the id without
its date (``claude-opus-4-5``): a key scoped to an alias can send requests
to it, and upstream serves those with the dated model, so the list shows
that model to it and a get of either id answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Scopes

__all__ = [
    "MAX_UPSTREAM_PAGES", "UPSTREAM_PAGE", "Paging", "hidden_model", "listed", "paging", "scoped_page", "visible",
]

# Upstream's catalogue is read in pages this large, at most this many per list
# call: a bounded fan-out (one request in practice) whatever upstream says.
UPSTREAM_PAGE = 1000
MAX_UPSTREAM_PAGES = 3
_DEFAULT_LIMIT = 20
# A dated model id ends in its snapshot's date; without it, the id is the alias.
_DATED = re.compile(r"(.+)-(\d{8})")


def listed(model_id: str, scopes: Scopes) -> bool:
    """Whether the key sees ``model_id``: the scope allows it, or the alias it is the dated model of."""
    if scopes.model_allowed(model_id):
        return True
    dated = _DATED.fullmatch(model_id)
    return dated is not None and scopes.model_allowed(dated.group(1))


def hidden_model(model_id: str) -> GatewayError:
    """The answer to a get of a model outside the scope: upstream's 404 for a model that does not exist."""
    return GatewayError("not_found_error", f"model: {model_id}")


def visible(entries: list[Any], scopes: Scopes) -> list[dict[str, Any]]:
    """Upstream's entries the scope allows, in upstream's order (anything without a string id is dropped)."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and listed(entry["id"], scopes):
            out.append(entry)
    return out


@dataclass(frozen=True)
class Paging:
    limit: int
    after: str | None
    before: str | None


def paging(query: tuple[tuple[str, str], ...]) -> Paging:
    """The client's paging, from the route's validated query (each name at most once); checked before upstream is asked."""
    params = dict(query)
    if "after_id" in params and "before_id" in params:
        raise GatewayError("invalid_request_error", "Cannot specify both after_id and before_id")
    return Paging(int(params.get("limit", _DEFAULT_LIMIT)), params.get("after_id"), params.get("before_id"))


def scoped_page(entries: list[dict[str, Any]], want: Paging) -> dict[str, Any]:
    """One page of the caller's visible entries."""
    limit, before, after = want.limit, want.before, want.after
    ids = [entry["id"] for entry in entries]
    if before is not None:
        # The `limit` entries just before the cursor; none for a cursor not in the list.
        end = ids.index(before) if before in ids else 0
        start = max(0, end - limit)
        data, has_more = entries[start:end], start > 0
    else:
        # Past the cursor; past the end for a cursor not in the list.
        start = 0 if after is None else (ids.index(after) + 1 if after in ids else len(ids))
        data = entries[start : start + limit]
        has_more = start + limit < len(entries)
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
