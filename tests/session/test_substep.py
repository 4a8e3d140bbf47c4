"""Sub-step progress: build output lines and bytes sent, from canned output (no host)."""

from __future__ import annotations

import io

import pytest

from claudegate.control.cancel import CancelToken
from claudegate.deploy.substep import BuildOutput, CountingReader, build_progress
from claudegate.errors import Cancelled

Reported = list[tuple[str, float | None, float | None, str]]


def recorder() -> tuple[Reported, BuildOutput]:
    seen: Reported = []
    return seen, BuildOutput("building gateway", lambda *a: seen.append(a), every=3600)


def test_build_steps_are_recognised_from_both_builders() -> None:
    assert build_progress("Step 3/12 : RUN pip install --no-index /wheels/*") == (3, 12, "RUN pip install --no-index /wheels/*")
    assert build_progress("#7 [2/6] COPY wheels /wheels") == (2, 6, "COPY wheels /wheels")
    assert build_progress("#7 [stage-1 4/5] RUN true") == (4, 5, "RUN true")
    assert build_progress(" ---> Running in 1c2b") is None
    assert build_progress("Successfully built 1c2b") is None


def test_lines_split_across_chunks_are_reported_once_each() -> None:
    seen, output = recorder()
    for chunk in (b"Step 1/3 : FR", b"OM base\n ---> abc\nStep 2/3 : COPY . /src\nStep 3/3", b" : RUN true\n"):
        output(chunk)
    assert [(m, d, e, u) for m, d, e, u in seen] == [
        ("building gateway: FROM base", 1.0, 3.0, "steps"),
        ("building gateway: COPY . /src", 2.0, 3.0, "steps"),
        ("building gateway: RUN true", 3.0, 3.0, "steps"),
    ]
    assert output.lines == 4


def test_other_lines_are_throttled() -> None:
    seen: Reported = []
    output = BuildOutput("b", lambda *a: seen.append(a), every=3600)
    output(b"".join(b"line %d\n" % i for i in range(100)))
    assert len(seen) == 1 and seen[0][3] == "lines"


def test_bytes_sent_are_counted_to_the_end() -> None:
    seen: Reported = []
    data = bytes(range(256)) * 1000
    reader = io.BufferedReader(CountingReader(data, "sending", lambda *a: seen.append(a), every=0), 1 << 16)
    assert reader.read() == data
    assert seen[-1] == ("sending", float(len(data)), float(len(data)), "bytes")
    assert all(a[1] is not None and a[1] <= len(data) for a in seen)


def test_a_cancel_abandons_a_command_at_its_next_output() -> None:
    token = CancelToken()
    seen: Reported = []
    output = BuildOutput("b", lambda *a: seen.append(a), check=token.raise_if_cancelled)
    output(b"Step 1/2 : FROM x\n")
    token.cancel()
    with pytest.raises(Cancelled):
        output(b"Step 2/2 : RUN y\n")
    assert len(seen) == 1
