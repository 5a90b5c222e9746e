"""Cross-instance jobs: frames between a session's instance and a node's instance.

Say a session on A is placed on a node held by B.  A's dispatch core sees the node as a
``RemoteNode`` peer: ``write`` hands ``job_assign`` (later ``job_cancel``) to B's inbox without
waiting (``ClusterStore.send_soon``: frames of one loop tick share one script call).  B's relay
reads its inbox, writes the frame to the node's socket and remembers, on the node's
connection, that the job is A's (``routes``).  The node's ``job_ack``, ``job_started``,
``asr_partial`` and ``job_result`` for that job are then sent to A's inbox by B's node channel
(``forward``); A's relay hands them to its dispatch core exactly as a local node's frames
(``DispatchDriver.result``, ``.ack``, ``.partial``).  The core itself is unchanged: it keeps
the one answer per utterance and its order, and it ignores a frame about an attempt that is
not current, so a result delivered twice changes nothing.

Duplicates: an inbox entry is handled once per entry id (a redelivered entry, after a restart
before its acknowledgement, is skipped), and a ``job_assign`` once per (job_id, attempt_id),
so a node never runs an attempt twice.  A frame that cannot be delivered (no such instance, or
the node has left its instance) goes to the dead-letter stream and is counted
(``switchboard_cluster_dead_letters_total``); the job it was about fails over as any job on a
vanished node does, when the node leaves the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec
from prometheus_client import CollectorRegistry, Counter

from switchboard.dispatch.driver import DispatchDriver
from switchboard.errors import ProtocolError, StoreError, StoreUnavailable
from switchboard.protocol import codec
from switchboard.protocol.messages import AsrPartial, JobAck, JobResult, JobStarted
from switchboard.store.cluster_values import InboxEntry, Outgoing

if TYPE_CHECKING:
    from switchboard.store.cluster import ClusterStore

log = logging.getLogger("switchboard.cluster")

TO_NODE: Final = "to_node"  # job_assign / job_cancel for a node held by the receiver
FROM_NODE: Final = "from_node"  # a node's frame about a job the receiver placed
DRAIN: Final = "drain"  # the operator drained, on another instance, a node held by the receiver
UNDRAIN: Final = "undrain"  # and undrained it
DEAD_REASONS: Final = (
    "no_instance",
    "instance_gone",
    "node_gone",
    "store_unavailable",
    "bad_frame",
    "unknown_kind",
)
SEEN_LIMIT: Final = 65_536  # remembered entry ids and assignments, for duplicates
READ_BLOCK_S: Final = 1.0
RETRY_S: Final = 0.5
STOP_WAIT_S: Final = 5.0  # a blocking read (1 s) and its store timeout, with room to spare


class LocalNode(Protocol):
    """A node's connection on this instance (``server.connections.NodeConnection``)."""

    node_id: str
    # job_id -> the instance that placed it, for jobs other instances placed here; None
    # until the first such job, so a lone instance's connections carry nothing.
    routes: dict[str, str] | None

    def write(self, frame: bytes) -> bool: ...


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel loop tasks and wait for them, a bounded time.  Their loops also stop on a flag:
    on Python 3.11 a cancellation that lands as an ``asyncio.timeout`` expires is turned into
    the timeout's error (fixed in 3.12), which a loop that retries on store errors would
    otherwise outlive."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=STOP_WAIT_S)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a loop that failed has been logged by its own except


class _Head(msgspec.Struct):
    """What the relay reads of a frame it passes to a node."""

    type: str = ""
    job_id: str = ""
    attempt_id: int = 0


_head = msgspec.json.Decoder(_Head)


