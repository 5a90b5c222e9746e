"""``--design null``: the server with the scheduling taken out, for the benchmark only.

E0's outside latency (a session sends → its node receives ``job_assign``) holds everything on
the path: the load generator's two loops, the kernel's loopback hops, aiohttp's read and write,
the frame decode and the ``job_assign`` encode, and the scheduling itself.  This design keeps
all of that but the scheduling: an utterance goes to the next connected node in turn, with no
snapshot, no session decision, no reservation, no waiting line, no timers and no answer
order (a node's ``job_result`` is relayed to its session as it comes); a node that leaves
has its jobs written again to the next one, so that the storm's churn loses no utterance.
Run beside the real design on the same load, the difference between the two is what
scheduling costs as a user feels it, and the null design's own figure is the floor this
server and this generator set on this machine.  Nothing else about it is a scheduler: it
ignores capacity, health, languages and failures; for benchmarks only, like ``--design
global_lock``.
"""

from __future__ import annotations

import time
from typing import Any

from switchboard.dispatch.driver import DispatchDriver
from switchboard.dispatch.jobs import NodePeer, Session
from switchboard.management.registry import ManagementRegistry
from switchboard.protocol import codec, ids, langs
from switchboard.protocol.messages import JobResult, Utterance
from switchboard.server.scheduler import Parts, driver_for, registry_for

_PIPELINE = {"use_asr": True, "use_nmt": True, "use_tts": True}


class NullDriver(DispatchDriver):
    """Round-robin over the attached nodes; everything else as the real driver does it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ring: list[NodePeer] = []
        self._turn = 0
        self._jobs: dict[str, tuple[Session, int, str, bytes, str]] = {}

    def attach_node(self, node: NodePeer) -> None:
        super().attach_node(node)
        self._ring = [n for n in self._ring if n.node_id != node.node_id] + [node]

    def detach_node(self, node_id: str) -> None:
        super().detach_node(node_id)
        self._ring = [n for n in self._ring if n.node_id != node_id]
        for job_id, (session, index, trace_id, frame, held_by) in list(self._jobs.items()):
            if held_by == node_id and self._ring:
                node = self._next()
                node.write(frame)
                self._jobs[job_id] = (session, index, trace_id, frame, node.node_id)

    def _next(self) -> NodePeer:
        self._turn = (self._turn + 1) % len(self._ring)
        return self._ring[self._turn]

    async def accept(self, session: Session, msg: Utterance, frame: bytes, received: float) -> None:
        if not self._ring:
            return  # E0 starts its load once every node is ready
        node = self._next()
        job_id = ids.job_id()
        trace_id = msg.trace_id or session.profile.trace_id
        frame = codec.job_assign(
            codec.raw_fields(frame),
            job_id=job_id,
            attempt_id=1,
            session_id=session.session_id,
            utterance_index=msg.utterance_index,
            src_lang=langs.normalize(msg.src_lang),
            tgt_lang=langs.normalize(msg.tgt_lang),
            pipeline=_PIPELINE,
            trace_id=trace_id,
            profile=session.profile,
        )
        node.write(frame)
        self._stats.dispatch_latency.observe(time.perf_counter() - received)
        self.dispatched_total += 1
        self._jobs[job_id] = (session, msg.utterance_index, trace_id, frame, node.node_id)

    def result(self, node_id: str, msg: JobResult, frame: bytes) -> None:
        job = self._jobs.pop(msg.job_id, None)
        if job is None:
            return
        session, index, trace_id, _, _ = job
        session.peer.push(
            codec.translation_result(
                codec.raw_fields(frame),
                session_id=session.session_id,
                utterance_index=index,
                job_id=msg.job_id,
                trace_id=trace_id,
                node_id=node_id,
                group=None,
            )
        )


def null_design(parts: Parts) -> tuple[ManagementRegistry, DispatchDriver]:
    """The real registry (nodes register, heartbeat and show in ``/api/v1/stats`` as usual)
    and the null driver (``ServeHooks.design`` for ``--design null``)."""
    return registry_for(parts), driver_for(parts, NullDriver)
