"""Coalesce calls made while a round trip is under way into one round trip.

A scheduler under load makes many reservations and releases per loop tick.  Each Redis call
costs far more client CPU than Redis spends on it, so the Redis store sends every request that
arrived while the pipe was busy as one script call.  A batch means the same as its requests run
one after another (the scripts run them in order, atomically).

When nothing is in flight a request goes on the wire at once, inside ``submit``, without
waiting for the next loop tick (issue 9 "Redis at wire speed"); requests made while batches are
in flight (up to ``max_in_flight``) are gathered until the end of the tick and go together.  A
group submitted at once stays together in one batch, so a wake round of the waiting line is one
atomic step: no release can land between two of its reservations, and the line's order holds.

Callbacks, not coroutines: ``send`` writes at once and calls back with the batch's results,
and ``submit`` calls back with the group's, so a reservation costs no task (``call`` and
``call_many`` are the awaitable faces of the same thing).  Callbacks come from the loop, never
from inside ``submit``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")

log = logging.getLogger("switchboard.store")

# The results of a batch or a group in order, or the error that failed all of it.
Done = Callable[[Sequence[Res] | None, BaseException | None], None]
Send = Callable[[Sequence[Req], Done[Res]], None]


class Batcher(Generic[Req, Res]):
    def __init__(self, send: Send[Req, Res], *, max_batch: int = 256, max_in_flight: int = 2):
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        # Groups in submission order; each goes whole into one batch.
        self._pending: list[tuple[Sequence[Req], Done[Res]]] = []
        self._in_flight = 0
        self._scheduled = False

    def submit(self, requests: Sequence[Req], done: Done[Res]) -> None:
        """Send ``requests`` together, in order; ``done`` gets their results in order."""
        self._pending.append((requests, done))
        if self._in_flight == 0:
            self._flush()  # an idle pipe: on the wire now
        elif not self._scheduled and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)  # gather what this tick adds

    async def call_many(self, requests: Sequence[Req]) -> list[Res]:
        future: asyncio.Future[list[Res]] = asyncio.get_running_loop().create_future()

        def done(results: Sequence[Res] | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(list(results or ()))

        self.submit(requests, done)
        return await future

    async def call(self, request: Req) -> Res:
        return (await self.call_many((request,)))[0]

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self._max_in_flight:
            batch = [self._pending.pop(0)]
            size = len(batch[0][0])
            while self._pending and size + len(self._pending[0][0]) <= self._max_batch:
                size += len(self._pending[0][0])
                batch.append(self._pending.pop(0))
            self._in_flight += 1
            requests = [request for group, _ in batch for request in group]
            self._send(requests, functools.partial(self._sent, batch))

    def _sent(
        self,
        batch: list[tuple[Sequence[Req], Done[Res]]],
        results: Sequence[Res] | None,
        error: BaseException | None,
    ) -> None:
        self._in_flight -= 1
        count = sum(len(group) for group, _ in batch)
        if error is None and (results is None or len(results) != count):
            error = ValueError(f"a batch of {count} got {len(results or ())} results")
        start = 0
        for group, done in batch:
            end = start + len(group)
            try:
                if error is None:
                    assert results is not None
                    done(results[start:end], None)
                else:
                    done(None, error)  # every caller in the batch gets the store's error
            except Exception:  # one caller's bug must not cost the others their answers
                log.exception("a store caller failed on its results")
            start = end
        if self._pending and not self._scheduled:
            self._flush()
