"""``/ws/session``: the session channel of contract §2."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

from aiohttp import web

from switchboard.dispatch.tenants import Unauthorized, authenticate
from switchboard.errors import ProtocolError
from switchboard.protocol import codec, ids
from switchboard.protocol.codec import SessionFrame
from switchboard.protocol.codes import CLOSE_NORMAL, ErrorCode
from switchboard.protocol.messages import (
    AudioChunk,
    ClientHeartbeat,
    SessionClose,
    SessionInit,
    TtsPlayEnded,
    Utterance,
)
from switchboard.protocol.profile import profile_of
from switchboard.protocol.rooms import RoomInbound
from switchboard.server.channel import Channel, bad_frame_error, refuse
from switchboard.server.connections import SessionConnection
from switchboard.server.scheduler import Scheduler
from switchboard.server.streams import SessionStream, stream_limits
from switchboard.sessions.streaming import StreamBuffer, StreamCut

log = logging.getLogger("switchboard.server.session")


async def _open(
    sched: Scheduler, ws: web.WebSocketResponse, frame: bytes
) -> SessionConnection | None:
    try:
        msg = codec.decode_session(frame)
    except ProtocolError as exc:
        await refuse(ws, exc.code, exc.message)
        return None
    if not isinstance(msg, SessionInit):
        await refuse(ws, ErrorCode.INVALID_MESSAGE, "the first frame must be session_init")
        return None
    settings = sched.settings
    try:
        tenant = authenticate(
            msg.token, msg.tenant_id, session_token=settings.session_token, specs=settings.tenants
        )
    except Unauthorized as exc:
        await refuse(ws, ErrorCode.UNAUTHORIZED, str(exc))
        return None
    if sched.closing:
        await refuse(ws, ErrorCode.SESSION_CLOSED, "the scheduler is shutting down")
        return None
    if len(sched.session_conns) >= sched.settings.max_sessions:
        limit = sched.settings.max_sessions
        await refuse(ws, ErrorCode.TOO_MANY_SESSIONS, f"too many open sessions (limit {limit})")
        return None
    session_id = ids.session_id()
    # Encoded before the session exists: nothing may fail between opening it and handing it
    # to the channel, which alone closes it again.
    try:
        profile = profile_of(msg, msg.trace_id or ids.trace_id(), auth_tenant=tenant)
    except ProtocolError as exc:  # a bad features.priority
        await refuse(ws, exc.code, exc.message)
        return None
    ack = codec.session_init_ack(
        session_id,
        profile.trace_id,
        audio_format=profile.audio_format,
        sample_rate=profile.sample_rate,
    )
    conn = sched.session_opened(session_id, ws, msg, profile)
    # session_init_ack is always the first frame the server sends on a session (contract §2).
    conn.push(ack)
    return conn


async def _on_frame(
    sched: Scheduler, conn: SessionConnection, frame: bytes, received: float
) -> bool:
    """Handle one frame; ``True`` when the session is over."""
    if conn.ended:
        return False  # ended by the server (slow consumer): read and drop until it closes
    try:
        msg = codec.decode_session(frame)
    except ProtocolError as exc:
        conn.push(bad_frame_error(exc, frame))  # behind session_init_ack, in order
        return False
    return await _dispatch(sched, conn, msg, frame, received)


async def _gone(sched: Scheduler, conn: SessionConnection) -> None:
    _drop_stream(conn)
    sched.rooms.session_gone(conn)  # a member that closes or disconnects leaves its room
    sched.session_gone(conn)
    await conn.ended_and_closed()


async def _reply(conn: SessionConnection, frame: bytes) -> None:
    conn.push(frame)


async def _dispatch(
    sched: Scheduler, conn: SessionConnection, msg: SessionFrame, frame: bytes, received: float
) -> bool:
    match msg:
        case Utterance():
            # Admission (contract §2 "Accepting") and everything after it is dispatch's; a
            # room member's speech is fanned out to its listeners (lingua-parity §5).
            if conn.room is None:
                await sched.dispatcher.accept(conn.session, msg, frame, received)
            else:
                await sched.rooms.utter(conn, msg, frame, received, closing=sched.closing)
        case AudioChunk():
            if _mine(conn, msg.session_id):
                _on_chunk(sched, conn, msg, received)
        case ClientHeartbeat():
            if _mine(conn, msg.session_id):
                conn.push(codec.server_heartbeat(conn.session_id, int(time.time() * 1000)))
        case SessionClose():
            if _mine(conn, msg.session_id):
                _drop_stream(conn)
                sched.dispatcher.close_session(conn.session)
                conn.push(codec.session_close_ack(conn.session_id))
                await conn.drain()
                await conn.close(CLOSE_NORMAL)
                return True
        case TtsPlayEnded():
            # No reply (lingua-parity §4); one naming a group that is not the session's
            # current one changes nothing, as in Lingua.
            if _mine(conn, msg.session_id):
                sched.dispatcher.play_ended(conn.session, msg.group_id, msg.ts_end_ms)
        case SessionInit():
            conn.push(codec.error(ErrorCode.INVALID_MESSAGE, "the session is already open"))
        case _:
            _room_frame(sched, conn, msg)
    return False


def _room_frame(sched: Scheduler, conn: SessionConnection, msg: RoomInbound) -> None:
    """Rooms and WebRTC signalling (lingua-parity §5–§6) are the room channel's."""
    sched.rooms.handle(conn, msg)


