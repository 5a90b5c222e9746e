"""Reserving and handing ``job_assign`` over in one step (``try_reserve_send_many.lua``,
``RedisStore.reserve_handing_soon``) on a real redis-server.

The choice must be ``try_reserve_many.lua``'s on the same leases and requests (a property test
runs both scripts on twin namespaces), and the frame must land exactly as
``cluster_send.lua`` would put it: in the owner's inbox with the same fields, or, with the
owner's presence gone, in the dead-letter stream; once per reservation, a retry included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.store.base import (
    DEAD_LETTERED,
    HANDED,
    HANDED_BEFORE,
    NOT_HANDED,
    Candidate,
    HandingStore,
    Handoff,
    awaited,
)
from switchboard.store.cluster import ClusterStore
from switchboard.store.cluster_values import TO_NODE, Outgoing
from switchboard.store.keys import StoreKeys
from switchboard.store.redis_store import RedisStore, _load_lua
from tests.conftest import unique_namespace

if TYPE_CHECKING:
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

LONG = 60.0
FAR = 1 << 50  # a lease expiry far in the future (ms)
TTL = 30.0


@dataclass
class Pair:
    """A reservation store and the cluster store of one namespace."""

    store: RedisStore
    cluster: ClusterStore


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[Pair]:
    namespace = unique_namespace()
    store = RedisStore.from_url(redis_server.url, namespace=namespace)
    cluster = ClusterStore.from_url(redis_server.url, namespace=namespace, block_s=0.2)
    try:
        yield Pair(store, cluster)
    finally:
        await store.close()
        await cluster.close()


async def present(cluster: ClusterStore, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        await cluster.announce(instance_id, "{}", ttl_s=TTL)
        await cluster.open_inbox(instance_id)


def assign(n: int) -> bytes:
    return b'{"type":"job_assign","job_id":"j%d","attempt_id":1}' % n


async def reserve_handing(
    store: RedisStore, cands: list[Candidate], holder: str, handoff: Handoff
) -> str | None:
    (node,) = await awaited(store.reserve_handing_soon, cands, holder, handoff, lease_s=LONG)
    return node  # type: ignore[no-any-return]


async def test_the_redis_store_hands_off_on_one_redis(pair: Pair) -> None:
    assert isinstance(pair.store, HandingStore)
    assert pair.store.hands_off


def test_a_redis_cluster_store_does_not_hand_off() -> None:
    """On a Redis Cluster the inbox and the lease are in different slots: two steps stay."""
    store = RedisStore.from_url("redis+cluster://127.0.0.1:1")  # nothing connects
    assert not store.hands_off


async def test_a_remote_node_chosen_gets_the_frame_in_its_owners_inbox(pair: Pair) -> None:
    await present(pair.cluster, "a", "b")
    handoff = Handoff(assign(1), "a", TO_NODE, {"nb": "b"})
    node = await reserve_handing(pair.store, [Candidate("nb", 2)], "j1:1", handoff)
    assert node == "nb"
    assert handoff.status == HANDED
    # The same entry as cluster_send.lua writes (relay.send): compare field for field.
    await pair.cluster.send([Outgoing("b", TO_NODE, "nb", "a", assign(1))])
    fused, sent = await pair.cluster.receive("b", block_s=0.2)
    assert (fused.kind, fused.node_id, fused.origin, fused.frame) == (
        sent.kind,
        sent.node_id,
        sent.origin,
        sent.frame,
    )
    assert (fused.kind, fused.node_id, fused.origin, fused.frame) == (TO_NODE, "nb", "a", assign(1))
    assert await pair.store.reserved(["nb"]) == {"nb": 1}


async def test_an_owner_whose_presence_is_gone_gets_a_dead_letter(pair: Pair) -> None:
    await present(pair.cluster, "a", "b")
    await pair.cluster.withdraw("b")
    handoff = Handoff(assign(2), "a", TO_NODE, {"nb": "b"})
    assert await reserve_handing(pair.store, [Candidate("nb", 2)], "j2:1", handoff) == "nb"
    assert handoff.status == DEAD_LETTERED
    assert await pair.cluster.receive("b", block_s=0.05) == []
    (dead,) = await pair.cluster.dead_letters()
    # cluster_send.lua's dead letter, field for field.
    await pair.cluster.send([Outgoing("b", TO_NODE, "nb", "a", assign(2))])
    _, by_send = await pair.cluster.dead_letters()
    assert dead.fields == by_send.fields
    assert dead.fields["reason"] == "no_instance"
    assert dead.fields["to"] == "b"
    # The lease is taken all the same: the job fails over, and releases it, as today.
    assert await pair.store.reserved(["nb"]) == {"nb": 1}


async def test_a_local_node_chosen_hands_nothing_over(pair: Pair) -> None:
    await present(pair.cluster, "a", "b")
    handoff = Handoff(assign(3), "a", TO_NODE, {"nb": "b"})
    # The local node (no owner) is emptier: the usual rule chooses it.
    await pair.store.try_reserve([Candidate("nb", 4)], "other:1", lease_s=LONG)
    cands = [Candidate("nb", 4), Candidate("na", 4)]
    assert await reserve_handing(pair.store, cands, "j3:1", handoff) == "na"
    assert handoff.status == NOT_HANDED
    assert await pair.cluster.receive("b", block_s=0.05) == []
    assert await pair.cluster.dead_letters() == []


async def test_no_room_hands_nothing_over(pair: Pair) -> None:
    await present(pair.cluster, "a", "b")
    await pair.store.try_reserve([Candidate("nb", 1)], "other:1", lease_s=LONG)
    handoff = Handoff(assign(4), "a", TO_NODE, {"nb": "b"})
    assert await reserve_handing(pair.store, [Candidate("nb", 1)], "j4:1", handoff) is None
    assert handoff.status == NOT_HANDED
    assert await pair.cluster.receive("b", block_s=0.05) == []


async def test_a_repeated_reservation_hands_the_frame_over_once(pair: Pair) -> None:
    """A retry after a lost connection runs the script again: the holder holds its lease
    already, and the inbox gets no second copy (one delivery per job and attempt)."""
    await present(pair.cluster, "a", "b")
    first = Handoff(assign(5), "a", TO_NODE, {"nb": "b"})
    again = Handoff(assign(5), "a", TO_NODE, {"nb": "b"})
    assert await reserve_handing(pair.store, [Candidate("nb", 2)], "j5:1", first) == "nb"
    assert await reserve_handing(pair.store, [Candidate("nb", 2)], "j5:1", again) == "nb"
    assert (first.status, again.status) == (HANDED, HANDED_BEFORE)
    entries = await pair.cluster.receive("b", block_s=0.2)
    assert [e.frame for e in entries] == [assign(5)]
    assert await pair.store.reserved(["nb"]) == {"nb": 1}


async def test_handing_and_plain_reservations_of_one_tick_share_one_script(pair: Pair) -> None:
    """Batching holds: plain and handing reservations made together run in order, in one
    call, each answered as it would be alone."""
    await present(pair.cluster, "a", "b", "c")
    plain = pair.store.try_reserve_many([([Candidate("nb", 1)], "p:1")], lease_s=LONG)
    handoffs = [Handoff(assign(i), "a", TO_NODE, {"nb": "b", "nc": "c"}) for i in range(6, 9)]
    cands = [Candidate("nb", 1), Candidate("nc", 2)]
    handing = [
        reserve_handing(pair.store, cands, f"j{i}:1", h)
        for i, h in zip(range(6, 9), handoffs, strict=True)
    ]
    results = await asyncio.gather(plain, *handing)
    # The plain one fills nb first (it was submitted first); then nc twice; then nothing.
    assert results == [["nb"], "nc", "nc", None]
    assert [h.status for h in handoffs] == [HANDED, HANDED, NOT_HANDED]
    assert await pair.cluster.receive("b", block_s=0.05) == []
    got = await pair.cluster.receive("c", block_s=0.2)
    assert [(e.node_id, e.frame) for e in got] == [("nc", assign(6)), ("nc", assign(7))]


# --- the choice is try_reserve_many's: a property test on twin namespaces --------------------

NODES = ["n0", "n1", "n2", "n3"]
OWNERS = ["x", "y"]  # x is present, y is not
node = st.sampled_from(NODES)


@dataclass(frozen=True)
class Request:
    cands: list[Candidate]
    holder: str
    frame: bool  # carries a frame to hand over


@dataclass(frozen=True)
class Case:
    leases: dict[str, list[tuple[str, bool]]]  # node -> (holder, live) before the batch
    owners: dict[str, str]  # node -> owner, for the remote ones
    requests: list[Request]


cases = st.builds(
    Case,
    st.dictionaries(
        node,
        st.lists(st.tuples(st.sampled_from(["h0", "h1", "o1", "o2", "o3"]), st.booleans())),
    ),
    st.dictionaries(node, st.sampled_from(OWNERS)),
    st.lists(
        st.builds(
            Request,
            st.lists(st.builds(Candidate, node, st.integers(0, 3), st.integers(0, 2)), max_size=5),
            st.sampled_from(["h0", "h1", "h2", "h3"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
)


@pytest.fixture(scope="module")
def sync_redis(redis_server: RedisServer) -> Iterator[redis.Redis[str]]:
    client: redis.Redis[str] = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _seed(client: redis.Redis[str], keys: StoreKeys, case: Case) -> None:
    for node_id, leases in case.leases.items():
        for holder, live in leases:
            client.zadd(keys.slots(node_id), {holder: FAR if live else 1})
    client.set(keys.presence("x"), "{}")


def _slots(client: redis.Redis[str], keys: StoreKeys) -> dict[str, list[str]]:
    return {n: sorted(client.zrange(keys.slots(n), 0, -1)) for n in NODES}


def _entries(client: redis.Redis[str], stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream)]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cases)
def test_the_fused_choice_is_try_reserve_manys(sync_redis: redis.Redis[str], case: Case) -> None:
    plain_ns, fused_ns = unique_namespace(), unique_namespace()
    plain_store = RedisStore.from_url("redis://127.0.0.1:1", namespace=plain_ns)
    fused_store = RedisStore.from_url("redis://127.0.0.1:1", namespace=fused_ns)
    plain_keys, fused_keys = StoreKeys(plain_ns), StoreKeys(fused_ns)
    _seed(sync_redis, plain_keys, case)
    _seed(sync_redis, fused_keys, case)
    lease_ms = 60_000
    handoffs = [
        Handoff(b"frame-%d" % i, "me", TO_NODE, case.owners) if r.frame else None
        for i, r in enumerate(case.requests)
    ]
    requests = [
        (tuple(r.cands), r.holder, lease_ms, h)
        for r, h in zip(case.requests, handoffs, strict=True)
    ]
    keys, args = plain_store._reserve_call(plain_keys.nodes, requests)
    plain: Any = sync_redis.eval(_load_lua("try_reserve_many"), len(keys), *keys, *args)
    keys, args = fused_store._reserve_send_call(requests)
    fused: Any = sync_redis.eval(_load_lua("try_reserve_send_many"), len(keys), *keys, *args)

    assert fused[0::2] == plain
    assert _slots(sync_redis, fused_keys) == _slots(sync_redis, plain_keys)
    assert sorted(sync_redis.smembers(fused_keys.nodes)) == sorted(
        sync_redis.smembers(plain_keys.nodes)
    )
    # What was handed over, and where: exactly the granted remote nodes, once each.
    inbox: list[dict[str, str]] = []
    dead: list[dict[str, str]] = []
    held_before = {(n, h) for n, leases in case.leases.items() for h, live in leases if live}
    granted: set[tuple[str, str]] = set()
    for i, (request, chosen, status) in enumerate(
        zip(case.requests, fused[0::2], fused[1::2], strict=True)
    ):
        owner = case.owners.get(chosen) if chosen else None
        frame = f"frame-{i}"
        if not request.frame or owner is None:
            assert status == NOT_HANDED
        elif (chosen, request.holder) in held_before | granted:
            assert status == HANDED_BEFORE
        elif owner == "x":
            assert status == HANDED
            inbox.append({"kind": TO_NODE, "node": chosen, "origin": "me", "frame": frame})
        else:
            assert status == DEAD_LETTERED
            dead.append(
                {
                    "reason": "no_instance",
                    "to": owner,
                    "kind": TO_NODE,
                    "node": chosen,
                    "origin": "me",
                    "frame": frame,
                }
            )
        if chosen:
            granted.add((chosen, request.holder))
    assert _entries(sync_redis, fused_keys.inbox("x")) == inbox
    assert _entries(sync_redis, fused_keys.inbox("y")) == []
    assert _entries(sync_redis, fused_keys.dead_letters) == dead
