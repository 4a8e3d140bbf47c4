"""Batches and files on the request path: each client sees only its own.

Driven by the route table's ``owner_kind`` / ``owner_action`` columns:

* ``access`` (get, results, cancel, delete): the id in the path must be one
  the caller created through the gateway, else the gateway answers the same
  404 it gives for an id that does not exist, and upstream is not asked;
* ``create``: a 2xx answer's ``id`` is recorded as the caller's;
* ``list``: upstream's pages of everyone's objects are filtered down to the
  caller's, fetching further pages (a bounded number) to fill the page, with
  ``has_more``, ``first_id``/``last_id`` and, for files, ``next_page`` that
  stay correct for the caller's own sequence;
* a ``file_id`` anywhere in a request body must be one of the caller's files.

A list cursor (``after_id``/``before_id``) is itself an id, so it must not
become an oracle: a cursor that is not the caller's own object answers an
empty page without asking upstream, whether it exists or not. The cursors
the gateway makes itself (the scan position when a page could not be
filled within the bound, ``cgpos_...``, and the files ``next_page``,
``page_...``) hold upstream positions that may be another client's object:
they are encrypted and authenticated for the caller (:mod:`.cursors`), so
they show nothing and only the client they were issued to can use them.

Batch objects' ``results_url`` is pointed at the gateway by :mod:`.batchurls`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from claudegate_gateway.cursors import CursorBox
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client
from claudegate_gateway.ownership import (
    MAX_SCAN_PAGES,
    OBJECT_ID,
    SCAN_PAGE_SIZE,
    ObjectKind,
    PageScan,
)
from claudegate_gateway.store import Owners

# (query pairs) -> (status, parsed JSON or None, raw body) of one upstream list page.
Fetch = Callable[[list[tuple[str, str]]], Awaitable[tuple[int, Any, bytes]]]

_DEFAULT_LIMIT = 20


class UpstreamAnswer(Exception):
    """An upstream error met while filling a list: relayed to the client as it is."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def not_found(kind: ObjectKind, object_id: str) -> GatewayError:
    # The same words upstream uses for an id that does not exist.
    if kind == "batch":
        return GatewayError("not_found_error", f"Message batch {object_id} not found.")
    return GatewayError("not_found_error", f"File not found: {object_id}")


_SEALED = "cgpos_"
_PAGE = "page_"


