"""Lingua's session state in job_assign, streamed jobs, silence and groups (lingua-parity §1, §2,
§4), through the sans-I/O dispatch core with no event loop."""

from __future__ import annotations

import json
from typing import Any

from switchboard.protocol import codec
from switchboard.protocol.cuts import MANUAL_CUT, Cut, CutKind
from switchboard.protocol.messages import JobResult, SessionInit, Utterance
from switchboard.protocol.profile import SessionProfile, profile_of
from switchboard.sessions.groups import GROUP_WINDOW_MS, GroupState
from tests.unit.test_core_properties import PAIR, Sim, SimNode, SimSession

PROFILE = SessionProfile(
    trace_id="trace-of-session",
    src_lang=PAIR[0],
    tgt_lang=PAIR[1],
    mode="two_way_auto",
    lang_a="zh",
    lang_b="en",
    auto_langs=("zh", "en"),
    tenant_id="acme",
    features={"speaker_identification": True},
    dialect="yue",
)


def _open(sim: Sim, profile: SessionProfile = PROFILE) -> SimSession:
    session = SimSession("s-1")
    session.session = sim.core.open_session("s-1", session, profile)
    return session


def _utter(sim: Sim, session: SimSession, index: int, **fields: Any) -> None:
    body = {
        "type": "utterance",
        "session_id": session.session_id,
        "utterance_index": index,
        "src_lang": PAIR[0],
        "tgt_lang": PAIR[1],
        "audio": "AAAA",
        "audio_format": "pcm16",
        "sample_rate": 16000,
        **fields,
    }
    frame = json.dumps(body).encode()
    msg = codec.decode_session(frame)
    assert isinstance(msg, Utterance) and session.session is not None
    sim.perform(sim.core.accept(session.session, msg, frame, received_at=0.0, now=sim.now))


def _stream(sim: Sim, session: SimSession, cut: Cut, audio: str = "UklGRg==") -> None:
    assert session.session is not None
    sim.perform(
        sim.core.admit_streamed(
            session.session,
            audio,
            audio_format="opus",
            sample_rate=16000,
            cut=cut,
            received_at=0.0,
            now=sim.now,
        )
    )


def _assigns(node: SimNode) -> dict[int, dict[str, Any]]:
    """The node's running jobs' job_assign frames by utterance_index."""
    return {a["utterance_index"]: a for a in node.running.values()}


def _reply(sim: Sim, node: SimNode, index: int, *, wall_ms: int = 0, **fields: Any) -> None:
    job_id = next(j for j, a in node.running.items() if a["utterance_index"] == index)
    assign = node.running.pop(job_id)
    body = {
        "type": "job_result",
        "job_id": job_id,
        "attempt_id": assign["attempt_id"],
        "node_id": node.node_id,
        "session_id": assign["session_id"],
        "utterance_index": index,
        "success": True,
        "trace_id": assign["trace_id"],
        **fields,
    }
    frame = json.dumps(body).encode()
    msg = codec.decode_node(frame)
    assert isinstance(msg, JobResult)
    sim.perform(sim.core.result(node.node_id, msg, frame, now=sim.now, wall_ms=wall_ms))


# --- §1: the session's fields in every job ----------------------------------------------------


def test_job_assign_carries_the_session_fields_and_prefers_the_utterances_features() -> None:
    """mode/lang_a/lang_b/auto_langs/tenant_id come from the session whatever the utterance
    says; the utterance's features and dialect replace the session's; trace_id falls back."""
    sim = Sim([4])
    session = _open(sim)
    _utter(sim, session, 0, mode="one_way", lang_a="xx", features={"emotion_detection": True})
    _utter(sim, session, 1, features=None, dialect=None, trace_id="own-trace")
    jobs = _assigns(sim.nodes["n0"])
    first, second = jobs[0], jobs[1]
    for job in (first, second):
        assert job["mode"] == "two_way_auto" and job["lang_a"] == "zh" and job["lang_b"] == "en"
        assert job["auto_langs"] == ["zh", "en"] and job["tenant_id"] == "acme"
    assert first["features"] == {"emotion_detection": True} and first["dialect"] == "yue"
    assert first["trace_id"] == "trace-of-session"
    assert second["features"] == {"speaker_identification": True}  # null is "not given"
    assert second["dialect"] == "yue" and second["trace_id"] == "own-trace"


def test_unset_session_fields_are_left_out() -> None:
    """A session that set nothing sends no mode fields, features, dialect or tenant."""
    sim = Sim([4])
    session = _open(sim, SessionProfile(trace_id="t", src_lang="zh", tgt_lang="en"))
    _utter(sim, session, 0, mode="two_way_auto")
    job = _assigns(sim.nodes["n0"])[0]
    for key in ("mode", "lang_a", "lang_b", "auto_langs", "tenant_id", "features", "dialect"):
        assert key not in job, key


