"""The cluster's Redis side (store/cluster.py) on a real redis-server: presence, the node view
and its change stream, inboxes (acknowledged, redelivered, dead-lettered) and the forgetting
of a dead instance; then the relay's handling of inbox entries (cluster/relay.py): duplicates
are harmless and what cannot be delivered is dead-lettered and counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from switchboard.cluster.relay import FROM_NODE, TO_NODE, Relay
from switchboard.dispatch.driver import DispatchDriver
from switchboard.errors import StoreUnavailable
from switchboard.protocol import codec
from switchboard.store.cluster import ClusterStore
from switchboard.store.cluster_values import Outgoing
from switchboard.tools.procs import free_port
from tests.conftest import unique_namespace

if TYPE_CHECKING:
    from switchboard.tools.procs import RedisClusterProcess
    from tests.conftest import RedisServer

pytestmark = pytest.mark.redis

TTL = 30.0  # long: nothing here expires unless a test withdraws it


@pytest.fixture(params=["redis", "redis-cluster"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[ClusterStore]:
    """The cluster store on one Redis and on a 3-shard Redis Cluster (its sharded layout)."""
    fixture = "redis_cluster" if request.param == "redis-cluster" else "redis_server"
    server: RedisServer | RedisClusterProcess = request.getfixturevalue(fixture)
    store = ClusterStore.from_url(server.url, namespace=unique_namespace(), block_s=0.2)
    try:
        yield store
    finally:
        await store.close()


def frame(n: int) -> bytes:
    return b'{"type":"job_result","n":%d}' % n


async def present(store: ClusterStore, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        await store.announce(instance_id, f'{{"instance_id":"{instance_id}"}}', ttl_s=TTL)
        await store.open_inbox(instance_id)


# --- presence --------------------------------------------------------------------------------


async def test_announce_says_whether_the_presence_was_still_there(cluster: ClusterStore) -> None:
    assert await cluster.announce("a", "{}", ttl_s=TTL) is False  # the first announce
    assert await cluster.announce("a", '{"n":1}', ttl_s=TTL) is True
    await cluster.withdraw("a")
    assert await cluster.instances() == {"a": None}  # listed, presence gone
    assert await cluster.announce("a", "{}", ttl_s=TTL) is False


async def test_a_presence_expires_with_its_ttl(cluster: ClusterStore) -> None:
    await cluster.announce("a", "{}", ttl_s=0.05)
    await cluster.announce("b", "{}", ttl_s=TTL)

    async def expired() -> bool:
        return (await cluster.instances())["a"] is None

    for _ in range(100):
        if await expired():
            break
        await asyncio.sleep(0.02)
    assert await cluster.instances() == {"a": None, "b": "{}"}


# --- the node view -------------------------------------------------------------------------


async def test_the_view_and_the_changes_after_it_are_exact(cluster: ClusterStore) -> None:
    """A view read at change X plus the changes after X is the current view."""
    await cluster.put_node("a", "n1", "r1")
    after, records, owners = await cluster.view()
    assert records == {"n1": "r1"} and owners == {"n1": "a"}
    await cluster.put_node("b", "n2", "r2")
    await cluster.put_node("a", "n1", "r1'")
    assert await cluster.drop_node("a", "n1")
    changes = await cluster.changes(after, block_s=0.05)
    assert [(c.op, c.node_id, c.owner, c.record) for c in changes] == [
        ("put", "n2", "b", "r2"),
        ("put", "n1", "a", "r1'"),
        ("drop", "n1", "a", None),
    ]
    assert await cluster.changes(changes[-1].change_id, block_s=0.05) == []
    _, records, owners = await cluster.view()
    assert records == {"n2": "r2"} and owners == {"n2": "b"}


async def test_only_the_owner_drops_a_node(cluster: ClusterStore) -> None:
    """A node that moved to b is not dropped by a's late goodbye."""
    await cluster.put_node("a", "n1", "r-a")
    await cluster.put_node("b", "n1", "r-b")
    assert not await cluster.drop_node("a", "n1")
    _, records, owners = await cluster.view()
    assert records == {"n1": "r-b"} and owners == {"n1": "b"}


