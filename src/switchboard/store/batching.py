"""Coalesce calls made while a round trip is under way into one round trip.

A scheduler under load makes many reservations and releases per loop tick.  Each Redis call
costs far more client CPU than Redis spends on it, so the Redis store sends every request that
arrived while the pipe was busy as one script call.  A batch means the same as its requests run
one after another (the scripts run them in order, atomically).

When nothing is in flight a call goes on the wire at once, without waiting for the next loop
tick (issue 9 "Redis at wire speed"); calls made while a batch is in flight (up to
``max_in_flight``) wait for the next batch.  ``call_many`` keeps a group of requests together in
one batch, so a wake round of the waiting line is one atomic step: no release can land between
two of its reservations, and the line's order holds.
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
        # Groups in call order: each is sent whole, in one batch.
        self._pending: list[tuple[Sequence[Req], asyncio.Future[list[Res]]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()  # the loop holds tasks only weakly

    async def call(self, request: Req) -> Res:
        results = await self.call_many((request,))
        return results[0]

    async def call_many(self, requests: Sequence[Req]) -> list[Res]:
        """Send ``requests`` together, in one batch, in order; their results in order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Res]] = loop.create_future()
        self._pending.append((requests, future))
        if self._in_flight == 0:
            self._flush()  # an idle pipe: on the wire now
        elif not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)  # gather what else this tick adds
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._in_flight < self._max_in_flight:
            batch = [self._pending.pop(0)]
            size = len(batch[0][0])
            while self._pending and size + len(self._pending[0][0]) <= self._max_batch:
                size += len(self._pending[0][0])
                batch.append(self._pending.pop(0))
            self._in_flight += 1
            task = loop.create_task(self._run(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[Sequence[Req], asyncio.Future[list[Res]]]]) -> None:
        requests = [request for group, _ in batch for request in group]
        try:
            results = await self._send(requests)
            if len(results) != len(requests):
                raise ValueError(f"a batch of {len(requests)} got {len(results)} results")
        except BaseException as exc:  # every caller in the batch gets the store's error
            failure = exc if isinstance(exc, Exception) else StoreUnavailable("call cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
        else:
            start = 0
            for group, future in batch:
                end = start + len(group)
                if not future.done():
                    future.set_result(list(results[start:end]))
                start = end
        finally:
            self._in_flight -= 1
            if self._pending:
                self._flush()