def test_profile_of_session_init_negotiates_opus_16000_unless_asked() -> None:
    """Without audio_format/sample_rate the session negotiates opus at 16000 Hz."""
    init = codec.decode_session(
        json.dumps(
            {
                "type": "session_init",
                "client_version": "1",
                "platform": "web",
                "src_lang": "ZH_cn",
                "tgt_lang": "en",
                "dialect": None,
                "tenant_id": None,
                "features": {},
            }
        )
    )
    assert isinstance(init, SessionInit)
    profile = profile_of(init, "t-1")
    assert (profile.audio_format, profile.sample_rate) == ("opus", 16000)
    assert (profile.src_lang, profile.dialect, profile.tenant_id) == ("zh-cn", None, None)
    asked = profile_of(
        SessionInit("1", "web", "zh", "en", audio_format="pcm16", sample_rate=48000), "t"
    )
    ack = json.loads(
        codec.session_init_ack(
            "s-1", "t", audio_format=asked.audio_format, sample_rate=asked.sample_rate
        )
    )
    assert ack["protocol_version"] == "1.0" and ack["use_binary_frame"] is False
    assert ack["negotiated_codec"] == ack["negotiated_audio_format"] == "pcm16"
    assert (ack["negotiated_sample_rate"], ack["negotiated_channel_count"]) == (48000, 1)


# --- §2: streaming ASR and cut flags ----------------------------------------------------------


def test_streaming_asr_and_cut_flags_only_when_true() -> None:
    """Every job asks for streaming ASR; manual_cut sets is_manual_cut; no false flags."""
    sim = Sim([4])
    session = _open(sim)
    _utter(sim, session, 0)
    _utter(sim, session, 1, manual_cut=True)
    _utter(sim, session, 2, manual_cut=False, padding_ms=999, is_pause_triggered=True)
    jobs = _assigns(sim.nodes["n0"])
    for job in jobs.values():
        assert job["enable_streaming_asr"] is True and job["partial_update_interval_ms"] == 1000
        assert "is_pause_triggered" not in job and "is_timeout_triggered" not in job
        assert "padding_ms" not in job
    assert "is_manual_cut" not in jobs[0] and "is_manual_cut" not in jobs[2]
    assert jobs[1]["is_manual_cut"] is True


def test_streaming_asr_can_be_turned_off() -> None:
    """DispatchSettings(streaming_asr=False): neither streaming field is sent."""
    sim = Sim([4], streaming_asr=False)
    session = _open(sim)
    _utter(sim, session, 0)
    job = _assigns(sim.nodes["n0"])[0]
    assert "enable_streaming_asr" not in job and "partial_update_interval_ms" not in job


def test_cut_assign_fields() -> None:
    """Each cut kind sets its own flag, padding only when positive."""
    assert Cut(CutKind.MANUAL, 280).assign_fields() == (
        ("padding_ms", 280),
        ("is_manual_cut", True),
    )
    assert Cut(CutKind.PAUSE, 220).assign_fields()[1] == ("is_pause_triggered", True)
    assert Cut(CutKind.TIMEOUT, 220).assign_fields()[1] == ("is_timeout_triggered", True)
    assert Cut(CutKind.NONE).assign_fields() == ()
    assert MANUAL_CUT.assign_fields() == (("is_manual_cut", True),)


# --- the seam for streamed jobs ------------------------------------------------------------------


def test_a_streamed_job_takes_the_next_index_and_carries_its_cut() -> None:
    """admit_streamed: the session's next index (after utterance 4: 5, then 6), the cut's
    flag and padding, the session's pair, trace id and mode fields, the joined audio."""
    sim = Sim([8])
    session = _open(sim)
    _utter(sim, session, 4)
    _stream(sim, session, Cut(CutKind.MANUAL, 280))
    _stream(sim, session, Cut(CutKind.NONE), audio="T2dn")
    jobs = _assigns(sim.nodes["n0"])
    assert sorted(jobs) == [4, 5, 6]
    streamed = jobs[5]
    assert streamed["is_manual_cut"] is True and streamed["padding_ms"] == 280
    assert (streamed["src_lang"], streamed["tgt_lang"]) == PAIR
    assert streamed["trace_id"] == "trace-of-session" and streamed["mode"] == "two_way_auto"
    assert (streamed["audio"], streamed["audio_format"], streamed["sample_rate"]) == (
        "UklGRg==",
        "opus",
        16000,
    )
    assert streamed["pipeline"] == {"use_asr": True, "use_nmt": True, "use_tts": True}
    plain = jobs[6]
    assert plain["audio"] == "T2dn"
    assert not {"padding_ms", "is_manual_cut", "is_pause_triggered"} & set(plain)
    # Answers come back in index order across both paths.
    node = sim.nodes["n0"]
    for index in (6, 4, 5):
        _reply(sim, node, index, text_asr="x")
    assert [m["utterance_index"] for m in session.out] == [4, 5, 6]