async def test_a_blocked_read_returns_a_new_change_at_once(cluster: ClusterStore) -> None:
    after, _, _ = await cluster.view()
    reader = asyncio.create_task(cluster.changes(after, block_s=5.0))
    await asyncio.sleep(0.05)
    await cluster.put_node("a", "n1", "r1")
    changes = await asyncio.wait_for(reader, 2.0)  # long before the 5 s block
    assert [c.node_id for c in changes] == ["n1"]


# --- inboxes ----------------------------------------------------------------------------------


async def test_frames_arrive_in_order_and_acknowledged_ones_are_gone(
    cluster: ClusterStore,
) -> None:
    await present(cluster, "a", "b")
    sent = [Outgoing("b", FROM_NODE, "n1", "a", frame(i)) for i in range(3)]
    assert await cluster.send(sent) == [True, True, True]
    entries = await cluster.receive("b", block_s=0.05)
    assert [e.frame for e in entries] == [frame(0), frame(1), frame(2)]
    assert {(e.kind, e.node_id, e.origin) for e in entries} == {(FROM_NODE, "n1", "a")}
    await cluster.ack("b", [e.entry_id for e in entries])
    assert await cluster.receive("b", block_s=0.05, pending=True) == []
    assert await cluster.receive("b", block_s=0.05) == []


async def test_unacknowledged_entries_are_delivered_again(cluster: ClusterStore) -> None:
    """A reader that died before its acknowledgement gets the entries again (its pending
    entries), and only those: a new read gets only new ones."""
    await present(cluster, "a", "b")
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", frame(1))])
    first = await cluster.receive("b", block_s=0.05)
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", frame(2))])
    again = await cluster.receive("b", block_s=0.05, pending=True)
    assert [e.entry_id for e in again] == [e.entry_id for e in first]
    new = await cluster.receive("b", block_s=0.05)
    assert [e.frame for e in new] == [frame(2)]
    await cluster.ack("b", [e.entry_id for e in (*first, *new)])
    assert await cluster.receive("b", block_s=0.05, pending=True) == []


async def test_an_entry_deleted_while_pending_is_skipped(cluster: ClusterStore) -> None:
    """A pending entry whose stream entry is gone (deleted, trimmed) comes back without its
    fields: nothing to hand over, and the others still are."""
    await present(cluster, "a", "b")
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", frame(i)) for i in range(2)])
    first, second = await cluster.receive("b", block_s=0.05)
    # XDEL alone (the store's own client): the entry stays pending, without its fields.
    await cluster._client.xdel(cluster.keys.inbox("b"), first.entry_id)
    again = await cluster.receive("b", block_s=0.05, pending=True)
    assert [(e.entry_id, e.frame) for e in again] == [(second.entry_id, frame(1))]


async def test_a_read_given_up_takes_nothing_from_the_next(cluster: ClusterStore) -> None:
    """A blocking read whose caller left (stopped, timed out) must not stay blocked in Redis,
    where it would take the next entry for nobody."""
    await present(cluster, "a", "b")
    left = asyncio.create_task(cluster.receive("b", block_s=5.0))
    await asyncio.sleep(0.05)  # blocked in Redis by now
    left.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await left
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", frame(1))])
    assert [e.frame for e in await cluster.receive("b", block_s=0.5)] == [frame(1)]


async def test_acknowledging_soon_calls_back_once_done(cluster: ClusterStore) -> None:
    await present(cluster, "a", "b")
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", frame(i)) for i in range(3)])
    entries = await cluster.receive("b", block_s=0.05)
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    cluster.ack_soon("b", [e.entry_id for e in entries], done.set_result)
    assert await asyncio.wait_for(done, 2.0) is None
    assert await cluster.receive("b", block_s=0.05, pending=True) == []


