"""The in-process limiter: exact sliding windows, reserve-then-settle."""

from __future__ import annotations

import pytest

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client, Scopes
from claudegate_gateway.limits import Limiter


def client(**scopes: int) -> Client:
    return Client("svc", "cgk_abcdefghij", Scopes(**scopes), None, None)  # type: ignore[arg-type]


def test_rpm_exact_and_window_slides() -> None:
    lim, c = Limiter(), client(rpm=3)
    for _ in range(3):
        lim.reserve(c, 0, now=100.0)
    with pytest.raises(GatewayError) as err:
        lim.reserve(c, 0, now=100.5)
    assert err.value.status == 429 and err.value.error_type == "rate_limit_error"
    assert err.value.headers["retry-after"] == "60"
    assert err.value.headers["anthropic-ratelimit-requests-remaining"] == "0"
    lim.reserve(c, 0, now=160.01)  # the first three have left the window


def test_refused_request_takes_no_room() -> None:
    lim, c = Limiter(), client(rpm=10, tpm=100)
    lim.reserve(c, 90, now=0.0)
    with pytest.raises(GatewayError):
        lim.reserve(c, 20, now=1.0)
    # The refusal by TPM did not count against RPM: 9 more fit.
    for _ in range(9):
        lim.reserve(c, 1, now=2.0)


def test_tpm_settles_to_actual_usage() -> None:
    lim, c = Limiter(), client(tpm=1000)
    res = lim.reserve(c, 900, now=0.0)
    with pytest.raises(GatewayError):
        lim.reserve(c, 200, now=1.0)
    lim.settle(res, 100)
    lim.reserve(c, 800, now=2.0)
    lim.settle(res, 5000)  # settling twice is ignored
    lim.reserve(c, 100, now=3.0)


def test_request_bigger_than_tpm_is_400_not_429() -> None:
    lim, c = Limiter(), client(tpm=100)
    with pytest.raises(GatewayError) as err:
        lim.reserve(c, 101, now=0.0)
    assert err.value.status == 400 and "max_tokens" in err.value.message


def test_daily_budget() -> None:
    lim, c = Limiter(), client(daily_tokens=1000)
    res = lim.reserve(c, 600, now=0.0)
    with pytest.raises(GatewayError) as err:
        lim.reserve(c, 600, now=1.0)
    assert "daily budget" in err.value.message and int(err.value.headers["retry-after"]) >= 1
    lim.settle(res, 300)
    lim.reserve(c, 600, now=2.0)
    assert lim.ledger.daily_used("svc", lim.day) == 900


def test_settle_after_window_expired_does_not_corrupt_total() -> None:
    lim, c = Limiter(), client(tpm=1000)
    res = lim.reserve(c, 500, now=0.0)
    lim.reserve(c, 10, now=61.0)  # expires the first entry
    lim.settle(res, 50)
    # The window now holds only the 10-token entry.
    lim.reserve(c, 990, now=62.0)


def test_headers_when_unlimited_are_empty() -> None:
    assert Limiter().headers(client()) == {}
