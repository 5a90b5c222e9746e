"""Room fan-out end to end (lingua-parity §5 "Fan-out"), on both reservation stores.

The node applies Lingua's duplicate-text filter (``NodeBehaviour.lingua_dedup``): every
language's job of one utterance carries the same speech, so were they sent under one
``session_id`` all but the first language would go unanswered.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.e2e.conftest import Peers
from tests.e2e.harness import (
    FakeNode,
    FakeSession,
    Frame,
    NodeBehaviour,
    ServerProcess,
    b64,
    of_type,
)

PAIRS = [("en", "de"), ("en", "fr"), ("de", "en"), ("fr", "en")]
LINGUA = NodeBehaviour(lingua_dedup=True)
ANSWERS = ("translation_result", "error", "missing_result")


def answers(peer: FakeSession) -> list[Frame]:
    return [f for f in peer.frames if f.get("type") in ANSWERS]


async def wait_answers(peer: FakeSession, count: int) -> list[Frame]:
    return await peer.wait_count(lambda f: f.get("type") in ANSWERS, count)


def tgt_of(node: FakeNode, frames: Sequence[Frame]) -> set[str]:
    by_job = {a["job_id"]: a["tgt_lang"] for a in node.assigns}
    return {by_job[f["job_id"]] for f in frames}


async def room(
    server: ServerProcess, peers: Peers, *langs: str | None
) -> tuple[list[FakeSession], str]:
    """Sessions in one room, the first its creator, each with its preferred_lang."""
    members = [await peers.session(server) for _ in langs]
    first = langs[0]
    code = await members[0].create_room(**({"preferred_lang": first} if first else {}))
    for member, lang in zip(members[1:], langs[1:], strict=True):
        joined = await member.join_room(code, **({"preferred_lang": lang} if lang else {}))
        assert joined["type"] == "room_members"
    return members, code


async def test_one_job_per_listener_language_answered_to_its_listeners_only(
    server: ServerProcess, peers: Peers
) -> None:
    """Speaker en, listeners de, de, fr and one without a language: each utterance makes a de
    and a fr job under distinct node-side session ids; both de listeners get the de answers,
    the fr listener the fr ones, in the speaker's order; the speaker and the member without a
    language get none — and Lingua's duplicate filter drops nothing."""
    node = await peers.node(server, pairs=PAIRS, behaviour=LINGUA)
    (speaker, de1, de2, fr, mute), code = await room(server, peers, "en", "de", "de", "fr", None)
    for index in (0, 1, 2):
        await speaker.utter(index)
    for listener, lang in ((de1, "de"), (de2, "de"), (fr, "fr")):
        got = await wait_answers(listener, 3)
        assert [f["type"] for f in got] == ["translation_result"] * 3, got
        assert [f["utterance_index"] for f in got] == [0, 1, 2]
        assert {f["session_id"] for f in got} == {speaker.session_id}
        assert {f["speaker_session_id"] for f in got} == {speaker.session_id}
        assert {f["room_code"] for f in got} == {code}
        assert tgt_of(node, got) == {lang}
    assert node.dropped_duplicates == []
    assert len(node.assigns) == 6
    node_sessions = {a["session_id"] for a in node.assigns}
    assert len(node_sessions) == 2 and speaker.session_id not in node_sessions
    for peer in (speaker, mute):
        await peer.sync()
        assert answers(peer) == []
    assert [f["job_id"] for f in answers(de1)] == [f["job_id"] for f in answers(de2)]


async def test_the_duplicate_filter_bites_when_languages_share_a_session_id(
    server: ServerProcess, peers: Peers
) -> None:
    """The fake node's filter is Lingua's: the same text twice on one session_id is dropped
    (what fan-out under the speaker's own id would meet)."""
    node = await peers.node(server, pairs=PAIRS, behaviour=LINGUA)
    session = await peers.session(server)
    await session.utter(0)
    await session.wait_answer(0)
    await session.send(session.utterance_message(1) | {"utterance_index": 0})
    await node.wait_count(of_type("job_assign"), 2)
    await node.sync()
    assert len(node.dropped_duplicates) == 1


async def test_without_another_member_language_the_utterance_is_an_ordinary_job(
    server: ServerProcess, peers: Peers
) -> None:
    node = await peers.node(server, pairs=PAIRS)
    (speaker, silent), _ = await room(server, peers, "de", None)
    await speaker.utter(0)
    answer = await speaker.wait_answer(0)
    assert answer["type"] == "translation_result" and "speaker_session_id" not in answer
    assert node.assigns[0]["session_id"] == speaker.session_id
    assert node.assigns[0]["tgt_lang"] == speaker.tgt_lang
    await silent.sync()
    assert answers(silent) == []


async def test_answers_keep_each_speakers_order_and_errors_reach_the_listeners(
    server: ServerProcess, peers: Peers
) -> None:
    """Two speakers into one listener language: the node answers out of order and fails one
    job; the listener gets one answer per utterance per speaker, each speaker's in order, the
    failure as an error naming the speaker."""
    node = await peers.node(server, pairs=PAIRS, behaviour=NodeBehaviour(mode="none"))
    (listener, one, two), _ = await room(server, peers, "fr", "en", "en")
    for index in (5, 6):
        await one.utter(index)
        await two.utter(index)
    assigns = await node.wait_count(of_type("job_assign"), 4)
    assert {a["tgt_lang"] for a in assigns} == {"fr"}
    for assign in reversed(assigns):
        failing = assign["utterance_index"] == 5 and assign["session_id"].startswith(one.session_id)
        await node.answer(assign, success=not failing)
    got = await wait_answers(listener, 4)
    by_speaker: dict[str, list[tuple[str, int]]] = {}
    for frame in got:
        index = frame.get("utterance_index", (frame.get("details") or {}).get("utterance_index"))
        by_speaker.setdefault(frame["speaker_session_id"], []).append((frame["type"], index))
    assert by_speaker[one.session_id] == [("error", 5), ("translation_result", 6)]
    assert by_speaker[two.session_id] == [("translation_result", 5), ("translation_result", 6)]
    await listener.sync()
    assert len(answers(listener)) == 4