async def test_a_frame_for_an_absent_instance_is_dead_lettered(cluster: ClusterStore) -> None:
    await present(cluster, "a", "b")
    results = await cluster.send(
        [
            Outgoing("b", FROM_NODE, "n1", "a", frame(1)),
            Outgoing("ghost", TO_NODE, "n9", "a", frame(2)),
        ]
    )
    assert results == [True, False]
    (letter,) = await cluster.dead_letters()
    assert letter.fields["reason"] == "no_instance"
    assert (letter.fields["to"], letter.fields["node"], letter.fields["frame"]) == (
        "ghost",
        "n9",
        frame(2).decode(),
    )


async def test_forgetting_a_dead_instance_drops_its_nodes_and_dead_letters_its_inbox(
    cluster: ClusterStore,
) -> None:
    await present(cluster, "a", "b")
    await cluster.put_node("a", "n1", "r1")
    await cluster.put_node("b", "n2", "r2")
    await cluster.send([Outgoing("a", TO_NODE, "n1", "b", frame(i)) for i in range(2)])
    assert await cluster.forget("a") is None  # still present: nothing done
    await cluster.withdraw("a")
    assert await cluster.forget("a") == (1, 2)
    assert await cluster.forget("a") == (0, 0)  # a second survivor finds nothing left
    _, records, _ = await cluster.view()
    assert records == {"n2": "r2"}
    assert await cluster.instances() == {"b": f'{{"instance_id":"{"b"}"}}'}
    letters = await cluster.dead_letters()
    assert [(d.fields["reason"], d.fields["frame"]) for d in letters] == [
        ("instance_gone", frame(0).decode()),
        ("instance_gone", frame(1).decode()),
    ]


async def test_a_forgotten_reader_gets_its_inbox_back(cluster: ClusterStore) -> None:
    """An instance forgotten while it was away (its inbox deleted) reads on."""
    await present(cluster, "a", "b")
    await cluster.withdraw("b")
    await cluster.forget("b")
    assert await cluster.receive("b", block_s=0.05) == []
    await present(cluster, "b")
    await cluster.send([Outgoing("b", FROM_NODE, "n1", "a", frame(1))])
    assert [e.frame for e in await cluster.receive("b", block_s=0.05)] == [frame(1)]


async def test_an_unreachable_redis_is_store_unavailable() -> None:
    store = ClusterStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        with pytest.raises(StoreUnavailable):
            await store.announce("a", "{}", ttl_s=TTL)
        with pytest.raises(StoreUnavailable):
            await store.send([Outgoing("b", FROM_NODE, "n", "a", frame(1))])
    finally:
        await store.close()


# --- the relay's inbox ---------------------------------------------------------------------------


