"""Cancel during ``docker save | docker load`` (the wizard's Cancel in the images step).

The send used to be one uninterruptible stream: Cancel waited for the whole
transfer. Here this machine's real engine is both ends (the "host" is this
machine through the local connector): the token fires after a few chunks, the
send stops at once with Cancelled, ``docker save`` is gone and the engine's
images are as before.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from claudegate.connectors.base import Input, Result
from claudegate.connectors.local import LocalConnector
from claudegate.control.cancel import CancelToken
from claudegate.control.controls import RunControls
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.image_send import send_image
from claudegate.deploy.layout import HostLayout
from claudegate.errors import Cancelled
from tests.deploy.conftest import ConfigFactory
from tests.support.fresh_server import BASE_IMAGE, ensure_images

pytestmark = [pytest.mark.docker]


class CancelMidway(LocalConnector):
    """This machine as the host; the operator presses Cancel once ``after`` bytes went through."""

    def __init__(self, token: CancelToken, after: int) -> None:
        super().__init__()
        self.token, self.after, self.read = token, after, 0

    def run(self, argv: Sequence[str], *, input: Input | None = None, **kwargs: Any) -> Result:
        if input is None or isinstance(input, bytes | bytearray | memoryview):
            return super().run(argv, input=input, **kwargs)
        source = input

        class Counting:
            def read(inner, size: int = -1) -> bytes:  # "inner": self is the connector
                data: bytes = source.read(size)
                self.read += len(data)
                if self.read >= self.after:
                    threading.Thread(target=self.token.cancel).start()  # from another thread, as the UI does
                return data

        return super().run(argv, input=Counting(), **kwargs)


def test_cancel_stops_the_send_between_chunks(make_cfg: ConfigFactory) -> None:
    ensure_images()
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", BASE_IMAGE],
                              capture_output=True, text=True, check=True).stdout)
    before = subprocess.run(["docker", "image", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    token = CancelToken()
    connector = CancelMidway(token, after=4 << 20)
    ctx = Context(cfg=make_cfg(), connector=connector, layout=HostLayout(), options=RunOptions("deploy"),
                  controls=RunControls(cancel=token))
    started = time.monotonic()
    with pytest.raises(Cancelled):
        send_image(ctx, BASE_IMAGE)
    elapsed = time.monotonic() - started
    # Stopped a chunk or so after the cancel, not after the whole image.
    assert connector.read < min(size, 32 << 20), (connector.read, size)
    assert elapsed < 30, elapsed
    leftovers = subprocess.run(["pgrep", "-f", f"docker image save {BASE_IMAGE}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
    after = subprocess.run(["docker", "image", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert sorted(after.split()) == sorted(before.split())
