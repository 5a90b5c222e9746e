"""The ReservationStore contract (store/base.py), run on the memory and the Redis store alike.

Time: the memory store runs on a manual clock, Redis on server time, so ``advance`` sleeps for
Redis.  Leases meant to expire are ``SHORT`` (scaled by the timeout scale); all others are
``LONG`` so that no test depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.store.base import Candidate, ReservationStore
from switchboard.store.memory import MemoryStore

T = TypeVar("T")
LONG = 60.0
Advance = Callable[[float], Awaitable[None]]


@pytest.fixture
def short(timeout_scale: float) -> float:
    """A lease that a test lets expire (Redis stores ms, so keep well above a few ms)."""
    return 0.2 * timeout_scale


async def fill(store: ReservationStore, node: str, count: int, *, capacity: int = 100) -> None:
    """Put ``count`` live leases on ``node`` (holders ``fill-<node>-<i>``)."""
    for i in range(count):
        got = await store.try_reserve([Candidate(node, capacity)], f"fill-{node}-{i}", lease_s=LONG)
        assert got == node


# --------------------------------------------------------------------------- choosing


async def test_reserve_up_to_capacity_then_none(store: ReservationStore) -> None:
    cands = [Candidate("a", 3)]
    got = [await store.try_reserve(cands, f"job{i}:1", lease_s=LONG) for i in range(4)]
    assert got == ["a", "a", "a", None]
    assert await store.reserved(["a"]) == {"a": 3}


async def test_least_reserved_first(store: ReservationStore) -> None:
    await fill(store, "a", 2)
    await fill(store, "b", 1)
    cands = [Candidate("a", 5), Candidate("b", 5), Candidate("c", 5)]
    got = [await store.try_reserve(cands, f"job{i}:1", lease_s=LONG) for i in range(4)]
    # c(0) → then b and c tie at 1, b is earlier → then c(1) → then all tie at 2, a is first.
    assert got == ["c", "b", "c", "a"]
    assert await store.reserved(["a", "b", "c"]) == {"a": 3, "b": 2, "c": 2}


async def test_tier_beats_load(store: ReservationStore) -> None:
    await fill(store, "busy", 3)
    cands = [Candidate("idle", 5, tier=1), Candidate("busy", 4, tier=0)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == "busy"
    assert await store.try_reserve(cands, "j2:1", lease_s=LONG) == "idle"  # busy is now full


async def test_full_preferred_tier_falls_back(store: ReservationStore) -> None:
    cands = [Candidate("p", 1, tier=0), Candidate("o", 1, tier=1), Candidate("t", 1, tier=2)]
    got = [await store.try_reserve(cands, f"j{i}:1", lease_s=LONG) for i in range(4)]
    assert got == ["p", "o", "t", None]


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
async def test_position_breaks_ties(store: ReservationStore, order: tuple[str, str]) -> None:
    cands = [Candidate(order[0], 2), Candidate(order[1], 2)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == order[0]
    assert await store.try_reserve(cands, "j2:1", lease_s=LONG) == order[1]
    assert await store.try_reserve(cands, "j3:1", lease_s=LONG) == order[0]


async def test_repeated_candidate_keeps_first_entry(store: ReservationStore) -> None:
    # "a" appears again later with a better tier; the first entry (tier 1, cap 1) wins.
    cands = [Candidate("a", 1, tier=1), Candidate("b", 5, tier=1), Candidate("a", 9, tier=0)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == "a"
    assert await store.try_reserve(cands, "j2:1", lease_s=LONG) == "b"
    assert await store.try_reserve(cands, "j3:1", lease_s=LONG) == "b"


async def test_empty_candidates_is_none(store: ReservationStore) -> None:
    assert await store.try_reserve([], "j1:1", lease_s=LONG) is None
    assert await store.held_total() == 0


async def test_zero_or_negative_capacity_never_has_room(store: ReservationStore) -> None:
    cands = [Candidate("a", 0), Candidate("b", -1)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) is None


async def test_capacity_change_applies_at_once(store: ReservationStore) -> None:
    await fill(store, "a", 2)
    assert await store.try_reserve([Candidate("a", 2)], "j1:1", lease_s=LONG) is None
    # Lowered below the live count: nothing is evicted, nothing new fits.
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) is None
    assert await store.reserved(["a"]) == {"a": 2}
    # Raised: the very next call sees the room.
    assert await store.try_reserve([Candidate("a", 3)], "j1:1", lease_s=LONG) == "a"
    assert await store.reserved(["a"]) == {"a": 3}


# --------------------------------------------------------------------------- idempotence


async def test_same_holder_twice_is_one_slot(store: ReservationStore) -> None:
    cands = [Candidate("a", 5), Candidate("b", 5)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == "a"
    # b is now the less loaded one, but the holder already has a: same node, no new slot.
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == "a"
    assert await store.try_reserve(list(reversed(cands)), "j1:1", lease_s=LONG) == "a"
    assert await store.reserved(["a", "b"]) == {"a": 1, "b": 0}
    assert await store.held_total() == 1


async def test_existing_lease_wins_even_over_capacity(store: ReservationStore) -> None:
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
    # Capacity dropped to 0 and a better tier appeared: the holder keeps (renews) its lease.
    cands = [Candidate("b", 5, tier=0), Candidate("a", 0, tier=2)]
    assert await store.try_reserve(cands, "j1:1", lease_s=LONG) == "a"
    assert await store.held_total() == 1


async def test_holder_elsewhere_does_not_block_new_lease(store: ReservationStore) -> None:
    # Only leases on the given candidates count as "already held" (base.py).
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
    assert await store.try_reserve([Candidate("b", 1)], "j1:1", lease_s=LONG) == "b"
    assert await store.held_total() == 2


async def test_release_is_idempotent(store: ReservationStore) -> None:
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
    assert await store.release("a", "other:1") is False
    assert await store.release("b", "j1:1") is False
    assert await store.release("a", "j1:1") is True
    assert await store.release("a", "j1:1") is False
    assert await store.reserved(["a"]) == {"a": 0}
    assert await store.try_reserve([Candidate("a", 1)], "j2:1", lease_s=LONG) == "a"


# --------------------------------------------------------------------------- leases


async def test_expired_leases_do_not_count_and_are_freed(
    store: ReservationStore, advance: Advance, short: float
) -> None:
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=short) == "a"
    assert await store.try_reserve([Candidate("a", 1)], "j2:1", lease_s=LONG) is None
    await advance(short * 1.5)
    assert await store.reserved(["a"]) == {"a": 0}
    assert await store.held_total() == 0
    assert await store.try_reserve([Candidate("a", 1)], "j2:1", lease_s=LONG) == "a"
    assert await store.release("a", "j1:1") is False  # expired: it holds nothing any more
    assert await store.held_total() == 1


async def test_renew_extends_only_live_leases(
    store: ReservationStore, advance: Advance, short: float
) -> None:
    for holder in ("live:1", "released:1", "expiring:1"):
        assert await store.try_reserve([Candidate("a", 5)], holder, lease_s=short) == "a"
    assert await store.release("a", "released:1")
    renewed = await store.renew(
        [("a", "live:1"), ("a", "released:1"), ("b", "live:1"), ("a", "unknown:1")],
        lease_s=LONG,
    )
    assert renewed == 1
    await advance(short * 1.5)
    # live:1 survived its original lease; released:1 was not resurrected; expiring:1 expired.
    assert await store.reserved(["a", "b"]) == {"a": 1, "b": 0}
    assert await store.renew([("a", "expiring:1")], lease_s=LONG) == 0
    assert await store.release("a", "live:1") is True


async def test_renew_counts_each_lease_once(store: ReservationStore) -> None:
    assert await store.try_reserve([Candidate("a", 5)], "j1:1", lease_s=LONG) == "a"
    assert await store.renew([("a", "j1:1"), ("a", "j1:1")], lease_s=LONG) == 1
    assert await store.renew([], lease_s=LONG) == 0


async def test_renew_never_shortens(
    store: ReservationStore, advance: Advance, short: float
) -> None:
    assert await store.try_reserve([Candidate("a", 5)], "j1:1", lease_s=LONG) == "a"
    assert await store.renew([("a", "j1:1")], lease_s=short) == 1
    assert await store.try_reserve([Candidate("a", 5)], "j1:1", lease_s=short) == "a"
    await advance(short * 1.5)
    assert await store.reserved(["a"]) == {"a": 1}


async def test_reserve_again_renews(
    store: ReservationStore, advance: Advance, short: float
) -> None:
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=short) == "a"
    assert await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=LONG) == "a"
    await advance(short * 1.5)
    assert await store.reserved(["a"]) == {"a": 1}


@pytest.mark.parametrize("lease_s", [0.0, -1.0, float("nan"), float("inf")])
async def test_bad_lease_is_a_caller_error(store: ReservationStore, lease_s: float) -> None:
    with pytest.raises(ValueError, match="lease_s"):
        await store.try_reserve([Candidate("a", 1)], "j1:1", lease_s=lease_s)
    with pytest.raises(ValueError, match="lease_s"):
        await store.renew([("a", "j1:1")], lease_s=lease_s)


# --------------------------------------------------------------------------- counts


async def test_reserved_and_held_total_are_exact(store: ReservationStore) -> None:
    assert await store.reserved([]) == {}
    assert await store.held_total() == 0
    await fill(store, "a", 3)
    await fill(store, "b", 1)
    assert await store.reserved(["b", "a", "never-seen", "a"]) == {"a": 3, "b": 1, "never-seen": 0}
    assert await store.held_total() == 4
    assert await store.release("b", "fill-b-0")
    assert await store.held_total() == 3
    assert await store.ping() is True


async def test_concurrent_reserves_never_exceed_capacity(store: ReservationStore) -> None:
    cands = [Candidate("a", 4), Candidate("b", 4), Candidate("c", 4, tier=1)]
    got = await asyncio.gather(
        *(store.try_reserve(cands, f"j{i}:1", lease_s=LONG) for i in range(60))
    )
    assert sum(g is not None for g in got) == 12
    assert await store.reserved(["a", "b", "c"]) == {"a": 4, "b": 4, "c": 4}
    assert await store.held_total() == 12


async def test_concurrent_same_holder_takes_one_slot(store: ReservationStore) -> None:
    cands = [Candidate("a", 4), Candidate("b", 4)]
    got = await asyncio.gather(*(store.try_reserve(cands, "j1:1", lease_s=LONG) for _ in range(20)))
    assert set(got) == {"a"}
    assert await store.held_total() == 1


# --------------------------------------------------------------------------- property (memory)


def run_now(coro: Awaitable[T]) -> T:
    """Drive a coroutine that must finish without suspending (the memory store's promise)."""
    gen = coro.__await__()
    try:
        next(gen)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("MemoryStore suspended; its calls must be atomic on the event loop")


@dataclass
class Model:
    """The contract written as plainly as possible: leases[node][holder] = expiry."""

    now: float = 0.0
    leases: dict[str, dict[str, float]] = field(default_factory=dict)

    def live(self, node: str) -> dict[str, float]:
        held = self.leases.setdefault(node, {})
        for holder in [h for h, exp in held.items() if exp <= self.now]:
            del held[holder]
        return held

    def count(self, node: str) -> int:
        return len(self.live(node))

    def try_reserve(self, cands: list[Candidate], holder: str, lease: float) -> str | None:
        firsts: dict[str, tuple[int, Candidate]] = {}
        for pos, cand in enumerate(cands):
            firsts.setdefault(cand.node_id, (pos, cand))
        for _, cand in firsts.values():
            if holder in self.live(cand.node_id):
                held = self.live(cand.node_id)
                held[holder] = max(held[holder], self.now + lease)
                return cand.node_id
        free = [
            (cand.tier, self.count(cand.node_id), pos, cand.node_id)
            for pos, cand in firsts.values()
            if self.count(cand.node_id) < cand.capacity
        ]
        if not free:
            return None
        node = min(free)[3]
        self.live(node)[holder] = self.now + lease
        return node

    def release(self, node: str, holder: str) -> bool:
        return self.live(node).pop(holder, None) is not None

    def renew(self, leases: list[tuple[str, str]], lease: float) -> int:
        renewed = 0
        for node, holder in set(leases):
            held = self.live(node)
            if holder in held:
                held[holder] = max(held[holder], self.now + lease)
                renewed += 1
        return renewed


@dataclass(frozen=True)
class Reserve:
    cands: list[Candidate]
    holder: str
    lease: float


@dataclass(frozen=True)
class Release:
    node: str
    holder: str


@dataclass(frozen=True)
class Renew:
    leases: list[tuple[str, str]]
    lease: float


@dataclass(frozen=True)
class Tick:
    seconds: float


Op = Reserve | Release | Renew | Tick
NODES = ["a", "b", "c"]
node = st.sampled_from(NODES)
holder = st.sampled_from([f"h{i}" for i in range(5)])
candidate = st.builds(Candidate, node, st.integers(-1, 3), st.integers(0, 2))
# Lease and step lengths are binary fractions, so float sums on the clock stay exact.
ops = st.lists(
    st.one_of(
        st.builds(Reserve, st.lists(candidate, max_size=4), holder, st.sampled_from([0.5, 3.0])),
        st.builds(Release, node, holder),
        st.builds(
            Renew, st.lists(st.tuples(node, holder), max_size=4), st.sampled_from([0.5, 2.0])
        ),
        st.builds(Tick, st.sampled_from([0.25, 0.5, 1.0, 2.5])),
    ),
    max_size=40,
)


def check_reserve(store: MemoryStore, model: Model, op: Reserve) -> None:
    before = {n: model.count(n) for n in NODES}
    had = {n for n in NODES if op.holder in model.live(n)}
    got = run_now(store.try_reserve(op.cands, op.holder, lease_s=op.lease))
    assert got == model.try_reserve(op.cands, op.holder, op.lease)
    if got is not None and got not in had:
        # A new lease only ever lands where the capacity given *now* had room.
        cap = next(c.capacity for c in op.cands if c.node_id == got)
        assert before[got] < cap
        assert model.count(got) <= cap


@settings(max_examples=300, deadline=None)
@given(ops)
def test_memory_store_matches_model(ops: list[Op]) -> None:
    model = Model()
    store = MemoryStore(clock=lambda: model.now)
    for op in ops:
        match op:
            case Reserve():
                check_reserve(store, model, op)
            case Release(node, holder):
                assert run_now(store.release(node, holder)) is model.release(node, holder)
            case Renew(leases, lease):
                assert run_now(store.renew(leases, lease_s=lease)) == model.renew(leases, lease)
            case Tick(seconds):
                model.now += seconds
        assert run_now(store.reserved(NODES)) == {n: model.count(n) for n in NODES}
        assert run_now(store.held_total()) == sum(model.count(n) for n in NODES)