class NodeSocket:
    """The write side of a node's connection (``relay.LocalNode``)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.routes: dict[str, str] | None = None
        self.written: list[bytes] = []
        self.open = True

    def write(self, frame: bytes) -> bool:
        if self.open:
            self.written.append(frame)
        return self.open


def assign(job_id: str, attempt: int) -> bytes:
    return codec.encode(
        {"type": "job_assign", "job_id": job_id, "attempt_id": attempt, "session_id": "s"}
    )


def relay_for(
    store: ClusterStore, instance_id: str, nodes: dict[str, NodeSocket]
) -> tuple[Relay, CollectorRegistry]:
    registry = CollectorRegistry()
    # The relay hands a node's frames to dispatch; these tests send none the other way.
    dispatcher: DispatchDriver = None  # type: ignore[assignment]
    relay = Relay(
        store, instance_id, dispatcher=dispatcher, local_node=nodes.get, registry=registry
    )
    return relay, registry


def dead_count(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("switchboard_cluster_dead_letters_total", {"reason": reason})
    return value or 0.0


async def test_relay_writes_each_attempt_once_and_routes_its_answers_back(
    cluster: ClusterStore,
) -> None:
    """A job_assign delivered twice (a redelivered entry, a second send of the same attempt)
    reaches the node once; the node's answer goes back to the job's instance."""
    await present(cluster, "a", "b")
    node = NodeSocket("n1")
    relay, _ = relay_for(cluster, "b", {"n1": node})
    relay.start()
    try:
        await cluster.send([Outgoing("b", TO_NODE, "n1", "a", assign("job-1", 1))] * 2)
        await cluster.send([Outgoing("b", TO_NODE, "n1", "a", assign("job-1", 2))])
        for _ in range(200):
            owed = await cluster.receive("b", block_s=0.01, pending=True)
            if len(node.written) == 2 and not owed:  # written, and all acknowledged
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    assert await cluster.receive("b", block_s=0.01, pending=True) == []
    assert node.written == [assign("job-1", 1), assign("job-1", 2)]
    assert node.routes == {"job-1": "a"}
    # The same entry again (as after a crash before the acknowledgement): nothing happens.
    await cluster.send([Outgoing("b", TO_NODE, "n1", "a", assign("job-1", 1))])
    (again,) = await cluster.receive("b", block_s=0.05)
    assert relay.handle(again) is None and relay.handle(again) is None
    assert len(node.written) == 2
    # The node's result: to a's inbox, and the route is forgotten.
    result = b'{"type":"job_result","job_id":"job-1","attempt_id":2}'
    assert relay.forward(node, "job-1", result, final=True)
    assert not relay.forward(node, "job-1", result, final=True)  # not a's any more
    await asyncio.sleep(0.05)
    (back,) = await cluster.receive("a", block_s=0.5)
    assert (back.kind, back.node_id, back.origin, back.frame) == (FROM_NODE, "n1", "b", result)


async def test_a_stopped_relay_has_acknowledged_what_it_wrote(cluster: ClusterStore) -> None:
    """The relay acknowledges without waiting; stopping waits for those acknowledgements, so
    a restart does not get back entries that reached the node."""
    await present(cluster, "a", "b")
    node = NodeSocket("n1")
    relay, _ = relay_for(cluster, "b", {"n1": node})
    relay.start()
    try:
        await cluster.send(
            [Outgoing("b", TO_NODE, "n1", "a", assign(f"job-{i}", 1)) for i in range(5)]
        )
        for _ in range(200):
            if len(node.written) == 5:
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()  # at once: no poll for the acknowledgements first
    assert len(node.written) == 5
    assert await cluster.receive("b", block_s=0.01, pending=True) == []


async def test_relay_dead_letters_a_frame_for_a_node_that_left(cluster: ClusterStore) -> None:
    await present(cluster, "a", "b")
    closed = NodeSocket("n2")
    closed.open = False
    relay, metrics = relay_for(cluster, "b", {"n2": closed})
    relay.start()
    try:
        await cluster.send(
            [
                Outgoing("b", TO_NODE, "n1", "a", assign("job-1", 1)),  # not here at all
                Outgoing("b", TO_NODE, "n2", "a", assign("job-2", 1)),  # socket closed
            ]
        )
        for _ in range(200):
            if len(await cluster.dead_letters()) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await relay.stop()
    letters = await cluster.dead_letters()
    assert [(d.fields["reason"], d.fields["node"]) for d in letters] == [
        ("node_gone", "n1"),
        ("node_gone", "n2"),
    ]
    assert dead_count(metrics, "node_gone") == 2


async def test_relay_counts_a_frame_sent_to_an_absent_instance(cluster: ClusterStore) -> None:
    await present(cluster, "a")
    relay, metrics = relay_for(cluster, "a", {})
    assert relay.send("ghost", TO_NODE, "n1", assign("job-1", 1))  # never blocks, never fails
    for _ in range(200):
        if dead_count(metrics, "no_instance") == 1:
            break
        await asyncio.sleep(0.01)
    assert dead_count(metrics, "no_instance") == 1
    assert [d.fields["reason"] for d in await cluster.dead_letters()] == ["no_instance"]
