"""The dispatch core's side of a reservation that handed ``job_assign`` over itself
(``DispatchCore.reserved(..., handed=True)``): the ``Assign`` writes nothing, and a job that
ended while it was being reserved is cancelled on the node before its slot is given back."""

from __future__ import annotations

import json
import time

from switchboard.dispatch.actions import Assign, Cancel, Release, Reserve, StartTimer
from switchboard.dispatch.jobs import JobState
from switchboard.protocol import codec
from switchboard.protocol.messages import Utterance
from tests.unit.fakes import LinkSession, Rig

PAIRS = [("zh", "en")]


async def reserve_for(rig: Rig, session: LinkSession) -> Reserve:
    frame = json.dumps(
        {
            "type": "utterance",
            "session_id": session.session_id,
            "utterance_index": 0,
            "src_lang": "zh",
            "tgt_lang": "en",
            "audio": "",
            "audio_format": "pcm16",
            "sample_rate": 16000,
        }
    )
    msg = codec.decode_session(frame)
    assert isinstance(msg, Utterance)
    actions = rig.core.accept(
        session.session, msg, frame.encode(), received_at=0.0, now=time.monotonic()
    )
    (reserve,) = [a for a in actions if isinstance(a, Reserve)]
    return reserve


async def test_a_handed_assign_carries_the_frame_encoded_before_reserving() -> None:
    rig = Rig()
    node = await rig.add_node("n1", PAIRS)
    reserve = await reserve_for(rig, rig.open_session("s1"))
    frame = rig.core.assign_frame(reserve.job, reserve.attempt)
    actions = rig.core.reserved(reserve, "n1", now=time.monotonic(), frame=frame, handed=True)
    timer, assign = actions
    assert isinstance(timer, StartTimer)
    assert isinstance(assign, Assign)
    assert assign.handed and assign.frame is frame and assign.node is node
    assert reserve.job.state is JobState.ASSIGNED
    sent = json.loads(frame)
    assert (sent["type"], sent["job_id"], sent["attempt_id"]) == (
        "job_assign",
        reserve.job.job_id,
        1,
    )


async def test_a_job_ended_while_its_frame_was_handed_is_cancelled_on_the_node() -> None:
    rig = Rig()
    node = await rig.add_node("n1", PAIRS)
    session = rig.open_session("s1")
    reserve = await reserve_for(rig, session)
    rig.core.close_session(session.session)  # the job ends while the store reserves
    frame = rig.core.assign_frame(reserve.job, reserve.attempt)
    (cancel,) = rig.core.reserved(reserve, "n1", now=time.monotonic(), frame=frame, handed=True)
    assert isinstance(cancel, Cancel)
    assert cancel.node is node
    assert json.loads(cancel.frame)["type"] == "job_cancel"
    assert cancel.release == Release("n1", reserve.holder, counted=False, wake=True)


async def test_a_job_ended_whose_frame_was_not_handed_only_gives_the_slot_back() -> None:
    rig = Rig()
    await rig.add_node("n1", PAIRS)
    session = rig.open_session("s1")
    reserve = await reserve_for(rig, session)
    rig.core.close_session(session.session)
    (release,) = rig.core.reserved(reserve, "n1", now=time.monotonic())
    assert release == Release("n1", reserve.holder, counted=False, wake=True)
