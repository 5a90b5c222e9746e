"""`switchboard translate` against a saturated scheduler (protocol.md §3 "Saturation")."""

from __future__ import annotations

import asyncio
import contextlib

from switchboard.client import Session, sine_pcm16
from tests.agent.support import ProbeBackend, SchedulerFactory, ready_agent, scaled
from tests.client.test_translate_cli import translate

QUEUE_AGE = "0.2"  # seconds: the bound forced here (not scaled: it is what is tested)


async def test_translate_backs_off_overloaded_or_reports_it(
    scheduler_factory: SchedulerFactory,
) -> None:
    """One slot, held, and a job waiting past --overload-queue-age: the command's utterance
    is refused OVERLOADED.  With --overload-retries 0 it reports the code (status 1); with
    retries it backs off, resends once the line has emptied, and prints the answer."""
    server = await scheduler_factory("--overload-queue-age", QUEUE_AGE, pending_timeout=10)
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, ProbeBackend(delay=scaled(1.0)), max_concurrency=1)
        session = await stack.enter_async_context(
            Session.connect(server.ws_url, src_lang="en", tgt_lang="de")
        )
        audio = sine_pcm16(0.1)
        held = [await session.send(audio) for _ in range(2)]  # one running, one waiting
        await asyncio.sleep(0.3)
        status, _, err = await translate(
            "--generate-seconds", "0.1", "--overload-retries", "0", "--url", server.ws_url
        )
        assert status == 1 and "OVERLOADED" in err, err
        status, out, err = await translate(
            "--generate-seconds", "0.1", "--overload-retries", "10", "--url", server.ws_url
        )
        assert status == 0, err
        assert "text_translated: [de] probe" in out
        for handle in held:
            await handle
