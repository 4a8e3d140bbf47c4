"""The API operations the gateway serves, as the path templates that
``clients[].endpoints`` globs are matched against.

A copy of ``claudegate_gateway.routes.TEMPLATES``: the operator-side tool
does not import the gateway package (it ships only as build-context files),
and tests/config/test_operations.py fails when the two differ.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

TEMPLATES: tuple[str, ...] = (
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/models",
    "/v1/models/{model_id}",
    "/v1/messages/batches",
    "/v1/messages/batches/{batch_id}",
    "/v1/messages/batches/{batch_id}/results",
    "/v1/messages/batches/{batch_id}/cancel",
    "/v1/files",
    "/v1/files/{file_id}",
    "/v1/files/{file_id}/content",
)


def matches_an_operation(glob: str) -> bool:
    return any(fnmatchcase(template, glob) for template in TEMPLATES)
