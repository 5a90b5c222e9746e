"""``Session.stream()`` against a real scheduler and an in-process node (docs/client.md
"Streaming"): chunks out, the scheduler's cuts answered back in order."""

from __future__ import annotations

import contextlib

import pytest

from switchboard.agent import Backend, Job, PartialSink, Result
from switchboard.client import Session, SessionClosed, TooManyPending
from tests.agent.support import SchedulerFactory, eventually, ready_agent


class Echo(Backend):
    """Answers with the audio it got, so the test sees how the chunks were cut."""

    name = "echo"

    async def run(self, job: Job, partials: PartialSink) -> Result:
        return Result(text_asr=job.audio.decode(), text_translated=f"[{job.tgt_lang}]")


async def test_stream_ends_utterances_on_demand_and_on_a_pause(
    scheduler_factory: SchedulerFactory,
) -> None:
    """end() cuts what was sent; silence (--pause-ms) cuts too; answers come from answer() in
    order with the session's indexes, and a later send() takes an index above them."""
    server = await scheduler_factory(pause_ms=1000)
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, Echo())
        session = await stack.enter_async_context(
            Session.connect(
                server.url, src_lang="en", tgt_lang="de", audio_format="pcm16", sample_rate=16000
            )
        )
        stream = session.stream()
        assert session.stream() is stream
        for word in (b"one ", b"two ", b"three"):
            await stream.send(word)
        await stream.end()
        first = await stream.answer()
        assert (first.utterance_index, first.text_asr) == (0, "one two three")
        await stream.send(b"left to the pause")
        second = await stream.answer()
        assert (second.utterance_index, second.text_asr) == (1, "left to the pause")
        assert stream.sent_chunks == 5
        plain = await session.translate(b"plain")
        assert (plain.utterance_index, plain.text_asr) == (2, "plain")
    with pytest.raises(SessionClosed):
        await stream.answer()
    with pytest.raises(SessionClosed):
        await stream.send(b"too late")


async def test_a_refused_chunk_is_reported_on_the_stream(
    scheduler_factory: SchedulerFactory,
) -> None:
    """With one utterance pending and --max-pending-per-session 1, the next chunk is refused
    (TOO_MANY_PENDING, not buffered) and the stream lists it under ``refused``."""
    server = await scheduler_factory(max_pending_per_session=1, pending_timeout=30)
    async with Session.connect(
        server.url, src_lang="en", tgt_lang="xx", audio_format="pcm16", sample_rate=16000
    ) as session:
        stream = session.stream()
        await stream.end(b"waits for a node that never comes")
        # Cut once its hangover is over: from then on the utterance is pending.
        await server.wait_stats(lambda stats: stats["jobs_in_flight"] == 1, "the cut")
        await stream.send(b"refused")

        async def refused() -> bool:
            return bool(stream.refused)

        await eventually(refused, "the refusal")
        (error,) = stream.refused
        assert isinstance(error, TooManyPending) and error.details["seq"] == 1
