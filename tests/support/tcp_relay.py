"""A TCP relay that can be cut: a network partition between one gateway and
a real server, while the other gateways still reach it.

Not a fake of anything: bytes pass through unchanged. ``cut()`` drops every
open connection and refuses new ones (as a lost route does); ``restore()``
lets connections through again on the same port. ``rate`` (bytes per second,
each direction of each connection) makes it a slow link, as a home uplink
to a distant server is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from tests.support.gateway_proc import free_port


class TcpRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, rate: float | None = None) -> None:
        self.port = free_port()
        self._rate = rate
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def restore(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

        self._run(listen())

    def cut(self) -> None:
        async def drop() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._run(drop())

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                    if self._rate:
                        await asyncio.sleep(len(data) / self._rate)
            dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
