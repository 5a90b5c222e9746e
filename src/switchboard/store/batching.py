"""Coalesce calls made in the same event-loop tick into one round trip.

A scheduler under load makes many reservations and releases per tick.  Each Redis call costs
far more client CPU (redis-py) than Redis spends on it, so the Redis store sends every request
that arrived while the loop was busy as one script call.  A batch means the same as its
requests run one after another (the scripts run them in order, atomically); the latency cost
is at most one loop tick when idle, and under load a request waits at most for the batch in
flight to return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from switchboard.errors import StoreUnavailable

Req = TypeVar("Req")
Res = TypeVar("Res")


class Batcher(Generic[Req, Res]):
    def __init__(
        self,
        send: Callable[[Sequence[Req]], Awaitable[Sequence[Res]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._in_flight = 0
        self._scheduled = False

    async def call(self, request: Req) -> Res:
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        try:
            results = await self._send([request for request, _ in batch])
            if len(results) != len(batch):
                raise ValueError(f"a batch of {len(batch)} got {len(results)} results")
        except BaseException as exc:  # every caller in the batch gets the store's error
            failure = exc if isinstance(exc, Exception) else StoreUnavailable("call cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=False):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._flush()