class _Seen:
    """A bounded set: the oldest keys are forgotten first."""

    __slots__ = ("_keys", "_limit")

    def __init__(self, limit: int = SEEN_LIMIT) -> None:
        self._keys: OrderedDict[object, None] = OrderedDict()
        self._limit = limit

    def add(self, key: object) -> bool:
        """``True`` if new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return True


class RemoteNode:
    """A node held by another instance, as the dispatch core sees it (``NodePeer``)."""

    __slots__ = ("_relay", "node_id", "owner")

    def __init__(self, node_id: str, owner: str, relay: Relay) -> None:
        self.node_id = node_id
        self.owner = owner
        self._relay = relay

    def write(self, frame: bytes) -> bool:
        return self._relay.send(self.owner, TO_NODE, self.node_id, frame)


class Relay:
    def __init__(
        self,
        store: ClusterStore,
        instance_id: str,
        *,
        dispatcher: DispatchDriver,
        local_node: Callable[[str], LocalNode | None],
        registry: CollectorRegistry,
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self._dispatcher = dispatcher
        self._local_node = local_node
        self._seen_entries = _Seen()
        self._seen_assigns = _Seen()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._acks_owed = 0  # ack_soon calls not answered yet
        self._ack_failed = False
        self._acks_done: asyncio.Event | None = None  # set when none is owed, while stopping
        # Drains (True) or undrains (False) a local node for an operator on another instance.
        self.drain: Callable[[str, bool], Coroutine[Any, Any, None]] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        self.frames = Counter(
            "switchboard_cluster_frames",
            "Frames relayed between instances, by direction (out: sent to another instance)",
            ["direction"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "switchboard_cluster_dead_letters",
            "Frames that could not be delivered to another instance or its node, by reason",
            ["reason"],
            registry=registry,
        )
        self._sent_out = self.frames.labels("out")
        self._received = self.frames.labels("in")
        # Every reason from the first scrape on, at 0: a series born at its first increment
        # loses that increment in rate() and increase().
        for reason in DEAD_REASONS:
            self.dead_letters.labels(reason)

    # --- out ----------------------------------------------------------------------------------

    def peer(self, node_id: str, owner: str) -> RemoteNode:
        return RemoteNode(node_id, owner, self)

    def send(self, target: str, kind: str, node_id: str, frame: bytes) -> bool:
        """Hand a frame to ``target``'s inbox, now, without waiting (``NodePeer.write``)."""
        self._sent_out.inc()
        self._store.send_soon(
            [Outgoing(target, kind, node_id, self.instance_id, frame)], self._sent
        )
        return True

    def _sent(self, results: Sequence[bool] | None, error: BaseException | None) -> None:
        if error is not None or results is None:
            # Not even dead-lettered: Redis is unreachable (the reservations fail too).  The
            # job's timeout fails it over.
            self.dead_letters.labels("store_unavailable").inc()
            log.warning("a frame for another instance was not sent: %s", error)
        elif not results[0]:
            self.dead_letters.labels("no_instance").inc()

    def forward(self, node: LocalNode, job_id: str, frame: bytes, *, final: bool) -> bool:
        """A local node's frame about ``job_id``: to the instance that placed the job, if
        another did (``False``: the job is this instance's own).  ``final`` (``job_result``)
        forgets the route."""
        routes = node.routes
        if routes is None:
            return False
        origin = routes.pop(job_id, None) if final else routes.get(job_id)
        if origin is None:
            return False
        self.send(origin, FROM_NODE, node.node_id, frame)
        return True

    # --- in -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="cluster-inbox")

    async def stop(self) -> None:
        self._closing = True
        if self._reader is not None:
            await stop_tasks([self._reader])
        if self._acks_owed:  # handled entries are acknowledged before the store closes
            self._acks_done = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    await self._acks_done.wait()

    async def _read_loop(self) -> None:
        pending = True  # first what an earlier run of this instance left unacknowledged
        while not self._closing:
            try:
                if self._ack_failed:  # those entries are still pending: read them again
                    self._ack_failed, pending = False, True
                entries = await self._store.receive(
                    self.instance_id, block_s=READ_BLOCK_S, pending=pending
                )
                if pending and not entries:
                    pending = False
                    continue
                undeliverable = [(e, why) for e in entries if (why := self.handle(e))]
                for entry, why in undeliverable:
                    await self._store.dead_letter(entry, to=self.instance_id, reason=why)
                # Acknowledged without waiting: the next read goes out now, not a round trip
                # later (a frame arriving meanwhile would wait for it).
                self._acks_owed += 1
                self._store.ack_soon(self.instance_id, [e.entry_id for e in entries], self._acked)
            except StoreError as exc:
                if not isinstance(exc, StoreUnavailable):
                    log.error("cluster inbox: %s", exc)
                pending = True
                await asyncio.sleep(RETRY_S)

    def _acked(self, error: StoreError | None) -> None:
        self._acks_owed -= 1
        if error is not None:
            self._ack_failed = True
            if not isinstance(error, StoreUnavailable):
                log.error("cluster inbox: acknowledging: %s", error)
        if self._acks_owed == 0 and self._acks_done is not None:
            self._acks_done.set()

    def handle(self, entry: InboxEntry) -> str | None:
        """Handle one inbox entry; the reason it could not be delivered, if it could not."""
        if not self._seen_entries.add(entry.entry_id):
            return None
        self._received.inc()
        if entry.kind == TO_NODE:
            why = self._to_node(entry)
        elif entry.kind == FROM_NODE:
            why = self._from_node(entry)
        elif entry.kind in (DRAIN, UNDRAIN):
            why = self._drain(entry.node_id, on=entry.kind == DRAIN)
        else:
            why = "unknown_kind"
        if why is not None:
            self.dead_letters.labels(why).inc()
        return why

    def _to_node(self, entry: InboxEntry) -> str | None:
        node = self._local_node(entry.node_id)
        if node is None:
            return "node_gone"  # its leaving reaches the sender, which fails the job over
        try:
            head = _head.decode(entry.frame)
        except msgspec.DecodeError:
            return "bad_frame"
        if head.type == "job_assign":
            if not self._seen_assigns.add((head.job_id, head.attempt_id)):
                return None  # this attempt went to the node already
            if node.routes is None:
                node.routes = {}
            node.routes[head.job_id] = entry.origin
        elif head.type == "job_cancel" and node.routes is not None:
            node.routes.pop(head.job_id, None)
        return None if node.write(entry.frame) else "node_gone"

    def _drain(self, node_id: str, *, on: bool) -> str | None:
        if self._local_node(node_id) is None or self.drain is None:
            return "node_gone"
        task = asyncio.get_running_loop().create_task(self.drain(node_id, on))
        self._draining.add(task)  # referenced until done: the loop holds tasks weakly
        task.add_done_callback(self._draining.discard)
        return None

    def _from_node(self, entry: InboxEntry) -> str | None:
        try:
            msg = codec.decode_node(entry.frame)
        except ProtocolError:
            return "bad_frame"
        node_id, dispatcher = entry.node_id, self._dispatcher
        match msg:
            case JobResult():
                dispatcher.result(node_id, msg, entry.frame)
            case JobAck() | JobStarted():
                dispatcher.ack(node_id, msg)
            case AsrPartial():
                dispatcher.partial(node_id, msg, entry.frame)
            case _:
                return "unknown_kind"
        return None
