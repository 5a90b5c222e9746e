"""Run a coroutine now, as far as it goes without waiting; finish it in a task only if it waits.

Why: a WebSocket write (``send_frame``) is a coroutine that nearly always completes without
suspending (it writes to the transport, and waits only when the peer's TCP window is shut).
Awaiting it forces every caller to be a coroutine, and a reservation answered by Redis in a
callback would need a task (one more loop iteration) just to write ``job_assign``.  Python
3.12's eager tasks do this natively; on 3.11 :func:`start` does the same by hand: it steps the
coroutine once, and if it suspended, a task carries on from exactly where it stopped (the
``yield from`` protocol, as ``asyncio.Task`` itself drives coroutines).

Only for coroutines that do not look at ``asyncio.current_task()`` before their first
suspension (``asyncio.timeout`` does): during the first step the current task is the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

_background: set[asyncio.Task[Any]] = set()  # the loop holds tasks only weakly


class _Rest:
    """The rest of a coroutine that suspended on ``yielded``, as an awaitable."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._yielded
        while True:
            try:
                sent = yield value  # the awaiting task waits on it, as on a plain ``await``
            except BaseException as exc:  # thrown in by the task (a cancel): pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(rest: _Rest) -> Any:
    return await rest


def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Step ``coro`` now: ``None`` if it finished (its exception, if any, is raised here), or
    the task that finishes it if it suspended."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    task: asyncio.Task[None] = asyncio.ensure_future(_finish(_Rest(coro, yielded)))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task
