"""The Batcher: calls of one loop tick share one send; results and errors reach each caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from switchboard.errors import StoreUnavailable
from switchboard.store.batching import Batcher, Done

_running: set[asyncio.Task[None]] = set()


def via_task(send: Callable[[Sequence[int]], Awaitable[list[int]]]) -> Any:
    """A coroutine send in the Batcher's callback shape: run in a task, report to ``done``."""

    def start(items: Sequence[int], done: Done[int]) -> None:
        async def run() -> None:
            try:
                results = await send(items)
            except Exception as exc:
                done(None, exc)
            else:
                done(results, None)

        task = asyncio.ensure_future(run())
        _running.add(task)
        task.add_done_callback(_running.discard)

    return start


async def test_an_idle_pipe_sends_at_once_and_later_calls_share_one_send() -> None:
    """The first call goes on the wire at once; the nine made meanwhile go out together."""
    sent: list[list[int]] = []

    async def send(items: Sequence[int]) -> list[int]:
        sent.append(list(items))
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(via_task(send))
    results = await asyncio.gather(*(batcher.call(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert sent == [[0], list(range(1, 10))]


async def test_a_group_is_never_split_across_batches() -> None:
    """call_many's requests share one send, in order, even past the batch cap."""
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: Sequence[int]) -> list[int]:
        sent.append(list(items))
        await gate.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(via_task(send), max_batch=4, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0.01)
    single = asyncio.ensure_future(batcher.call(1))
    group = asyncio.ensure_future(batcher.call_many([2, 3, 4, 5, 6]))
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == 0 and await single == 1
    assert await group == [2, 3, 4, 5, 6]
    assert sent == [[0], [1], [2, 3, 4, 5, 6]]


async def test_calls_during_a_batch_in_flight_form_the_next_batch() -> None:
    """With the in-flight limit reached, later calls wait and then go out together."""
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: Sequence[int]) -> list[int]:
        sent.append(list(items))
        await gate.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(via_task(send), max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.call(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert sent == [[0]]
    gate.set()
    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert sent == [[0], [1, 2, 3]]


async def test_a_failed_send_fails_every_caller_of_that_batch() -> None:
    """The store's error reaches each caller; the next batch is unaffected."""
    calls = 0

    async def send(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("down")
        return list(items)

    batcher: Batcher[int, int] = Batcher(via_task(send))
    with pytest.raises(StoreUnavailable):
        await batcher.call_many([0, 1, 2])  # one batch: one failure for all three
    assert calls == 1
    assert await batcher.call(7) == 7


async def test_batches_are_capped() -> None:
    """No batch exceeds max_batch requests."""
    sizes: list[int] = []

    async def send(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(via_task(send), max_batch=4, max_in_flight=8)
    assert await asyncio.gather(*(batcher.call(i) for i in range(10))) == list(range(10))
    assert max(sizes) <= 4 and sum(sizes) == 10


@pytest.mark.parametrize("bad", [[], [1, 2, 3, 4]])
async def test_a_send_returning_the_wrong_count_fails_its_callers(bad: list[int]) -> None:
    """A malformed reply never leaves a caller waiting forever."""

    async def send(items: Sequence[int]) -> list[int]:
        return bad

    batcher: Batcher[int, int] = Batcher(via_task(send))
    with pytest.raises(ValueError):
        await asyncio.wait_for(asyncio.gather(*(batcher.call(i) for i in range(2))), 1)
