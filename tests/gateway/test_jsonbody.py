"""Strict request-body JSON: one reading, the one upstream would make."""

from __future__ import annotations

import pytest

from claudegate_gateway.jsonbody import MAX_DEPTH, BodyError, depth, parse_object


def _nested(levels: int) -> bytes:
    return ('{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)).encode()


def test_depth_limit_is_exact() -> None:
    assert depth(parse_object(_nested(MAX_DEPTH))) == MAX_DEPTH
    with pytest.raises(BodyError, match="nested deeper"):
        parse_object(_nested(MAX_DEPTH + 1))
    with pytest.raises(BodyError, match="nested deeper"):
        parse_object(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


@pytest.mark.parametrize(
    "body",
    [b'{"a":1,"a":1}', b'{"x":[{"b":1,"b":2}]}', b'{"a":1,"\\u0061":2}', b'{"k":{"":1,"":2}}'],
)
def test_duplicate_keys_anywhere_are_refused(body: bytes) -> None:
    with pytest.raises(BodyError, match="twice"):
        parse_object(body)


@pytest.mark.parametrize(
    "body",
    [b"[1]", b'"x"', b"null", b'{"a":NaN}', b'{"a":-Infinity}', b"\xef\xbb\xbf{}", b'{"a":"\xff"}',
     '{"a":1}'.encode("utf-16"), b"{} {}", b""],
)
def test_other_readings_are_refused(body: bytes) -> None:
    with pytest.raises(BodyError):
        parse_object(body)


def test_a_plain_object_is_returned_as_parsed() -> None:
    assert parse_object('{"a":[1,{"b":"é"}],"c":null}'.encode()) == {"a": [1, {"b": "é"}], "c": None}
