"""The audit's waits go through the cancellable sleep: Cancel stops a waiting audit at once."""

from __future__ import annotations

import threading
import time

import pytest

from claudegate.audit.context import Run
from claudegate.audit.target import AuditTarget
from claudegate.control.cancel import CancelToken
from claudegate.control.controls import RunControls, using
from claudegate.errors import Cancelled
from claudegate.probes.wait import pause


def _cancel_soon(token: CancelToken) -> threading.Timer:
    timer = threading.Timer(0.2, token.cancel, args=("Cancel pressed",))
    timer.start()
    return timer


def test_cancel_interrupts_a_pause() -> None:
    token = CancelToken()
    started = time.monotonic()
    with using(RunControls(cancel=token)), pytest.raises(Cancelled):
        _cancel_soon(token)
        pause(30)
    assert time.monotonic() - started < 5


def test_cancel_interrupts_the_wait_for_the_bucket() -> None:
    token = CancelToken()
    run = Run.open(AuditTarget(base_url="https://gw.example.com"))
    started = time.monotonic()
    with using(RunControls(cancel=token)), pytest.raises(Cancelled):
        _cancel_soon(token)
        run.wait_for_bucket(30)
    assert time.monotonic() - started < 5


def test_without_a_run_token_a_pause_just_sleeps() -> None:
    started = time.monotonic()
    pause(0.3)
    assert time.monotonic() - started >= 0.29