class Objects:
    def __init__(self, owners: Owners, mac: Callable[[str], bytes]) -> None:
        self.owners = owners
        self._box = CursorBox(mac)  # keyed from the pepper (the keystore's HMAC)

    def seal(self, client: str, kind: ObjectKind, position: str) -> str:
        return _SEALED + self._box.seal(f"position:{kind}", client, position.encode())

    def unseal(self, client: str, kind: ObjectKind, cursor: str) -> str | None:
        """The position a sealed cursor names, or None when this gateway did not seal it for this client."""
        if not cursor.startswith(_SEALED):
            return None
        raw = self._box.open(f"position:{kind}", client, cursor[len(_SEALED):])
        if raw is None:
            return None
        position = raw.decode("utf-8", "replace")
        return position if OBJECT_ID.match(position) else None

    def seal_page(self, client: str, upstream_page: str | None, skip: int) -> str:
        payload = skip.to_bytes(2, "big") + (b"" if upstream_page is None else b"p" + upstream_page.encode())
        return _PAGE + self._box.seal("files-page", client, payload)

    def open_page(self, client: str, page: str | None) -> tuple[str | None, int]:
        """The gateway's own files cursor: (upstream page cursor, items to skip in it)."""
        if not page:
            return None, 0
        raw = self._box.open("files-page", client, page.removeprefix(_PAGE)) if page.startswith(_PAGE) else None
        if raw is None or len(raw) < 2:
            raise GatewayError("invalid_request_error", "page: not a page cursor this gateway issued")
        skip, rest = int.from_bytes(raw[:2], "big"), raw[2:]
        upstream = rest[1:].decode("utf-8", "replace") if rest.startswith(b"p") else None
        if skip > SCAN_PAGE_SIZE or (upstream is not None and not OBJECT_ID.match(upstream)):
            raise GatewayError("invalid_request_error", "page: not a page cursor this gateway issued")
        return upstream, skip

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
            await self.owners.record(kind, object_id, client.name, tokens)
            return object_id
        return None

    async def deleted(self, kind: ObjectKind, object_id: str, status: int) -> None:
        if 200 <= status < 300:
            await self.owners.forget(kind, object_id)

    # -- lists ----------------------------------------------------------------

    async def list_page(
        self, client: Client, kind: ObjectKind, query: tuple[tuple[str, str], ...], fetch: Fetch
    ) -> dict[str, Any]:
        """One page of the caller's objects, assembled from upstream pages."""
        params = dict(query)
        limit = int(params.get("limit", _DEFAULT_LIMIT))
        passthrough = [(k, v) for k, v in query if k == "beta"]
        # The first upstream page is asked exactly as the client asked for
        # its page (same limit, same cursor); only pages fetched to fill it
        # up use the gateway's own, larger page size.
        first_limit = [("limit", params["limit"])] if "limit" in params else []
        if "after_id" in params or "before_id" in params or kind == "batch":
            return await self._scan_ids(client, kind, params, limit, passthrough, first_limit, fetch)
        return await self._scan_cursor(client, params.get("page"), limit, passthrough, first_limit, fetch)

    async def _page(self, fetch: Fetch, query: list[tuple[str, str]]) -> dict[str, Any]:
        status, doc, raw = await fetch(query)
        if status != 200 or not isinstance(doc, dict):
            raise UpstreamAnswer(status, raw)
        return doc

    async def _owned(self, client: Client, kind: ObjectKind, doc: dict[str, Any]) -> set[str]:
        ids = [d["id"] for d in doc.get("data") or [] if isinstance(d, dict) and isinstance(d.get("id"), str)]
        return await self.owners.owned(kind, client.name, ids)

    async def _scan_ids(
        self,
        client: Client,
        kind: ObjectKind,
        params: dict[str, str],
        limit: int,
        passthrough: list[tuple[str, str]],
        first_limit: list[tuple[str, str]],
        fetch: Fetch,
    ) -> dict[str, Any]:
        backward = "before_id" in params
        cursor_name = "before_id" if backward else "after_id"
        cursor = params.get(cursor_name)
        if cursor is not None:
            position = self.unseal(client.name, kind, cursor)
            if position is not None:
                cursor = position
            elif not await self.owners.owns(kind, cursor, client.name):
                # Another client's id or no id at all: the same empty page,
                # and upstream is not asked (no existence oracle).
                return {"data": [], "has_more": False, "first_id": None, "last_id": None}
        scan = PageScan(limit=limit, backward=backward, seal=lambda position: self.seal(client.name, kind, position))
        size = first_limit
        while True:
            query = [*passthrough, *size]
            size = [("limit", str(SCAN_PAGE_SIZE))]
            if cursor is not None:
                query.append((cursor_name, cursor))
            doc = await self._page(fetch, query)
            nxt = scan.take(doc, await self._owned(client, kind, doc))
            if nxt is None:
                break
            cursor = nxt
        return scan.result()

    async def _scan_cursor(
        self,
        client: Client,
        page: str | None,
        limit: int,
        passthrough: list[tuple[str, str]],
        first_limit: list[tuple[str, str]],
        fetch: Fetch,
    ) -> dict[str, Any]:
        upstream_page, skip = self.open_page(client.name, page)
        found: list[dict[str, Any]] = []
        resume: tuple[str | None, int] | None = None
        # A resumed page is fetched at full size: `skip` counts into it.
        size = first_limit if page is None else [("limit", str(SCAN_PAGE_SIZE))]
        for _ in range(MAX_SCAN_PAGES):
            query = [*passthrough, *size]
            size = [("limit", str(SCAN_PAGE_SIZE))]
            if upstream_page is not None:
                query.append(("page", upstream_page))
            doc = await self._page(fetch, query)
            owned = await self._owned(client, "file", doc)
            data = doc.get("data") or []
            for i in range(skip, len(data)):
                item = data[i]
                if isinstance(item, dict) and item.get("id") in owned:
                    if len(found) == limit:
                        resume = (upstream_page, i)  # the caller's next object starts the next page
                        break
                    found.append(item)
            if resume is not None:
                break
            following = doc.get("next_page")
            if not isinstance(following, str) or not following or not data:
                break
            upstream_page, skip = following, 0
        else:
            resume = (upstream_page, 0) if upstream_page is not None else None
        next_page = self.seal_page(client.name, *resume) if resume is not None else None
        return {
            "data": found,
            "next_page": next_page,
            "has_more": next_page is not None,
            "first_id": found[0]["id"] if found else None,
            "last_id": found[-1]["id"] if found else None,
        }
