"""A TCP proxy in front of Redis for one scheduler instance, so that a fault can cut that
instance alone off from Redis on loopback while its own sockets (nodes, sessions) stay up.

Two ways to cut, as a network does:

- :meth:`RedisProxy.cut`: a partition.  Connections stay open, new ones are accepted, and
  nothing crosses in either direction; what was sent waits.  :meth:`RedisProxy.heal` lets it
  through in order, late, as TCP retransmission does once a partition heals (so Redis may run a
  command its client has given up on, which the scheduler must survive).
- :meth:`RedisProxy.drop`: every connection is reset and new ones are closed at once (a
  firewall that rejects); :meth:`RedisProxy.heal` accepts them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

_CHUNK: Final = 64 * 1024


class RedisProxy:
    """``127.0.0.1:<port>`` → ``host:port`` of the real server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._open = asyncio.Event()
        self._open.set()
        self._dropped = False
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url_netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        self._open.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- faults -------------------------------------------------------------------------------

    def cut(self) -> None:
        """Nothing crosses from now on; connections stay open and what is sent waits."""
        self._open.clear()

    def drop(self) -> None:
        """Reset every connection, and close new ones at once, until :meth:`heal`."""
        self._dropped = True
        self._reset_all()

    def heal(self) -> None:
        """Traffic flows again; what waited during a cut goes through, in order."""
        self._dropped = False
        self._open.set()

    @property
    def healthy(self) -> bool:
        return self._open.is_set() and not self._dropped

    # --- plumbing -----------------------------------------------------------------------------

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._dropped:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                await self._open.wait()  # a cut holds the bytes here, in order
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other, after what waited has gone (or been dropped).
            with contextlib.suppress(OSError, RuntimeError):
                sink.close()
            self._pairs.discard(pair)

    def _reset_all(self) -> None:
        for client, upstream in list(self._pairs):
            _reset(client)
            _reset(upstream)
        self._pairs.clear()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset, not a goodbye: the peer sees the connection fail."""
    transport = writer.transport
    with contextlib.suppress(OSError, RuntimeError):
        transport.abort()
