"""The reservation store interface shared by the in-process and the Redis store.

Semantics (both stores, pinned by ``tests/store/test_contract.py``):

- A *slot* is a lease ``(node_id, holder)`` with an expiry.  ``holder`` names one attempt of one
  job (``"<job_id>:<attempt_id>"``), so reserve and release are idempotent per job+attempt.
- Expired leases do not count; a scheduler that crashed leaks a slot for at most one lease.
- ``try_reserve`` is choose-and-reserve in one step (one round trip on Redis): among the
  candidates whose live leases are fewer than the capacity passed in *now* (so a changed
  capacity applies at once), it takes the one with the smallest ``(tier, reserved, position)``
  and returns its node id; it returns ``None`` when none has a free slot.  If ``holder`` already
  holds a live lease on one of the candidates, that lease is renewed and its node returned.
- Heartbeats never touch reservations: only reserve, release, renew and expiry change counts.
- A store that cannot be reached raises ``StoreUnavailable`` within its timeout; other
  libraries' exceptions never leave the store module.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
# What a callback-style store call reports: the results in order, or the error instead.
Outcome = Callable[[Sequence[T] | None, BaseException | None], None]
# A running job's lease as its scheduler claims it: (node_id, holder, the node's capacity).
Claim = tuple[str, str, int]
_running: set[asyncio.Task[Any]] = set()  # the loop holds tasks only weakly


@dataclass(frozen=True, slots=True)
class Candidate:
    """One node the dispatcher would accept, in its order of preference."""

    node_id: str
    capacity: int
    # Lower tiers are preferred over any load difference: 0 = preferred pool, 1 = other pools,
    # 2 = nodes already tried by this job (seed §6 steps 6–8; contract §2 "Failures").
    tier: int = 0


class ReservationStore(abc.ABC):
    """One interface, two implementations with identical semantics."""

    name: str

    @abc.abstractmethod
    async def try_reserve(
        self, candidates: Sequence[Candidate], holder: str, *, lease_s: float
    ) -> str | None:
        """Reserve a slot on the best candidate with room; ``None`` when all are full."""

    @abc.abstractmethod
    async def try_reserve_many(
        self, requests: Sequence[tuple[Sequence[Candidate], str]], *, lease_s: float
    ) -> list[str | None]:
        """``try_reserve`` for each ``(candidates, holder)`` in order, as one atomic step (one
        round trip on Redis): nothing else changes the leases between two of them."""

    @abc.abstractmethod
    async def release(self, node_id: str, holder: str) -> bool:
        """Drop ``holder``'s lease on ``node_id``; ``False`` if it held none (idempotent)."""

    @abc.abstractmethod
    async def renew(self, leases: Iterable[tuple[str, str]], *, lease_s: float) -> int:
        """Extend the given live ``(node_id, holder)`` leases; returns how many were live."""

    @abc.abstractmethod
    async def reserved(self, node_ids: Iterable[str]) -> Mapping[str, int]:
        """Live lease counts for the given nodes (0 for a node with none)."""

    @abc.abstractmethod
    async def held_total(self) -> int:
        """Live leases across every node and every scheduler sharing this store."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """``True`` while the store answers; never raises."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the in-process store has none."""

    # --- the same calls with a callback (the dispatch driver's way in) ------------------------
    # ``done(results, None)`` or ``done(None, error)``, once, from the loop (never from inside
    # the call).  A store with a cheaper path than a task per call (Redis) overrides them.

    def reserve_soon(
        self,
        requests: Sequence[tuple[Sequence[Candidate], str]],
        *,
        lease_s: float,
        done: Outcome[str | None],
    ) -> None:
        """``try_reserve_many``, with a callback."""
        _then(self.try_reserve_many(requests, lease_s=lease_s), done)

    def release_soon(self, leases: Sequence[tuple[str, str]], *, done: Outcome[bool]) -> None:
        """``release`` of each lease in order, with a callback."""

        async def release_all() -> list[bool]:
            return [await self.release(node_id, holder) for node_id, holder in leases]

        _then(release_all(), done)

    def reassert_soon(self, claims: Sequence[Claim], *, lease_s: float, done: Outcome[int]) -> None:
        """Make sure each claimed lease is held: extended if live, created again if the store
        lost it (Redis restarted without persistence, or it expired while this scheduler could
        not reach Redis), even on a node already full (the node runs the job).  ``done`` gets
        ``[renewed, recreated, recreated on a full node]``.  The in-process store loses no lease
        but by expiry, and this process renews in time, so it only renews."""

        async def renew() -> list[int]:
            live = await self.renew([(n, h) for n, h, _ in claims], lease_s=lease_s)
            return [live, 0, 0]

        _then(renew(), done)

    def reassert_on_connect(  # noqa: B027 - optional hook
        self,
        claims: Callable[[], Sequence[Claim]],
        *,
        lease_s: float,
        lost: Callable[[int, int], None],
    ) -> None:
        """Have every new connection to the store re-assert ``claims()`` before anything else
        (see ``reassert_soon``); a store without connections has nothing to do."""


@runtime_checkable
class InlineStore(Protocol):
    """A store whose calls never wait (the in-process one) also offers them as plain calls,
    which the dispatch driver makes inline: an embedded placement costs no task switch."""

    def try_reserve_now(
        self, candidates: Sequence[Candidate], holder: str, *, lease_s: float
    ) -> str | None: ...

    def try_reserve_many_now(
        self, requests: Sequence[tuple[Sequence[Candidate], str]], *, lease_s: float
    ) -> list[str | None]: ...

    def release_now(self, node_id: str, holder: str) -> bool: ...


def _then(call: Coroutine[Any, Any, Sequence[T]], done: Outcome[T]) -> None:
    """Run ``call`` in a task and report its outcome to ``done``."""

    def report(task: asyncio.Task[Sequence[T]]) -> None:
        if task.cancelled():
            done(None, asyncio.CancelledError())
        elif (error := task.exception()) is not None:
            done(None, error)
        else:
            done(task.result(), None)

    task = asyncio.ensure_future(call)
    _running.add(task)
    task.add_done_callback(_running.discard)
    task.add_done_callback(report)


async def awaited(start: Callable[..., None], *args: Any, **kwargs: Any) -> Sequence[Any]:
    """Await a callback-style call (``reserve_soon``, ``release_soon``): its results, or its
    error raised here."""
    future: asyncio.Future[Sequence[Any]] = asyncio.get_running_loop().create_future()

    def done(results: Sequence[Any] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(results or ())

    start(*args, done=done, **kwargs)
    return await future
