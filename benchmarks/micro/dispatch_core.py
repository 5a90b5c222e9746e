"""Micro-benchmark: the dispatch core and driver's own CPU per utterance, with no I/O.

accept (msgspec decode included) -> reserve on the in-process store -> job_assign encoded and
handed to a node that only keeps it; then the node's job_result -> the answer pushed to the
session.  200 nodes of 64 slots serving en->de, 1,000 sessions, uvloop.  Wall time per step
(p50 and mean) over N utterances after 2,000 warm-up ones; with a second argument, a cProfile
of the measured ones instead.

    PYTHONPATH=. .venv/bin/python benchmarks/micro/dispatch_core.py 5000
"""

import asyncio
import cProfile
import json
import pstats
import sys
import time

import uvloop
from tests.unit.fakes import heartbeat_msg, register_msg

from switchboard.dispatch.core import DispatchCore, DispatchSettings
from switchboard.dispatch.driver import DispatchDriver
from switchboard.management.registry import ManagementRegistry
from switchboard.metrics import Metrics
from switchboard.protocol import codec
from switchboard.runtime.snapshot import SnapshotHolder
from switchboard.sessions.manager import SessionManager
from switchboard.store.memory import MemoryStore


class Node:
    def __init__(self, node_id):
        self.node_id = node_id
        self.last = None

    def write(self, frame):
        self.last = frame
        return True


class Peer:
    def __init__(self):
        self.n = 0

    def push(self, frame):
        self.n += 1


async def main(n, profile):
    metrics = Metrics()
    holder = SnapshotHolder()
    reg = ManagementRegistry(
        holder, metrics=metrics, default_max_concurrency=64, heartbeat_interval=60
    )
    nodes = []
    for i in range(200):
        nid = f"node-{i:03d}"
        await reg.register(nid, register_msg([("en", "de")], 64))
        await reg.heartbeat(nid, heartbeat_msg(nid))
        nodes.append(Node(nid))
    await reg.rebuild_now()
    core = DispatchCore(
        holder,
        SessionManager(),
        settings=DispatchSettings(
            job_timeout=30, pending_timeout=10, max_attempts=3, reservation_lease=15
        ),
        metrics=metrics,
    )
    drv = DispatchDriver(
        core, MemoryStore(), snapshots=holder, metrics=metrics, reservation_lease=15
    )
    for nd in nodes:
        drv.attach_node(nd)
    sessions = [drv.open_session(f"s-{i}", Peer()) for i in range(1000)]
    audio = "A" * 400
    frames = [
        json.dumps(
            {
                "type": "utterance",
                "session_id": s.session_id,
                "utterance_index": 0,
                "src_lang": "en",
                "tgt_lang": "de",
                "audio": audio,
                "audio_format": "pcm16",
                "sample_rate": 16000,
            }
        ).encode()
        for s in sessions
    ]
    by_id = {nd.node_id: nd for nd in nodes}

    def one(i):
        s = sessions[i % 1000]
        f = frames[i % 1000]
        if i >= 1000:
            f = f.replace(b'"utterance_index":0', b'"utterance_index":%d' % (i // 1000))
        t0 = time.perf_counter()
        msg = codec.decode_session(f)
        drv.run(core.accept(s, msg, f, received_at=t0, now=time.monotonic()))
        t1 = time.perf_counter()
        job = next(iter(s.pending.values()))
        nd = by_id[job.node_id]
        a = json.loads(nd.last)
        res = json.dumps(
            {
                "type": "job_result",
                "job_id": a["job_id"],
                "attempt_id": a["attempt_id"],
                "node_id": nd.node_id,
                "session_id": a["session_id"],
                "utterance_index": a["utterance_index"],
                "success": True,
                "trace_id": a["trace_id"],
                "text_translated": "ok",
            }
        ).encode()
        t2 = time.perf_counter()
        rm = codec.decode_node(res)
        drv.result(nd.node_id, rm, res)
        t3 = time.perf_counter()
        return t1 - t0, t3 - t2

    for i in range(2000):
        one(i)
    acc = []
    resl = []
    pr = cProfile.Profile() if profile else None
    if pr:
        pr.enable()
    for i in range(2000, 2000 + n):
        a, r = one(i)
        acc.append(a)
        resl.append(r)
    if pr:
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    acc.sort()
    resl.sort()
    print(
        f"accept->assign written: p50 {acc[len(acc) // 2] * 1e6:.1f} us"
        f"  mean {sum(acc) / len(acc) * 1e6:.1f}"
    )
    print(
        f"result->answer pushed: p50 {resl[len(resl) // 2] * 1e6:.1f} us"
        f"  mean {sum(resl) / len(resl) * 1e6:.1f}"
    )


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), len(sys.argv) > 2))