def test_an_utterance_whose_index_a_streamed_job_holds_is_refused() -> None:
    """Both paths share one sequence: a pending streamed index is 'already pending'; a
    later utterance above it moves the sequence on."""
    sim = Sim([8])
    session = _open(sim)
    _stream(sim, session, Cut(CutKind.PAUSE, 220))  # index 0
    _utter(sim, session, 0)
    assert session.out[-1]["type"] == "error" and session.out[-1]["code"] == "INVALID_MESSAGE"
    _utter(sim, session, 10)
    _stream(sim, session, Cut(CutKind.TIMEOUT, 220))
    assert sorted(_assigns(sim.nodes["n0"])) == [0, 10, 11]


def test_a_refused_streamed_job_is_answered_at_once_with_its_index() -> None:
    """The pending limit holds for streamed jobs too: TOO_MANY_PENDING with the index."""
    sim = Sim([8])
    session = _open(sim)
    for index in range(6):  # the sim's max_pending_per_session
        _utter(sim, session, index)
    _stream(sim, session, MANUAL_CUT)
    error = session.out[-1]
    assert error["code"] == "TOO_MANY_PENDING" and error["details"]["utterance_index"] == 6
    _stream(sim, session, MANUAL_CUT)
    assert session.out[-1]["details"]["utterance_index"] == 7


# --- §4: answers -------------------------------------------------------------------------------


def test_an_all_empty_result_is_missing_result_in_its_place() -> None:
    """Empty (or blank) text and no audio: missing_result, in order, one per utterance."""
    sim = Sim([8])
    session = _open(sim)
    for index in range(3):
        _utter(sim, session, index)
    node = sim.nodes["n0"]
    _reply(sim, node, 2, text_asr="hello", text_translated="hallo")
    _reply(sim, node, 1, text_asr="  ", tts_audio=None, wall_ms=1234)
    assert session.out == []
    _reply(sim, node, 0)
    kinds = [(m["type"], m["utterance_index"]) for m in session.out]
    assert kinds == [("missing_result", 0), ("missing_result", 1), ("translation_result", 2)]
    missing = session.out[1]
    assert missing["reason"] == "silence_detected" and missing["created_at_ms"] == 1234
    assert missing["trace_id"] == "trace-of-session" and missing["session_id"] == "s-1"
    assert missing["node_id"] == "n0" and missing["job_id"].startswith("job-")
    assert sim.core.in_flight == 0


def test_results_with_text_form_groups() -> None:
    """Within 2000 ms of the group's anchor the group continues; later a new one starts."""
    sim = Sim([8])
    session = _open(sim)
    for index in range(4):
        _utter(sim, session, index)
    node = sim.nodes["n0"]
    _reply(sim, node, 0, text_asr="a", wall_ms=10_000)
    _reply(sim, node, 1, text_asr="b", wall_ms=11_500)
    _reply(sim, node, 2, text_translated="no asr", wall_ms=11_600)
    _reply(sim, node, 3, text_asr="c", wall_ms=12_100)
    groups = [(m.get("group_id"), m.get("part_index")) for m in session.out]
    assert groups == [
        ("group_s-1_10000", 0),
        ("group_s-1_10000", 1),
        (None, None),
        ("group_s-1_12100", 0),
    ]


def test_group_window_follows_tts_play_ended() -> None:
    """tts_play_ended moves the group's anchor; only the current group can be moved."""
    state = GroupState("s")
    assert state.on_result(1000) == ("group_s_1000", 0)
    assert not state.on_tts_play_ended("group_s_999", 5000)
    assert state.on_tts_play_ended("group_s_1000", 5000)
    assert state.on_result(5000 + GROUP_WINDOW_MS) == ("group_s_1000", 1)
    assert state.on_result(5000 + GROUP_WINDOW_MS + 1) == (f"group_s_{7001}", 0)
    empty = GroupState("s")
    assert not empty.on_tts_play_ended("", 1)


def test_play_ended_on_the_core() -> None:
    """DispatchCore.play_ended: False before any group, True for the current one."""
    sim = Sim([8])
    session = _open(sim)
    assert session.session is not None
    assert not sim.core.play_ended(session.session, "group_s-1_1", 1)
    _utter(sim, session, 0)
    _reply(sim, sim.nodes["n0"], 0, text_asr="a", wall_ms=1)
    assert sim.core.play_ended(session.session, "group_s-1_1", 4000)


def test_node_errors_keep_details_with_index_job_and_node() -> None:
    """A failed result: error details hold the node's, plus utterance_index/job_id/node_id."""
    sim = Sim([8])
    session = _open(sim)
    _utter(sim, session, 3)
    _reply(
        sim,
        sim.nodes["n0"],
        3,
        success=False,
        error={"code": "MODEL_CRASHED", "message": "boom", "details": {"gpu": 1}},
    )
    error = session.out[-1]
    assert error["code"] == "MODEL_CRASHED"
    details = error["details"]
    assert details["gpu"] == 1 and details["utterance_index"] == 3
    assert details["node_id"] == "n0" and details["job_id"].startswith("job-")