def _mine(conn: SessionConnection, session_id: str) -> bool:
    """A session may only speak for itself (contract §2 "Accepting")."""
    if session_id == conn.session_id:
        return True
    conn.push(
        codec.error(ErrorCode.INVALID_SESSION, "session_id does not name this connection's session")
    )
    return False


# --- streamed speech (docs/protocol.md §2 "Streaming", lingua-parity.md §3) ----------------


def _on_chunk(sched: Scheduler, conn: SessionConnection, msg: AudioChunk, received: float) -> None:
    try:
        audio = codec.chunk_audio(msg)
    except ProtocolError as exc:
        conn.push(codec.error(exc.code, exc.message, {"seq": msg.seq}))  # not buffered
        return
    stream = conn.stream
    if stream is None:
        if not audio and not msg.is_final:
            return  # nothing to buffer, nothing to cut
        # A bare final opens a buffer too: its utterance's one chunk may follow (streaming.py).
        # The utterance this chunk opens counts as pending from now: a session that streams
        # faster than it is answered holds at most --max-pending-per-session utterances.
        if len(conn.session.pending) >= sched.settings.max_pending_per_session:
            if audio:  # (a bare final refused nothing: the chunk behind it will be told)
                conn.push(
                    codec.error(
                        ErrorCode.TOO_MANY_PENDING,
                        "too many pending utterances: audio_chunk not buffered",
                        {"seq": msg.seq},
                    )
                )
            return
        profile = conn.session.profile  # the session's negotiated audio (session_init_ack)
        buffer = StreamBuffer(
            stream_limits(sched.settings),
            audio_format=profile.audio_format,
            sample_rate=profile.sample_rate,
        )
        stream = conn.stream = SessionStream(buffer)
    cuts = stream.buffer.push(audio, is_final=msg.is_final, now=asyncio.get_running_loop().time())
    _admit(sched, conn, cuts, received)
    _rearm(sched, conn, stream)


def _stream_timer(sched: Scheduler, conn: SessionConnection) -> None:
    stream = conn.stream
    if stream is None:
        return
    if conn.ended or sched.session_conns.get(conn.session_id) is not conn:
        _drop_stream(conn)  # ended by the server (slow consumer): nothing more is admitted
        return
    now = stream.fired()
    cuts = stream.buffer.wake(now)
    _admit(sched, conn, cuts, time.perf_counter())
    _rearm(sched, conn, stream)


def _rearm(sched: Scheduler, conn: SessionConnection, stream: SessionStream) -> None:
    if not stream.arm(_stream_timer, sched, conn):
        conn.stream = None  # nothing buffered: the session is back to holding nothing


def _admit(
    sched: Scheduler, conn: SessionConnection, cuts: list[StreamCut], received: float
) -> None:
    """Each cut becomes one job at the session's next index, answered like an utterance;
    a room member's is fanned out to its listeners (lingua-parity §5)."""
    if not cuts:
        return
    profile = conn.session.profile
    for cut in cuts:
        audio = base64.b64encode(cut.audio).decode("ascii")
        if conn.room is None:
            sched.dispatcher.admit_streamed(
                conn.session,
                audio,
                audio_format=profile.audio_format,
                sample_rate=profile.sample_rate,
                cut=cut.reason.cut,
                received=received,
            )
        else:
            sched.rooms.admit_streamed(
                conn,
                audio,
                audio_format=profile.audio_format,
                sample_rate=profile.sample_rate,
                cut=cut.reason.cut,
                received=received,
                closing=sched.closing,
            )


def _drop_stream(conn: SessionConnection) -> None:
    """The session is ending: what is buffered goes with its pending utterances (§2
    "Ending": cancelled, unanswered)."""
    stream = conn.stream
    if stream is not None:
        stream.cancel()
        conn.stream = None


handle = Channel(open_peer=_open, on_text=_on_frame, reply=_reply, gone=_gone).handle
