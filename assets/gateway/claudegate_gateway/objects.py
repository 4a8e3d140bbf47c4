"""Batches and files on the request path: each client sees only its own.

Driven by the route table's ``owner_kind`` / ``owner_action`` columns:

* ``access`` (get, results, cancel, delete): the id in the path must be one
  the caller created through the gateway, else the gateway answers the same
  404 it gives for an id that does not exist, and upstream is not asked;
* ``create``: a 2xx answer's ``id`` is recorded as the caller's;
* ``list``: answered from the owner record alone (ownership.py), never from
  upstream: a page of the caller's own objects, newest first, paged by
  ``after_id``/``before_id``/``limit`` as Anthropic pages (``first_id``,
  ``last_id``, ``has_more``; files also carry ``next_page``). Each object
  is shown as upstream last showed it through the gateway: its creation,
  then every get or cancel and, for batches, the settlement poll
  (batchsettle.py) keep it current. Objects made outside the gateway are
  in no one's list; a list costs one request of the key's rpm and no
  upstream call (a row recorded before objects were kept is filled in once
  by a get upstream);
* a ``file_id`` anywhere in a request body must be one of the caller's files.

A list cursor (``after_id``/``before_id``) is itself an id, so it must not
become an oracle: a cursor that is not the caller's own object answers an
empty page, and upstream is not asked whether it exists. ``next_page`` is
the gateway's own cursor: the position sealed for the caller
(:mod:`.cursors`), usable by no other client and no other list.

Batch objects' ``results_url`` is pointed at the gateway by :mod:`.batchurls`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from claudegate_gateway.cursors import CursorBox
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client
from claudegate_gateway.ownership import MAX_SNAPSHOT_BYTES, OBJECT_ID, ObjectKind
from claudegate_gateway.store import Owners

# object id -> (status, parsed JSON or None) of upstream's GET of that one object.
Fetch = Callable[[str], Awaitable[tuple[int, Any]]]

_DEFAULT_LIMIT = 20
_TYPES: dict[ObjectKind, str] = {"batch": "message_batch", "file": "file"}


def not_found(kind: ObjectKind, object_id: str) -> GatewayError:
    # The same words upstream uses for an id that does not exist.
    if kind == "batch":
        return GatewayError("not_found_error", f"Message batch {object_id} not found.")
    if kind == "container":
        return GatewayError("not_found_error", f"Container not found: {object_id}")
    return GatewayError("not_found_error", f"File not found: {object_id}")


_PAGE = "page_"
_PAGE_PURPOSE = "files-page:after"  # the earlier (upstream page, skip) cursors do not open under it


# Rows recorded before objects were kept are filled in from upstream at most
# this many per list call (the others show their id and type until a later call).
MAX_FILLS_PER_LIST = 50


def _snapshot(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) <= MAX_SNAPSHOT_BYTES:
        return text
    # Far larger than any object upstream makes: kept as its id and type, never fetched again.
    return json.dumps({"id": doc.get("id"), "type": doc.get("type")}, separators=(",", ":"))


class Objects:
    def __init__(self, owners: Owners, mac: Callable[[str], bytes]) -> None:
        self.owners = owners
        self._box = CursorBox(mac)  # keyed from the pepper (the keystore's HMAC)

    def seal_page(self, client: str, after: str) -> str:
        return _PAGE + self._box.seal(_PAGE_PURPOSE, client, after.encode())

    def open_page(self, client: str, page: str) -> str:
        """The position a ``next_page`` cursor of this client's names; a 400 for anything else."""
        raw = self._box.open(_PAGE_PURPOSE, client, page.removeprefix(_PAGE)) if page.startswith(_PAGE) else None
        position = raw.decode("ascii", "replace") if raw is not None else ""
        if not OBJECT_ID.match(position):
            raise GatewayError("invalid_request_error", "page: not a page cursor this gateway issued")
        return position

    # -- before forwarding ----------------------------------------------------

    async def check_access(self, client: Client, kind: ObjectKind, object_id: str) -> None:
        if not await self.owners.owns(kind, object_id, client.name):
            raise not_found(kind, object_id)

    async def check_file_refs(self, client: Client, ids: list[str]) -> None:
        """Every file the body references (ids found by the inspection) must be the caller's."""
        if not ids:
            return
        owned = await self.owners.owned("file", client.name, ids)  # one query, however many ids
        for value in ids:
            if value not in owned:
                raise not_found("file", value)

    # -- after upstream answered ----------------------------------------------

    async def created(
        self, client: Client, kind: ObjectKind, status: int, data: bytes, tokens: int | None = None
    ) -> str | None:
        """Record the new object as the caller's (a file with its token estimate); return its id."""
        if not 200 <= status < 300:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        object_id = doc.get("id") if isinstance(doc, dict) else None
        if isinstance(object_id, str) and OBJECT_ID.match(object_id):
            assert isinstance(doc, dict)
            await self.owners.record(kind, object_id, client.name, tokens, _snapshot(doc), client.public_id)
            return object_id
        return None

    async def seen(self, kind: ObjectKind, object_id: str, status: int, data: bytes) -> None:
        """Keep upstream's newer view of an owned object (a get's or a cancel's answer) for lists.

        A 404 means upstream no longer has it (deleted or expired outside the
        gateway): it leaves the owner's list.
        """
        if status == 404:
            await self.owners.forget(kind, object_id)
            return
        if status != 200:
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("id") == object_id and doc.get("type") == _TYPES[kind]:
            await self.owners.snapshot(kind, object_id, _snapshot(doc))

    async def deleted(self, kind: ObjectKind, object_id: str, status: int) -> None:
        if 200 <= status < 300:
            await self.owners.forget(kind, object_id)

    # -- lists ----------------------------------------------------------------

    async def list_page(
        self, client: Client, kind: ObjectKind, query: tuple[tuple[str, str], ...], fetch: Fetch
    ) -> dict[str, Any]:
        """One page of the caller's objects, from the owner record (upstream's list is never asked)."""
        params = dict(query)  # the route allows each of these once
        cursors = [name for name in ("after_id", "before_id", "page") if name in params]
        if len(cursors) > 1:
            raise GatewayError("invalid_request_error", f"Cannot specify both {cursors[0]} and {cursors[1]}")
        limit = int(params.get("limit", _DEFAULT_LIMIT))
        backward = "before_id" in params
        cursor = params.get("before_id") or params.get("after_id")
        if "page" in params:
            cursor = self.open_page(client.name, params["page"])
        rows = await self.owners.page(kind, client.name, cursor, backward, limit)
        if rows is None:
            # Another client's id, or no id at all: the same empty page (no existence oracle).
            rows = []
        has_more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()  # nearest-first from the cursor; the list runs newest first
        fills = [MAX_FILLS_PER_LIST]
        data = [item for object_id, obj in rows if (item := await self._shown(kind, object_id, obj, fetch, fills))]
        page: dict[str, Any] = {
            "data": data,
            "has_more": has_more,
            # From what is shown: a row found gone upstream is no cursor to page on from.
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        if kind == "file":
            following = has_more and not backward and data
            page["next_page"] = self.seal_page(client.name, data[-1]["id"]) if following else None
        return page

    async def _shown(
        self, kind: ObjectKind, object_id: str, obj: str | None, fetch: Fetch, fills: list[int]
    ) -> dict[str, Any] | None:
        """The object as last seen; a row recorded before objects were kept is filled in once from upstream."""
        if obj is not None:
            with contextlib.suppress(ValueError):
                doc = json.loads(obj)
                if isinstance(doc, dict) and doc.get("id") == object_id:
                    return doc
        if fills[0] <= 0:
            return {"id": object_id, "type": _TYPES[kind]}
        fills[0] -= 1
        status, doc = await fetch(object_id)
        if status == 404:
            await self.owners.forget(kind, object_id)  # gone upstream (deleted or expired outside the gateway)
            return None
        if status == 200 and isinstance(doc, dict) and doc.get("id") == object_id:
            await self.owners.snapshot(kind, object_id, _snapshot(doc))
            return doc
        return {"id": object_id, "type": _TYPES[kind]}  # upstream cannot say now: the id at least