async def test_a_refused_utterance_is_refused_to_the_speaker(
    server: ServerProcess, peers: Peers
) -> None:
    """A duplicate pending index is refused to the speaker, and no listener hears of it."""
    await peers.node(server, pairs=PAIRS, behaviour=NodeBehaviour(mode="none"))
    (speaker, listener), _ = await room(server, peers, "en", "de")
    await speaker.utter(3)
    await speaker.utter(3)
    refused = await speaker.wait_for(of_type("error", code="INVALID_MESSAGE"))
    assert refused["details"]["utterance_index"] == 3
    await listener.sync()
    assert answers(listener) == []


async def test_a_speaker_that_leaves_has_its_pending_jobs_cancelled(
    server: ServerProcess, peers: Peers
) -> None:
    node = await peers.node(server, pairs=PAIRS, behaviour=NodeBehaviour(mode="none"))
    (speaker, listener), code = await room(server, peers, "en", "de")
    await speaker.utter(0)
    assign = await node.wait_assign()
    await speaker.leave_room(code)
    await node.wait_for(of_type("job_cancel", job_id=assign["job_id"]))
    await node.answer(assign)  # too late: nobody gets it
    await listener.sync()
    assert answers(listener) == []
    await server.wait_idle()


async def test_every_language_carries_the_speakers_session_state_and_silence_is_missing_result(
    server: ServerProcess, peers: Peers
) -> None:
    """Each language's job_assign carries what the speaker's session_init said (mode,
    languages, features, its trace id), with the lane's own target; a silent result reaches
    that language's listeners as missing_result, marked with the speaker."""
    node = await peers.node(server, pairs=PAIRS, behaviour=NodeBehaviour(mode="none"))
    speaker = await peers.raw_session(server)
    await speaker.init(
        mode="two_way_auto", lang_a="en", lang_b="de", features={"speaker_id": 1}, trace_id="t-s"
    )
    code = await speaker.create_room(preferred_lang="en")
    de, fr = await peers.session(server), await peers.session(server)
    await de.join_room(code, preferred_lang="de")
    await fr.join_room(code, preferred_lang="fr")
    await speaker.utter(0)
    assigns = await node.wait_count(of_type("job_assign"), 2)
    assert {a["tgt_lang"] for a in assigns} == {"de", "fr"}
    for assign in assigns:
        assert assign["mode"] == "two_way_auto"
        assert (assign["lang_a"], assign["lang_b"]) == ("en", "de")
        assert assign["features"] == {"speaker_id": 1}
        assert assign["trace_id"] == "t-s"
    for assign in assigns:
        silent = assign["tgt_lang"] == "fr"
        texts = {"text_asr": "", "text_translated": "", "tts_audio": ""} if silent else {}
        await node.answer(assign, **texts)
    (heard,) = await wait_answers(de, 1)
    (missing,) = await wait_answers(fr, 1)
    assert heard["type"] == "translation_result"
    assert missing["type"] == "missing_result" and missing["reason"] == "silence_detected"
    assert missing["session_id"] == missing["speaker_session_id"] == speaker.session_id
    assert missing["utterance_index"] == 0 and missing["trace_id"] == "t-s"


@pytest.mark.server(pause_ms=600_000)
async def test_streamed_speech_fans_out_like_utterances(
    server: ServerProcess, peers: Peers
) -> None:
    """A member's audio_chunk stream, cut by its final chunk, becomes one job per listener
    language (manual cut, the speaker's next index, the lane's session id), and each language's
    listener gets its answer — through Lingua's duplicate filter too."""
    node = await peers.node(server, pairs=PAIRS, behaviour=LINGUA)
    speaker = await peers.raw_session(server)
    await speaker.init(audio_format="pcm16", sample_rate=16000)
    code = await speaker.create_room(preferred_lang="en")
    de, fr = await peers.session(server), await peers.session(server)
    await de.join_room(code, preferred_lang="de")
    await fr.join_room(code, preferred_lang="fr")
    await speaker.utter(4)  # an utterance frame first: the stream's cut takes index 5
    for seq, final in ((0, False), (1, True)):
        await speaker.send(
            {
                "type": "audio_chunk",
                "session_id": speaker.session_id,
                "seq": seq,
                "is_final": final,
                "payload": b64(b"speech " * 8),
            }
        )
    assigns = await node.wait_count(of_type("job_assign"), 4)
    streamed = [a for a in assigns if a["utterance_index"] == 5]
    assert {a["tgt_lang"] for a in streamed} == {"de", "fr"}
    assert all(a["is_manual_cut"] is True for a in streamed)
    assert {a["session_id"] for a in streamed} == {
        f"{speaker.session_id}-de",
        f"{speaker.session_id}-fr",
    }
    for listener in (de, fr):
        got = await wait_answers(listener, 2)
        assert [(f["type"], f["utterance_index"]) for f in got] == [
            ("translation_result", 4),
            ("translation_result", 5),
        ]
    assert node.dropped_duplicates == []
    await speaker.sync()
    assert answers(speaker) == []
