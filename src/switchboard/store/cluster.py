"""The Redis side of a cluster of instances on one namespace (docs/scale-out.md).

Three things, all under the namespace's hash tag (``keys.py``) on one Redis; on a Redis Cluster
an instance's presence and inbox live under its own tag, so sending and forgetting run there
as one-slot steps (``_send_apart``, ``_forget_apart``, docs/scale-out.md "Redis Cluster"):

* **Presence**: each instance writes its presence key with a TTL and refreshes it; a listing
  of instances is the sorted set of ids plus one ``MGET`` of their presence keys.  An id whose
  key has expired is an instance that died: any survivor may *forget* it (one script: drop
  its nodes, dead-letter its inbox, take it off the list).
* **The node view**: a hash of node records (and one of their owners) plus a change stream.
  Every put or drop of a record is one script that writes the hash and appends the change, so
  a reader that read the hash at change id X is exact once it has applied the changes after
  X.  Readers are plain ``XREAD``s (every instance reads every change; no consumer group).
* **Inboxes**: one stream per instance, read by a consumer group (the instance is its one
  consumer), entries acknowledged and deleted once handled, so the stream holds only what is
  unread or unacknowledged; a restarted reader gets its unacknowledged entries again.  A
  frame for an instance that is not present goes to the dead-letter stream instead.

Sending is the hot path of a cross-instance job: ``send_soon`` never waits, frames sent in the
same loop tick share one script call on a pipelined connection (``batching.py``,
``pipelined.py``), as reservations do.  Everything else goes through redis-py, bounded by the
store timeout, with failures translated as the reservation store translates them
(``StoreUnavailable``, ``StoreError``).  The blocking reads use a client of their own whose
socket timeout covers the block.

Receiving is the other half of that hot path, and it is kept as short: on one Redis the inbox
is read over a pipelined connection of its own (hiredis parses the reply: redis-py's per-call
cost sat between the wake-up and the write to the node, benchmarks/micro/CROSS.md), and
handled entries are acknowledged without waiting (``ack_soon``), so the next blocking read is
on the wire as soon as the last batch is handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from switchboard.errors import StoreError
from switchboard.store import pipelined
from switchboard.store.base import Outcome, _then, awaited
from switchboard.store.batching import Batcher
from switchboard.store.cluster_values import DeadLetter, InboxEntry, NodeChange, Outgoing
from switchboard.store.keys import DEFAULT_NAMESPACE, StoreKeys
from switchboard.store.redis_store import (
    AnyRedis,
    _config_errors,
    _HotCall,
    _load_lua,
    bounded,
    client_from_url,
    hot_client,
)

T = TypeVar("T")
GROUP: Final = "switchboard"
CHANGES_BOUND: Final = 10_000  # entries kept on the change stream (approximately)
INBOX_BOUND: Final = 100_000  # a backstop only: handled entries are deleted at once
DEAD_BOUND: Final = 10_000


class ClusterStore:
    """Presence, the node view and inboxes for one namespace; see the module docstring."""

    def __init__(
        self,
        client: AnyRedis,
        blocking: AnyRedis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 1.0,
        block_s: float = 1.0,
    ) -> None:
        """``client`` for bounded calls, ``blocking`` for the blocking reads (its socket
        timeout must exceed the longest block, ``block_s``); both ``decode_responses=True``."""
        self._client = client
        self._blocking = blocking
        self._keys = StoreKeys(namespace, sharded=isinstance(client, RedisCluster))
        self._timeout_s = timeout_s
        self._hot = hot_client(client, timeout_s=timeout_s)
        # The inbox's blocking reads on one Redis: a connection of their own (a read blocks
        # it), silent at most a block and the timeout before it counts as stalled.  On a
        # Cluster they stay on redis-py's cluster client, which finds the inbox's shard.
        self._inbox_endpoint: pipelined.Endpoint | None = None
        self._inbox_reader: pipelined.PipelinedClient | None = None
        self._inbox_stall_s = timeout_s + block_s
        if isinstance(blocking, Redis):
            self._inbox_endpoint = pipelined.Endpoint.of_pool(blocking.connection_pool)
            self._inbox_reader = self._new_inbox_reader()
        self._inbox_busy = False  # a read on it is owed its reply
        self._closing: set[asyncio.Task[None]] = set()  # inbox readers left behind, closing
        self._ack_script = pipelined.Script(_load_lua("cluster_ack"))
        self._send_script = pipelined.Script(_load_lua("cluster_send"))
        # Redis Cluster: an instance's presence and inbox live under its own hash tag, the
        # view and the dead letters under the namespace's (keys.py), so sending and forgetting
        # are split into one-slot steps.
        self._send_to = pipelined.Script(_load_lua("cluster_send_to"))
        self._forget_inbox = client.register_script(_load_lua("cluster_forget_inbox"))
        self._forget_view = client.register_script(_load_lua("cluster_forget_view"))
        self._sender: Batcher[Outgoing, bool] = Batcher(self._send_many)
        self._put = client.register_script(_load_lua("cluster_put_node"))
        self._drop = client.register_script(_load_lua("cluster_drop_node"))
        self._forget = client.register_script(_load_lua("cluster_forget"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 1.0,
        block_s: float = 1.0,
    ) -> ClusterStore:
        return _config_errors(
            url,
            lambda: cls(
                client_from_url(url, max_connections=8, timeout_s=timeout_s),
                client_from_url(url, max_connections=4, timeout_s=timeout_s + block_s),
                namespace=namespace,
                timeout_s=timeout_s,
                block_s=block_s,
            ),
        )

    @property
    def keys(self) -> StoreKeys:
        return self._keys

    async def _call(self, op: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        async def ready_then() -> T:
            if isinstance(self._blocking, RedisCluster):  # as ``bounded`` does for the other
                await self._blocking.initialize()
            return await op()

        return await bounded(ready_then, self._timeout_s + extra_s, client=self._client)

    # --- presence ---------------------------------------------------------------------------

    async def announce(self, instance_id: str, presence: str, *, ttl_s: float) -> bool:
        """Write this instance's presence with a TTL; ``True`` if it was still there (so
        ``False`` on the first announce, and after the others may have forgotten us)."""
        keys = self._keys

        async def run() -> Any:
            if self._keys.sharded:  # the presence and the list live in different slots
                return await self._announce_apart(instance_id, presence, ttl_s=ttl_s)
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(
                    keys.presence(instance_id), presence, px=max(1, int(ttl_s * 1000)), get=True
                )
                pipe.time()
                old, (seconds, micros) = await pipe.execute()
                now_ms = seconds * 1000 + micros // 1000
                await self._client.zadd(keys.instances, {instance_id: now_ms})
                return old

        return await self._call(run) is not None

    async def _announce_apart(self, instance_id: str, presence: str, *, ttl_s: float) -> Any:
        keys = self._keys
        old = await self._client.set(
            keys.presence(instance_id), presence, px=max(1, int(ttl_s * 1000)), get=True
        )
        seconds, micros = await self._client.time()
        await self._client.zadd(keys.instances, {instance_id: seconds * 1000 + micros // 1000})
        return old

    async def withdraw(self, instance_id: str) -> None:
        """A clean exit: presence gone now rather than at its TTL."""
        await self._call(lambda: self._client.delete(self._keys.presence(instance_id)))

    async def instances(self) -> dict[str, str | None]:
        """Every listed instance's presence, ``None`` where it has expired."""
        keys = self._keys

        async def run() -> dict[str, str | None]:
            ids: Any = await self._client.zrange(keys.instances, 0, -1)
            if not ids:
                return {}
            presences = [keys.presence(i) for i in ids]
            values: Any
            if isinstance(self._client, RedisCluster):  # one slot per instance
                values = await self._client.mget_nonatomic(presences)
            else:
                values = await self._client.mget(presences)
            return {str(i): v for i, v in zip(ids, values, strict=True)}

        return await self._call(run)

    async def forget(self, instance_id: str) -> tuple[int, int] | None:
        """Forget an instance whose presence expired: ``(nodes dropped, frames
        dead-lettered)``, or ``None`` if it is present after all."""
        if self._keys.sharded:
            return await self._forget_apart(instance_id)
        k = self._keys
        keys = [
            k.presence(instance_id),
            k.instances,
            k.node_owners,
            k.node_records,
            k.changes,
            k.inbox(instance_id),
            k.dead_letters,
        ]
        reply = await self._call(
            lambda: self._forget(keys=keys, args=[instance_id, DEAD_BOUND]), extra_s=1.0
        )
        dropped, dead = int(reply[0]), int(reply[1])
        return None if dropped < 0 else (dropped, dead)

    async def _forget_apart(self, instance_id: str) -> tuple[int, int] | None:
        """``forget`` on Redis Cluster, in three one-slot steps: read its inbox if its presence
        is still gone (its tag); drop its nodes, dead-letter the inbox's entries and unlist it
        unless it announced since its score was read (the namespace's tag); delete its inbox
        unless it is present again (its tag).  A survivor that dies between steps leaves
        work that the next survivor's ``forget`` does again; entries dead-lettered twice, or
        both dead-lettered and delivered to an instance that came back, are duplicates, which
        the relay ignores (docs/scale-out.md)."""
        k = self._keys
        own = [k.presence(instance_id), k.inbox(instance_id)]

        async def run() -> tuple[int, int] | None:
            score = await self._client.zscore(k.instances, instance_id)
            entries: Any = await self._forget_inbox(keys=own, args=["read"])
            if entries == -1:
                return None
            args: list[Any] = [instance_id, DEAD_BOUND, "" if score is None else repr(score)]
            for _entry_id, fields in entries:
                args += [len(fields), *fields]
            view = [k.instances, k.node_owners, k.node_records, k.changes, k.dead_letters]
            reply: Any = await self._forget_view(keys=view, args=args)
            if int(reply[0]) < 0:
                return None
            await self._forget_inbox(keys=own, args=["delete"])
            return int(reply[0]), int(reply[1])

        return await self._call(run, extra_s=1.0)

    # --- the node view ------------------------------------------------------------------------

    async def put_node(self, instance_id: str, node_id: str, record: str) -> str:
        """Put a node's record (owned by ``instance_id``); returns the change's id."""
        k = self._keys
        keys = [k.node_owners, k.node_records, k.changes]
        reply = await self._call(
            lambda: self._put(keys=keys, args=[instance_id, node_id, record, CHANGES_BOUND])
        )
        return str(reply)

    async def drop_node(self, instance_id: str, node_id: str) -> bool:
        """Drop a node's record if ``instance_id`` still owns it."""
        k = self._keys
        keys = [k.node_owners, k.node_records, k.changes]
        reply = await self._call(
            lambda: self._drop(keys=keys, args=[instance_id, node_id, CHANGES_BOUND])
        )
        return bool(reply)

    async def view(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """``(last change id, records, owners)``, read in one step: apply the changes after
        that id and the view is current."""
        k = self._keys

        async def run() -> tuple[str, dict[str, str], dict[str, str]]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xrevrange(k.changes, count=1)
                pipe.hgetall(k.node_records)
                pipe.hgetall(k.node_owners)
                last, records, owners = await pipe.execute()
            return (last[0][0] if last else "0-0"), records, owners

        return await self._call(run)

    async def changes(self, after: str, *, block_s: float, count: int = 512) -> list[NodeChange]:
        """The changes after ``after``, waiting up to ``block_s`` for the first."""
        k = self._keys
        block_ms = max(1, int(block_s * 1000))
        reply: Any = await self._call(
            lambda: self._blocking.xread({k.changes: after}, count=count, block=block_ms),
            extra_s=block_s,
        )
        out: list[NodeChange] = []
        for _stream, entries in reply or ():
            for change_id, fields in entries:
                out.append(
                    NodeChange(
                        change_id=change_id,
                        op=fields.get("op", ""),
                        node_id=fields.get("node", ""),
                        owner=fields.get("owner", ""),
                        record=fields.get("record"),
                    )
                )
        return out

    # --- inboxes ------------------------------------------------------------------------------

    async def open_inbox(self, instance_id: str) -> None:
        """Create the inbox and its consumer group (idempotent)."""
        inbox = self._keys.inbox(instance_id)

        async def run() -> None:
            with contextlib.suppress(rexc.ResponseError):  # BUSYGROUP: it exists already
                await self._client.xgroup_create(inbox, GROUP, id="0", mkstream=True)

        await self._call(run)

    def send_soon(self, frames: Sequence[Outgoing], done: Outcome[bool]) -> None:
        """Hand ``frames`` to their targets' inboxes without waiting; ``done`` gets one
        ``True`` (delivered) or ``False`` (dead-lettered: no such instance) per frame, or the
        error that failed them all."""
        self._sender.submit(frames, done)

    async def send(self, frames: Sequence[Outgoing]) -> list[bool]:
        return [bool(ok) for ok in await awaited(self.send_soon, frames)]

    def _send_many(self, frames: Sequence[Outgoing], done: Outcome[bool]) -> None:
        if self._keys.sharded:
            _then(self._send_apart(frames), done)
            return
        k = self._keys
        keys = [k.dead_letters]
        args: list[pipelined.Arg] = [len(frames), INBOX_BOUND]
        for f in frames:
            keys += [k.presence(f.target), k.inbox(f.target)]
            args += [f.target, f.kind, f.node_id, f.origin, f.frame]

        def parse(reply: Any, error: StoreError | None) -> None:
            if error is None and (not isinstance(reply, list) or len(reply) != len(frames)):
                error = StoreError(f"unexpected reply from cluster_send: {reply!r}")
            done(None if error else [bool(r) for r in reply], error)

        _HotCall(self._hot, self._send_script, keys, args, parse, timeout_s=self._timeout_s).start()

    async def _send_apart(self, frames: Sequence[Outgoing]) -> list[bool]:
        """``_send_many`` on Redis Cluster: one script per target instance (its presence and
        inbox share its tag), all at once; the frames of a target that is not present are
        then dead-lettered with one ``XADD`` each (the dead-letter stream is in another
        slot).  A task per batch of a loop tick, never per frame."""
        k = self._keys
        targets: dict[str, list[int]] = {}
        for i, f in enumerate(frames):
            targets.setdefault(f.target, []).append(i)

        def call(target: str, indices: list[int]) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

            def got(value: Any, error: StoreError | None) -> None:
                if not future.done():
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(value)

            args: list[pipelined.Arg] = [INBOX_BOUND]
            for i in indices:
                f = frames[i]
                args += [f.kind, f.node_id, f.origin, f.frame]
            keys = [k.presence(target), k.inbox(target)]
            _HotCall(self._hot, self._send_to, keys, args, got, timeout_s=self._timeout_s).start()
            return future

        replies = await asyncio.gather(*(call(t, idx) for t, idx in targets.items()))
        out = [False] * len(frames)
        for (target, indices), reply in zip(targets.items(), replies, strict=True):
            if reply == 1:
                for i in indices:
                    out[i] = True
                continue
            for i in indices:
                await self._dead(frames[i], to=target, reason="no_instance")
        return out

    async def _dead(self, frame: Outgoing, *, to: str, reason: str) -> None:
        fields: dict[Any, Any] = {
            "reason": reason,
            "to": to,
            "kind": frame.kind,
            "node": frame.node_id,
            "origin": frame.origin,
            "frame": frame.frame,
        }
        await self._call(
            lambda: self._client.xadd(
                self._keys.dead_letters, fields, maxlen=DEAD_BOUND, approximate=True
            )
        )

    def _new_inbox_reader(self) -> pipelined.PipelinedClient:
        assert self._inbox_endpoint is not None
        return pipelined.PipelinedClient(
            self._inbox_endpoint, connect_timeout_s=self._timeout_s, stall_s=self._inbox_stall_s
        )

    def _inbox_left(self, reader: pipelined.PipelinedClient) -> None:
        """A read's caller gave up (cancelled, timed out) before its reply.  Redis still holds
        the read blocked and would hand it the next entries, which nobody would take: drop
        that connection (as redis-py drops one), and read on a new one."""
        if reader is not self._inbox_reader:
            return
        self._inbox_reader, self._inbox_busy = self._new_inbox_reader(), False
        task = asyncio.get_running_loop().create_task(reader.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def receive(
        self, instance_id: str, *, block_s: float, count: int = 512, pending: bool = False
    ) -> list[InboxEntry]:
        """Entries of this instance's inbox: new ones (waiting up to ``block_s``), or with
        ``pending`` the ones delivered before and not acknowledged (no wait)."""
        inbox = self._keys.inbox(instance_id)
        block = None if pending else max(1, int(block_s * 1000))
        reader = self._inbox_reader

        async def read() -> Any:
            if reader is None or self._inbox_busy:  # a read owed a reply blocks the connection
                return await self._blocking.xreadgroup(
                    GROUP, instance_id, {inbox: "0" if pending else ">"}, count=count, block=block
                )
            command: list[pipelined.Arg] = ["XREADGROUP", "GROUP", GROUP, instance_id]
            command += ["COUNT", count]
            if block is not None:
                command += ["BLOCK", block]
            command += ["STREAMS", inbox, "0" if pending else ">"]
            self._inbox_busy = True
            try:
                return await _command(reader, command)
            except asyncio.CancelledError:  # the timeout's, or the reader's stop
                self._inbox_left(reader)
                raise
            finally:
                if reader is self._inbox_reader:
                    self._inbox_busy = False

        reply: Any
        try:
            reply = await self._call(read, extra_s=block_s)
        except StoreError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Forgotten while away (its inbox deleted): open it again; nothing is lost that
            # was not already dead-lettered.
            await self.open_inbox(instance_id)
            reply = await self._call(read, extra_s=block_s)
        out: list[InboxEntry] = []
        for _stream, entries in reply or ():
            for entry_id, raw in entries:
                if not raw:  # deleted while pending: nothing to hand over
                    continue
                # redis-py answers a dict, hiredis the flat field/value list.
                fields = raw if isinstance(raw, dict) else _pairs(raw)
                out.append(
                    InboxEntry(
                        entry_id=entry_id,
                        kind=fields.get("kind", ""),
                        node_id=fields.get("node", ""),
                        origin=fields.get("origin", ""),
                        frame=fields.get("frame", "").encode(),
                    )
                )
        return out

    async def ack(self, instance_id: str, entry_ids: Sequence[str]) -> None:
        """Acknowledge handled entries and delete them: the inbox keeps only what is owed."""
        if not entry_ids:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: StoreError | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None)

        self.ack_soon(instance_id, entry_ids, done)
        await future

    def ack_soon(
        self,
        instance_id: str,
        entry_ids: Sequence[str],
        done: Callable[[StoreError | None], None],
    ) -> None:
        """``ack`` without waiting: one script call (``cluster_ack.lua``) on the hot
        connection; ``done`` gets ``None`` or the error (the entries then stay pending, and a
        reader that reads its pending entries again gets them back)."""
        if not entry_ids:
            return

        def acked(_reply: Any, error: StoreError | None) -> None:
            done(error)

        keys = [self._keys.inbox(instance_id)]
        args: list[pipelined.Arg] = [GROUP, *entry_ids]
        _HotCall(self._hot, self._ack_script, keys, args, acked, timeout_s=self._timeout_s).start()

    async def dead_letter(self, entry: InboxEntry, *, to: str, reason: str) -> None:
        """Record an entry this instance received and could not deliver."""
        fields: dict[Any, Any] = {
            "reason": reason,
            "to": to,
            "kind": entry.kind,
            "node": entry.node_id,
            "origin": entry.origin,
            "frame": entry.frame,
        }
        await self._call(
            lambda: self._client.xadd(
                self._keys.dead_letters, fields, maxlen=DEAD_BOUND, approximate=True
            )
        )

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The latest dead letters, oldest first (operators and tests)."""
        reply: Any = await self._call(
            lambda: self._client.xrevrange(self._keys.dead_letters, count=count)
        )
        return [DeadLetter(entry_id, dict(fields)) for entry_id, fields in reversed(reply)]

    async def close(self) -> None:
        for client in (self._client, self._blocking):
            with contextlib.suppress(Exception):
                await client.aclose()
        with contextlib.suppress(Exception):
            await self._hot.close()
        if self._inbox_reader is not None:
            with contextlib.suppress(Exception):
                await self._inbox_reader.close()
        if self._closing:
            await asyncio.wait(self._closing)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def _command(client: pipelined.PipelinedClient, command: Sequence[pipelined.Arg]) -> Any:
    """One command on a pipelined connection, awaited (the caller bounds the wait)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def got(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller gave up
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    client.command_then(command, got)
    return await future
