"""``FairRWLock``: tokio's fair read/write semantics, which the old design's model relies on."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.legacy.rwlock import FairRWLock


async def test_readers_share_the_lock() -> None:
    """Two readers hold the lock at once (dispatches overlap under the read side)."""
    lock = FairRWLock()
    async with lock.read(), lock.read():
        assert lock.readers == 2


async def test_a_writer_waits_for_readers_in_flight() -> None:
    """A heartbeat's write waits until every dispatch holding the read side is done."""
    lock = FairRWLock()
    order: list[str] = []
    release = asyncio.Event()

    async def reader() -> None:
        async with lock.read():
            await release.wait()
            order.append("read done")

    async def writer() -> None:
        async with lock.write():
            order.append("write")

    r = asyncio.create_task(reader())
    await asyncio.sleep(0)
    w = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    assert order == []
    release.set()
    await asyncio.gather(r, w)
    assert order == ["read done", "write"]


async def test_readers_arriving_after_a_waiting_writer_wait_behind_it() -> None:
    """Fairness: the convoy of the old design — a queued writer blocks later readers."""
    lock = FairRWLock()
    order: list[str] = []
    release = asyncio.Event()

    async def first_reader() -> None:
        async with lock.read():
            await release.wait()

    async def writer() -> None:
        async with lock.write():
            order.append("write")

    async def late_reader() -> None:
        async with lock.read():
            order.append("late read")

    tasks = [asyncio.create_task(first_reader())]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(writer()))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(late_reader()))
    await asyncio.sleep(0.01)
    assert order == []
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["write", "late read"]


async def test_a_cancelled_waiter_does_not_keep_the_lock() -> None:
    """A waiter cancelled in the queue leaves the lock usable by the next one."""
    lock = FairRWLock()
    release = asyncio.Event()

    async def hold() -> None:
        async with lock.write():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(lock.read().__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    async with asyncio.timeout(1):
        async with lock.write():
            assert lock.writing
    assert lock.readers == 0 and not lock.writing
