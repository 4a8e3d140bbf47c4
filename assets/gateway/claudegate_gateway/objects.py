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
empty page without asking upstream, whether it exists or not. The one
cursor the gateway hands out that is not the caller's (the scan position
when a page could not be filled within the bound) is sealed: ``cgpos_``,
the position, and a MAC under the keystore's pepper, so a client can only
give back positions the gateway gave it.

Batch objects' ``results_url`` is pointed at the gateway by :mod:`.batchurls`.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client
from claudegate_gateway.ownership import (
    MAX_SCAN_PAGES,
    OBJECT_ID,
    SCAN_PAGE_SIZE,
    ObjectKind,
    Ownership,
    PageScan,
)

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


class Objects:
    def __init__(self, owners: Ownership, mac: Callable[[str], bytes]) -> None:
        self.owners = owners
        self._mac = mac  # keyed digest (the keystore's HMAC under its pepper)

    def seal(self, position: str) -> str:
        tag = self._mac("list-position:" + position)[:12].hex()
        return f"{_SEALED}{tag}_{position}"

    def unseal(self, cursor: str) -> str | None:
        """The position a sealed cursor names, or None when it is not one this gateway made."""
        if not cursor.startswith(_SEALED):
            return None
        tag, _, position = cursor[len(_SEALED):].partition("_")
        if not position or not hmac.compare_digest(tag, self._mac("list-position:" + position)[:12].hex()):
            return None
        return position

    # -- before forwarding ----------------------------------------------------

    def check_access(self, client: Client, kind: ObjectKind, object_id: str) -> None:
        if not self.owners.owns(kind, object_id, client.name):
            raise not_found(kind, object_id)

    def check_file_refs(self, client: Client, ids: list[str]) -> None:
        """Every file the body references (ids found by the inspection) must be the caller's."""
        for value in ids:
            if not self.owners.owns("file", value, client.name):
                raise not_found("file", value)

    # -- after upstream answered ----------------------------------------------

    def created(
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
            self.owners.record(kind, object_id, client.name, tokens)
            return object_id
        return None

    def deleted(self, kind: ObjectKind, object_id: str, status: int) -> None:
        if 200 <= status < 300:
            self.owners.forget(kind, object_id)

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

    def _owned(self, client: Client, kind: ObjectKind, doc: dict[str, Any]) -> set[str]:
        ids = [d["id"] for d in doc.get("data") or [] if isinstance(d, dict) and isinstance(d.get("id"), str)]
        return self.owners.owned(kind, client.name, ids)

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
            position = self.unseal(cursor)
            if position is not None:
                cursor = position
            elif not self.owners.owns(kind, cursor, client.name):
                # Another client's id or no id at all: the same empty page,
                # and upstream is not asked (no existence oracle).
                return {"data": [], "has_more": False, "first_id": None, "last_id": None}
        scan = PageScan(limit=limit, backward=backward, seal=self.seal)
        size = first_limit
        while True:
            query = [*passthrough, *size]
            size = [("limit", str(SCAN_PAGE_SIZE))]
            if cursor is not None:
                query.append((cursor_name, cursor))
            doc = await self._page(fetch, query)
            nxt = scan.take(doc, self._owned(client, kind, doc))
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
        upstream_page, skip = _decode_cursor(page)
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
            owned = self._owned(client, "file", doc)
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
        next_page = _encode_cursor(*resume) if resume is not None else None
        return {
            "data": found,
            "next_page": next_page,
            "has_more": next_page is not None,
            "first_id": found[0]["id"] if found else None,
            "last_id": found[-1]["id"] if found else None,
        }


def _encode_cursor(upstream_page: str | None, skip: int) -> str:
    raw = json.dumps([upstream_page, skip], separators=(",", ":")).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(page: str | None) -> tuple[str | None, int]:
    """The gateway's own files cursor: (upstream page cursor, items to skip in it)."""
    if not page:
        return None, 0
    bad = GatewayError("invalid_request_error", "page: not a page cursor this gateway issued")
    try:
        text = page.removeprefix("page_")
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise bad from None
    if (
        not isinstance(value, list) or len(value) != 2
        or not (value[0] is None or (isinstance(value[0], str) and OBJECT_ID.match(value[0])))
        or not isinstance(value[1], int) or isinstance(value[1], bool) or not 0 <= value[1] <= SCAN_PAGE_SIZE
    ):
        raise bad
    return value[0], value[1]
