"""In-process peers for driving the real dispatch core and driver without sockets.

These are not doubles of a service: they stand where the server's connection objects stand
(``NodePeer``/``SessionPeer``), recording frames dispatch sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from switchboard.dispatch.core import DispatchCore, DispatchSettings
from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import Job, Session
from switchboard.dispatch.overload import OverloadBounds
from switchboard.dispatch.selection import ALL_SERVICES
from switchboard.dispatch.spans import JobSpans
from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.protocol.messages import JobResult, NodeHeartbeat, NodeRegister, Utterance
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.sessions.manager import SessionManager
from switchboard.store.memory import MemoryStore


class LinkNode:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.sent: list[dict[str, Any]] = []
        self.assigned: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def write(self, frame: bytes) -> bool:
        msg = json.loads(frame)
        self.sent.append(msg)
        if msg["type"] == "job_assign":
            self.assigned.put_nowait(msg)
        return True


class LinkSession:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.out: list[dict[str, Any]] = []
        self.session: Session  # dispatch's record, set by Rig.open_session

    def push(self, frame: bytes) -> None:
        self.out.append(json.loads(frame))


def register_msg(pairs: list[tuple[str, str]], capacity: int) -> NodeRegister:
    frame = {
        "type": "node_register",
        "version": "1",
        "platform": "test",
        "hardware": {"cpu_cores": 1, "memory_gb": 1},
        "installed_models": [],
        "capability_by_type": [{"type": s, "ready": True} for s in sorted(ALL_SERVICES)],
        "features_supported": {},
        "accept_public_jobs": True,
        "max_concurrency": capacity,
        "language_capabilities": {
            "supported_language_pairs": [{"src": s, "tgt": t} for s, t in pairs]
        },
    }
    msg = codec.decode_node(json.dumps(frame))
    assert isinstance(msg, NodeRegister)
    return msg


def heartbeat_msg(node_id: str, *, ready: bool = True) -> NodeHeartbeat:
    frame = {
        "type": "node_heartbeat",
        "node_id": node_id,
        "timestamp": 1,
        "resource_usage": {"cpu_percent": 1, "mem_percent": 1, "running_jobs": 0},
        "capability_by_type": [{"type": s, "ready": ready} for s in sorted(ALL_SERVICES)],
    }
    msg = codec.decode_node(json.dumps(frame))
    assert isinstance(msg, NodeHeartbeat)
    return msg


class Rig:
    """Registry + snapshot + sessions + dispatcher on the in-process store."""

    def __init__(
        self,
        *,
        job_timeout: float = 5.0,
        pending_timeout: float = 5.0,
        max_attempts: int = 3,
        min_rebuild_interval: float = 0.0,
        spans: JobSpans | None = None,
        overload: OverloadBounds | None = None,
    ) -> None:
        self.metrics = Metrics()
        self.holder = SnapshotHolder()
        self.store = MemoryStore()
        self.registry = ManagementRegistry(
            self.holder,
            metrics=self.metrics,
            default_max_concurrency=4,
            heartbeat_interval=60,
            min_rebuild_interval=min_rebuild_interval,
        )
        self.sessions = SessionManager()
        self.core = DispatchCore(
            self.holder,
            self.sessions,
            metrics=self.metrics,
            settings=DispatchSettings(
                job_timeout=job_timeout,
                pending_timeout=pending_timeout,
                max_attempts=max_attempts,
                reservation_lease=30,
                **({} if overload is None else {"overload": overload}),
            ),
            spans=spans,
        )
        self.dispatcher = DispatchDriver(
            self.core,
            self.store,
            snapshots=self.holder,
            metrics=self.metrics,
            reservation_lease=30,
        )
        self.nodes: dict[str, LinkNode] = {}
        self._jobs = 0

    async def start(self) -> None:
        self.registry.start()
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.registry.stop()

    async def add_node(
        self, node_id: str, pairs: list[tuple[str, str]], capacity: int = 2
    ) -> LinkNode:
        assert await self.registry.register(node_id, register_msg(pairs, capacity))
        await self.registry.heartbeat(node_id, heartbeat_msg(node_id))
        link = LinkNode(node_id)
        self.nodes[node_id] = link
        self.dispatcher.attach_node(link)
        await self.registry.rebuild_now()
        return link

    def open_session(self, session_id: str) -> LinkSession:
        link = LinkSession(session_id)
        link.session = self.dispatcher.open_session(session_id, link)
        return link

    async def utter(
        self, session: LinkSession, index: int, src: str = "zh", tgt: str = "en"
    ) -> Job:
        self._jobs += 1
        frame = json.dumps(
            {
                "type": "utterance",
                "session_id": session.session_id,
                "utterance_index": index,
                "src_lang": src,
                "tgt_lang": tgt,
                "audio": "",
                "audio_format": "pcm16",
                "sample_rate": 16000,
            }
        )
        msg = codec.decode_session(frame)
        assert isinstance(msg, Utterance)
        before = set(session.session.pending.values())
        await self.dispatcher.accept(session.session, msg, frame.encode(), time.perf_counter())
        (job,) = set(session.session.pending.values()) - before
        return job

    def answer(self, node: LinkNode, assign: dict[str, Any], *, success: bool = True) -> bool:
        """Hand the node's ``job_result`` to dispatch; ``True`` if it answered a live job."""
        frame = json.dumps(
            {
                "type": "job_result",
                "job_id": assign["job_id"],
                "attempt_id": assign["attempt_id"],
                "node_id": node.node_id,
                "session_id": assign["session_id"],
                "utterance_index": assign["utterance_index"],
                "success": success,
                "trace_id": assign["trace_id"],
                "text_translated": "ok",
            }
        )
        msg = codec.decode_node(frame)
        assert isinstance(msg, JobResult)
        before = self.core.in_flight
        self.dispatcher.run(
            self.core.result(node.node_id, msg, frame.encode(), now=time.monotonic(), wall_ms=0)
        )
        return self.core.in_flight < before
