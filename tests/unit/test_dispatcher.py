"""The real dispatch core and driver over the in-process store, with in-process peers."""

from __future__ import annotations

import asyncio
import random

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fakes import LinkNode, Rig


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.001)


async def _run_workload(capacities: list[int], per_session: list[int], seed: int) -> None:
    rig = Rig()
    await rig.start()
    rng = random.Random(seed)
    nodes = [await rig.add_node(f"n{i}", [("zh", "en")], c) for i, c in enumerate(capacities)]
    capacity = dict(zip((n.node_id for n in nodes), capacities, strict=True))
    sessions = [rig.open_session(f"s{i}") for i in range(len(per_session))]
    expected = {
        s.session_id: list(range(count)) for s, count in zip(sessions, per_session, strict=True)
    }
    for session, count in zip(sessions, per_session, strict=True):
        for index in range(count):
            await rig.utter(session, index)
    total = sum(per_session)
    answered = 0
    running: dict[str, list[dict[str, object]]] = {n.node_id: [] for n in nodes}
    while answered < total:
        await _settle()
        for node in nodes:
            while not node.assigned.empty():
                running[node.node_id].append(node.assigned.get_nowait())
            # a node never holds more jobs than its capacity (counted on the node side)
            assert len(running[node.node_id]) <= capacity[node.node_id]
        busy = [n for n in nodes if running[n.node_id]]
        assert busy, "jobs are pending but no node holds one: a slot leaked or a wake was lost"
        node = rng.choice(busy)
        job = running[node.node_id].pop(rng.randrange(len(running[node.node_id])))
        assert rig.answer(node, job)
        answered += 1
    await _settle()
    for session in sessions:
        got = [m["utterance_index"] for m in session.out if m["type"] == "translation_result"]
        assert got == expected[session.session_id]  # exactly one answer each, in order
    assert await rig.store.held_total() == 0
    assert rig.dispatcher.in_flight == 0
    await rig.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacities=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    per_session=st.lists(st.integers(0, 8), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_utterance_answered_once_in_order_within_capacity(
    capacities: list[int], per_session: list[int], seed: int
) -> None:
    """Property: capacity never exceeded, one answer per utterance, order kept, no leak."""
    asyncio.run(_run_workload(capacities, per_session, seed))


async def test_silent_node_times_out_and_job_moves_with_next_attempt() -> None:
    """Job timeout: job_cancel to the node, retry elsewhere with attempt_id + 1."""
    rig = Rig(job_timeout=0.05)
    await rig.start()
    a = await rig.add_node("a", [("zh", "en")], 1)
    b = await rig.add_node("b", [("zh", "en")], 1)
    session = rig.open_session("s")
    await rig.utter(session, 0)
    first = await asyncio.wait_for(_first_assign(a, b), 1)
    other = b if first[0] is a else a
    second = await asyncio.wait_for(other.assigned.get(), 1)
    assert second["attempt_id"] == 2 and second["job_id"] == first[1]["job_id"]
    assert any(m["type"] == "job_cancel" for m in first[0].sent)
    # the stale answer of attempt 1 changes nothing
    assert not rig.answer(first[0], first[1])
    assert rig.answer(other, second)
    await _settle()
    assert [m["type"] for m in session.out] == ["translation_result"]
    await rig.stop()


async def _first_assign(a: LinkNode, b: LinkNode) -> tuple[LinkNode, dict[str, object]]:
    while True:
        for node in (a, b):
            if not node.assigned.empty():
                return node, node.assigned.get_nowait()
        await asyncio.sleep(0.001)


async def test_waiting_job_is_woken_by_a_new_node_not_by_polling() -> None:
    """No eligible node: the job waits and is placed when a node appears."""
    rig = Rig(pending_timeout=2.0)
    await rig.start()
    session = rig.open_session("s")
    await rig.utter(session, 0)
    await _settle()
    assert session.out == []
    node = await rig.add_node("late", [("zh", "en")], 1)
    assign = await asyncio.wait_for(node.assigned.get(), 1)
    assert assign["utterance_index"] == 0
    await rig.stop()


async def test_pending_timeout_answers_no_available_node() -> None:
    """A job that finds no slot in time gets NO_AVAILABLE_NODE with index and job id."""
    rig = Rig(pending_timeout=0.05)
    await rig.start()
    session = rig.open_session("s")
    job = await rig.utter(session, 4)
    await asyncio.sleep(0.15)
    assert session.out == [
        {
            "type": "error",
            "code": "NO_AVAILABLE_NODE",
            "message": session.out[0]["message"],
            "details": {"utterance_index": 4, "job_id": job.job_id},
        }
    ]
    await rig.stop()


async def test_node_gone_retries_at_once_and_session_drop_releases() -> None:
    """A departed node's jobs move at once; a dropped session frees its slots."""
    rig = Rig()
    await rig.start()
    a = await rig.add_node("a", [("zh", "en")], 1)
    session = rig.open_session("s")
    await rig.utter(session, 0)
    await asyncio.wait_for(a.assigned.get(), 1)
    b = await rig.add_node("b", [("zh", "en")], 1)
    rig.dispatcher.detach_node("a")
    await rig.registry.remove("a")
    moved = await asyncio.wait_for(b.assigned.get(), 1)
    assert moved["attempt_id"] == 2
    rig.dispatcher.close_session(session.session)
    await _settle()
    assert any(m["type"] == "job_cancel" for m in b.sent)
    assert await rig.store.held_total() == 0 and rig.dispatcher.in_flight == 0
    await rig.stop()


async def test_a_node_gone_but_still_in_the_snapshot_does_not_spin_the_waiting_line() -> None:
    """A node detached before the next snapshot still looks free: reserving it and giving it
    back must not wake the line again (it spun forever, starving the loop, in E2)."""
    rig = Rig(min_rebuild_interval=0.2)
    await rig.start()
    reserves = 0
    real_try_reserve = rig.store.try_reserve_now

    def counting_try_reserve(*args: object, **kwargs: object) -> str | None:
        nonlocal reserves
        reserves += 1
        if reserves > 500:  # the spin: fail the job instead of hanging the test
            raise RuntimeError("try_reserve called in a loop")
        return real_try_reserve(*args, **kwargs)  # type: ignore[arg-type]

    rig.store.try_reserve_now = counting_try_reserve  # type: ignore[method-assign]
    a = await rig.add_node("a", [("zh", "en")], 1)
    await rig.add_node("ghost", [("zh", "en")], 1)
    session = rig.open_session("s")
    for index in range(4):  # two placed, two waiting
        await rig.utter(session, index)
    await _settle()
    rig.dispatcher.detach_node("ghost")  # the registry (and the snapshot) still has it
    await _settle()
    assert reserves < 20
    assert not [m for m in session.out if m["type"] == "error"]
    first = await asyncio.wait_for(a.assigned.get(), 1)
    assert rig.answer(a, first)
    await rig.registry.remove("ghost")
    for _ in range(3):  # the rest move to "a" as it frees up
        assign = await asyncio.wait_for(a.assigned.get(), 1)
        assert rig.answer(a, assign)
    await _settle()
    got = [m["utterance_index"] for m in session.out]
    assert got == [0, 1, 2, 3]
    await rig.stop()


def test_a_finished_jobs_timer_is_cancelled_on_uvloop() -> None:
    """The job timeout's handle is cancelled when the job ends, on the loop the server runs
    (uvloop's TimerHandle is not asyncio's class; a handle left live kept its job for 30 s)."""

    async def run() -> None:
        rig = Rig()
        await rig.start()
        node = await rig.add_node("a", [("zh", "en")], 1)
        session = rig.open_session("s")
        job = await rig.utter(session, 0)
        assert job.timer is not None and job.timer.handle is not None
        handle = job.timer.handle
        assign = await asyncio.wait_for(node.assigned.get(), 1)
        assert rig.answer(node, assign)
        assert handle.cancelled()  # type: ignore[attr-defined]
        await rig.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
