"""Lingua's session additions through the SDK, a real scheduler and an in-process agent
(lingua-parity §1, §2, §4): the session's fields reach the backend, silence is answered
missing_result, results form groups."""

from __future__ import annotations

import contextlib

from switchboard.client import Session, sine_pcm16
from tests.agent.support import ProbeBackend, SchedulerFactory, ready_agent

AUDIO = sine_pcm16(0.1)


async def test_the_backend_sees_the_session_fields_and_the_cut(
    scheduler_factory: SchedulerFactory,
) -> None:
    """session_init's mode fields, features, dialect and tenant reach the backend's Job with
    streaming ASR on; manual_cut becomes is_manual_cut; the ack names opus / 16000."""
    server = await scheduler_factory()
    backend = ProbeBackend()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, backend)
        session = await stack.enter_async_context(
            Session.connect(
                server.url,
                src_lang="en",
                tgt_lang="de",
                mode="two_way_auto",
                lang_a="en",
                lang_b="de",
                auto_langs=["en", "de"],
                features={"speaker_identification": True},
                dialect="ch",
                tenant_id="acme",
            )
        )
        assert (session.negotiated_codec, session.negotiated_sample_rate) == ("opus", 16000)
        await session.translate(AUDIO, manual_cut=True)
        await session.translate(AUDIO, features={"emotion_detection": True})
    cut, plain = backend.jobs
    for job in (cut, plain):
        assert (job.mode, job.lang_a, job.lang_b) == ("two_way_auto", "en", "de")
        assert job.auto_langs == ("en", "de") and job.tenant_id == "acme"
        assert job.dialect == "ch" and job.trace_id == session.trace_id
        assert job.streaming_asr and job.partial_update_interval_ms == 1000
        assert job.opaque["mode"] == "two_way_auto"  # still there for older backends
    assert cut.features == {"speaker_identification": True} and cut.is_manual_cut
    assert plain.features == {"emotion_detection": True} and not plain.is_manual_cut
    assert not (cut.is_pause_triggered or cut.is_timeout_triggered) and cut.padding_ms == 0


async def test_streaming_asr_flag_off(scheduler_factory: SchedulerFactory) -> None:
    """serve --no-streaming-asr: jobs do not ask for partials."""
    server = await scheduler_factory("--no-streaming-asr")
    backend = ProbeBackend()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, backend)
        session = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de")
        )
        await session.translate(AUDIO)
    (job,) = backend.jobs
    assert not job.streaming_asr and job.partial_update_interval_ms is None


async def test_silence_is_a_missing_result_answer(scheduler_factory: SchedulerFactory) -> None:
    """A node's all-empty result resolves the handle as missing (silence_detected)."""
    server = await scheduler_factory()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, ProbeBackend(silent=True))
        session = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de")
        )
        answer = await session.translate(AUDIO, utterance_index=3)
    assert answer.missing and answer.missing_reason == "silence_detected"
    assert answer.utterance_index == 3 and answer.fields["type"] == "missing_result"
    assert answer.text_asr == "" and answer.group_id is None and answer.job_id


async def test_results_close_together_share_a_group(scheduler_factory: SchedulerFactory) -> None:
    """Two results within the group window share group_id, part_index 0 then 1;
    tts_play_ended gets no reply and the session lives on."""
    server = await scheduler_factory()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, ProbeBackend())
        session = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de")
        )
        first = await session.translate(AUDIO)
        assert first.group_id is not None and first.group_id.startswith("group_")
        await session.tts_play_ended(first.group_id)
        second = await session.translate(AUDIO)
    assert second.group_id == first.group_id
    assert (first.part_index, second.part_index) == (0, 1)
