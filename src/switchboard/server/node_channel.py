"""``/ws/node``: the node channel of contract §1."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from switchboard.errors import ProtocolError
from switchboard.protocol import codec, ids
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import (
    AsrPartial,
    JobAck,
    JobResult,
    JobStarted,
    NodeErrorMsg,
    NodeHeartbeat,
    NodeInbound,
    NodeRegister,
)
from switchboard.server.auth import token_ok
from switchboard.server.channel import Channel, bad_frame_error, first_frame, refuse
from switchboard.server.connections import NodeConnection, send
from switchboard.server.scheduler import Scheduler

log = logging.getLogger("switchboard.server.node")
# Heartbeats skipped before node_register; a node racing its reconnection sends one or two,
# and a socket sending more is not registering (its frames are not yet rate-limited).
EARLY_HEARTBEATS = 8


async def _register(
    sched: Scheduler, ws: web.WebSocketResponse, frame: bytes
) -> NodeConnection | None:
    msg = await _first_message(sched, ws, frame)
    if msg is None:
        return None
    if not isinstance(msg, NodeRegister):
        await refuse(ws, ErrorCode.INVALID_MESSAGE, "the first frame must be node_register")
        return None
    if not token_ok(msg.token, sched.settings.node_token):
        await refuse(ws, ErrorCode.UNAUTHORIZED, "missing or wrong node token")
        return None
    node_id = msg.node_id or ids.node_id()
    if node_id in sched.nodes or not await sched.registry.register(node_id, msg):
        await refuse(ws, ErrorCode.NODE_ID_CONFLICT, f"node_id {node_id} is already connected")
        return None
    conn = NodeConnection(node_id, ws)
    sched.node_joined(conn)
    await send(ws, codec.node_register_ack(node_id))
    return conn


async def _first_message(
    sched: Scheduler, ws: web.WebSocketResponse, frame: bytes
) -> NodeInbound | None:
    """The first message after up to ``EARLY_HEARTBEATS`` heartbeats; ``None`` once refused.

    Lingua's Electron node can send a heartbeat before its ``node_register`` when it
    reconnects: those are skipped, not refused (lingua-parity §7).  The handshake's time limit
    still runs from the first frame, so heartbeats cannot hold a socket open unregistered.
    """
    limit = sched.settings.handshake_timeout
    deadline = asyncio.get_running_loop().time() + limit
    skipped = 0
    while True:
        try:
            msg = codec.decode_node(frame)
        except ProtocolError as exc:
            await refuse(ws, exc.code, exc.message)
            return None
        # Past the allowance a heartbeat is refused like any first frame but node_register.
        if not isinstance(msg, NodeHeartbeat) or skipped == EARLY_HEARTBEATS:
            return msg
        skipped += 1
        remaining = deadline - asyncio.get_running_loop().time()
        next_frame = await first_frame(ws, max(remaining, 0.0), waited=limit)
        if next_frame is None:
            return None
        frame = next_frame


async def _on_frame(sched: Scheduler, conn: NodeConnection, frame: bytes, _: float) -> bool:
    try:
        msg = codec.decode_node(frame)
    except ProtocolError as exc:
        await send(conn.ws, bad_frame_error(exc, frame))
        return False
    await _dispatch(sched, conn, msg, frame)
    return False


async def _gone(sched: Scheduler, conn: NodeConnection) -> None:
    await sched.node_gone(conn)


async def _reply(conn: NodeConnection, frame: bytes) -> None:
    await send(conn.ws, frame)


handle = Channel(open_peer=_register, on_text=_on_frame, reply=_reply, gone=_gone).handle


async def _dispatch(sched: Scheduler, conn: NodeConnection, msg: NodeInbound, frame: bytes) -> None:
    node_id = conn.node_id
    # ``conn.routes`` is None unless another instance has placed a job on this node: then its
    # frames about that job go back to that instance (cluster/relay.py).
    match msg:
        case JobResult():
            if conn.routes is None or not sched.forward(conn, msg.job_id, frame, final=True):
                sched.dispatcher.result(node_id, msg, frame)
        case JobAck() | JobStarted():
            if conn.routes is None or not sched.forward(conn, msg.job_id, frame, final=False):
                sched.dispatcher.ack(node_id, msg)
        case AsrPartial():
            if conn.routes is None or not sched.forward(conn, msg.job_id, frame, final=False):
                sched.dispatcher.partial(node_id, msg, frame)
        case NodeHeartbeat():
            if msg.node_id != node_id:  # a node may only speak for itself (contract §1)
                await send(
                    conn.ws,
                    codec.error(
                        ErrorCode.INVALID_MESSAGE, "node_id does not match this connection"
                    ),
                )
                return
            await sched.registry.heartbeat(node_id, msg)
        case NodeRegister():
            await send(
                conn.ws,
                codec.error(ErrorCode.INVALID_MESSAGE, "this connection is already registered"),
            )
        case NodeErrorMsg():
            log.warning("node %s reports %s: %s", node_id, msg.code, msg.message)
