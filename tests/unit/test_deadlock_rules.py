"""Seed §7: no path holds the management lock and a session lock together.

Two proofs: the import graph makes it structural (management never sees sessions or dispatch;
dispatch and sessions never see the management domain that owns the management lock: the
rules live in ``test_layers.py``), and here a concurrent run with instrumented locks shows no
task ever holds both kinds at once.
"""

from __future__ import annotations

import asyncio
import random

from switchboard.sessions.manager import SessionEntry, SessionLock
from tests.unit.fakes import Rig, heartbeat_msg, register_msg

_held: dict[asyncio.Task[object] | None, set[str]] = {}
_violations: list[str] = []


def _taking(kind: str) -> None:
    mine = _held.setdefault(asyncio.current_task(), set())  # type: ignore[arg-type]
    if mine - {kind}:
        _violations.append(f"{kind} taken while holding {sorted(mine)}")
    mine.add(kind)


def _leaving(kind: str) -> None:
    _held.get(asyncio.current_task(), set()).discard(kind)  # type: ignore[arg-type]


class _TrackingLock(asyncio.Lock):
    """The management lock, reporting who holds what."""

    async def acquire(self) -> bool:
        await super().acquire()
        _taking("management")
        return True

    def release(self) -> None:
        _leaving("management")
        super().release()


class _TrackingSessionLock(SessionLock):
    """A session's lock (synchronous: the dispatch core never awaits), reporting likewise."""

    def __enter__(self) -> None:
        _taking("session")
        super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        _leaving("session")


async def test_no_task_ever_holds_both_lock_kinds_under_concurrent_load() -> None:
    """Heartbeats, joins, leaves and dispatch interleaved: never both locks; all answered."""
    _violations.clear()
    rig = Rig(min_rebuild_interval=0.001)
    rig.registry._lock = _TrackingLock()
    original_create = rig.sessions.create

    def create(session_id: str) -> SessionEntry:
        entry = original_create(session_id)
        entry.lock = _TrackingSessionLock()
        return entry

    rig.sessions.create = create  # type: ignore[method-assign]
    await rig.start()
    nodes = [await rig.add_node(f"n{i}", [("zh", "en")], 2) for i in range(4)]
    stop = asyncio.Event()

    async def storm() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            node = rng.choice(nodes)
            await rig.registry.heartbeat(
                node.node_id, heartbeat_msg(node.node_id, ready=rng.random() > 0.1)
            )
            await rig.registry.register("flap", register_msg([("zh", "en")], 1))
            await rig.registry.remove("flap")
            await asyncio.sleep(0)

    async def answer_all() -> None:
        while not stop.is_set():
            for node in nodes:
                while not node.assigned.empty():
                    rig.answer(node, node.assigned.get_nowait())
            await asyncio.sleep(0.001)

    workers = [asyncio.create_task(storm()), asyncio.create_task(answer_all())]
    sessions = [rig.open_session(f"s{i}") for i in range(20)]
    for index in range(10):
        for session in sessions:
            await rig.utter(session, index)
        await asyncio.sleep(0.002)
    async with asyncio.timeout(10):  # a deadlock would hang here
        await rig.dispatcher.idle.wait()
    stop.set()
    await asyncio.gather(*workers)
    assert _violations == []
    for session in sessions:
        assert [m["utterance_index"] for m in session.out] == list(range(10))
    await rig.stop()
