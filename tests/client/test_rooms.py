"""``session.rooms`` against a real scheduler process (lingua-parity §5–§6)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from switchboard.client import RoomRefused, Session, sine_pcm16
from switchboard.client.rooms import (
    RoomEvent,
    RoomEvents,
    RoomExpired,
    RoomMembers,
    RoomSpeech,
    Signal,
)
from tests.agent.support import ProbeBackend, SchedulerFactory, ready_agent, scaled

AUDIO = sine_pcm16(0.1)


async def next_of(events: RoomEvents, kind: type[RoomEvent]) -> RoomEvent:
    async with asyncio.timeout(scaled(5)):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the events ended before a {kind.__name__}")


async def test_create_join_members_speech_signals_and_leave(
    scheduler_factory: SchedulerFactory,
) -> None:
    """Two members: the joiner's arrival is a RoomMembers event for the creator; the creator's
    utterance reaches the joiner as RoomSpeech in its language (and not the creator); a
    signal arrives from its sender; a leave shows in the members; errors raise RoomRefused."""
    server = await scheduler_factory()
    async with contextlib.AsyncExitStack() as stack:
        await ready_agent(stack, server, ProbeBackend(), pairs=(("en", "de"), ("de", "en")))
        ann = await stack.enter_async_context(
            Session.connect(server.url, src_lang="en", tgt_lang="de")
        )
        bob = await stack.enter_async_context(
            Session.connect(server.url, src_lang="de", tgt_lang="en")
        )
        ann_events, bob_events = ann.rooms.events(), bob.rooms.events()
        room = await ann.rooms.create(display_name="Ann", preferred_lang="en")
        assert len(room.code) == 6 and room.room_id
        assert [m.session_id for m in room.members] == [ann.session_id]
        joined = await bob.rooms.join(room.code, display_name="Bob", preferred_lang="de")
        assert [m.display_name for m in joined.members] == ["Ann", "Bob"]
        update = await next_of(ann_events, RoomMembers)
        assert isinstance(update, RoomMembers) and len(update.members) in (1, 2)
        if len(update.members) == 1:  # the creator's own list came first
            update = await next_of(ann_events, RoomMembers)
        assert isinstance(update, RoomMembers) and len(update.members) == 2

        pending = await ann.send(AUDIO, utterance_index=7)
        heard = await next_of(bob_events, RoomSpeech)
        assert isinstance(heard, RoomSpeech)
        assert heard.speaker == ann.session_id and heard.utterance_index == 7
        assert heard.translation is not None and heard.error is None
        assert not pending.done()  # the speaker's own handle gets no answer in a room

        await bob.rooms.signal("offer", ann.session_id, {"type": "offer", "sdp": "v=0"})
        signal = await next_of(ann_events, Signal)
        assert signal == Signal("offer", room.code, bob.session_id, {"type": "offer", "sdp": "v=0"})

        with pytest.raises(RoomRefused) as caught:
            await bob.rooms.join(room.code)
        assert caught.value.code == "ALREADY_IN_ROOM"
        await bob.rooms.leave()
        left = await next_of(ann_events, RoomMembers)
        assert isinstance(left, RoomMembers)
        assert [m.session_id for m in left.members] == [ann.session_id]
        with pytest.raises(RoomRefused) as caught:
            await bob.rooms.join("000000")
        assert caught.value.code == "ROOM_NOT_FOUND"


async def test_expiry_is_an_event_and_the_events_end_with_the_session(
    scheduler_factory: SchedulerFactory,
) -> None:
    server = await scheduler_factory("--room-idle", str(scaled(0.3)))
    session = await Session.connect(server.url, src_lang="en", tgt_lang="de")
    events = session.rooms.events()
    room = await session.rooms.create()
    expired = await next_of(events, RoomExpired)
    assert isinstance(expired, RoomExpired) and expired.room_code == room.code
    assert session.rooms.current is None
    await session.close()
    async with asyncio.timeout(scaled(5)):
        assert [e async for e in events if isinstance(e, RoomExpired)] == []
