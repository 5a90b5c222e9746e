"""--ping-interval end to end (docs/security.md): a peer that goes silent and does not answer
pings is dropped within a few intervals, and what it held comes back; a peer that answers
pings stays however long it is idle.

The silent peers are raw sockets (``RawWebSocket``): they answer nothing, pings included, as a
peer whose machine lost power or whose NAT forgot the flow would (no FIN ever comes).
"""

from __future__ import annotations

import json
from typing import Any

from switchboard.bench.wsclient import OP_PONG
from tests.e2e.harness import (
    FakeNode,
    FakeSession,
    NodeBehaviour,
    RawWebSocket,
    ServerProcess,
    eventually,
    of_type,
    scaled,
)
from tests.security.conftest import Serve

# Short enough that a test waits seconds, long enough that a loaded 2-core machine still
# answers a live peer's pong in time (scaled like every wait).
PING = 0.5
INIT = {
    "type": "session_init",
    "client_version": "1",
    "platform": "pings",
    "src_lang": "en",
    "tgt_lang": "de",
}


def _flags() -> tuple[str, ...]:
    # Heartbeats far apart: a node must be found dead by the pings, not by 3 missed heartbeats.
    return ("--ping-interval", str(scaled(PING)), "--heartbeat-interval", "300")


def _within() -> float:
    """Unscaled bound for a drop: silence (1 interval) + the pong wait (1/2) + slack."""
    return PING * 4


async def _raw_node(server: ServerProcess, node_id: str) -> RawWebSocket:
    raw = await RawWebSocket.connect(server, "/ws/node")
    node = FakeNode(server.ws_url + "/ws/node", node_id=node_id, max_concurrency=1)
    beat = node.heartbeat_message(node_id)
    await raw.send_together(json.dumps(node.register_message()), json.dumps(beat))
    [ack] = await raw.receive_texts(1)
    assert ack["type"] == "node_register_ack", ack
    await server.wait_node_status(node_id, "ready")
    return raw


async def test_a_silent_node_is_dropped_and_its_job_fails_over(serve: Serve) -> None:
    """A node that took a job and then answers nothing, pings included, is dropped within a
    few ping intervals (long before 3 missed heartbeats): its slot is released and its job is
    retried on another node, which answers the session."""
    server = await serve(*_flags())
    silent = await _raw_node(server, "silent-node")
    session = FakeSession(server.ws_url + "/ws/session")
    await session.connect()
    await session.init()
    await session.utter(0)
    await server.wait_stats(lambda s: s["reservations_held"] == 1, "the silent node holds a slot")

    backup = FakeNode(server.ws_url + "/ws/node", node_id="backup", max_concurrency=1)
    await backup.connect()
    await backup.register()
    await backup.heartbeat()
    # From here the silent node never reads nor pongs again.
    await server.wait_node_status("silent-node", None, within=_within())
    answer = await session.wait_answer(0)
    assert answer["type"] == "translation_result", answer
    assert answer["node_id"] == "backup"
    await server.wait_idle()
    # The backup node has been idle for several intervals meanwhile: answering pings (aiohttp
    # does) keeps it, though it sent nothing.
    assert (await server.nodes())["backup"]["status"] == "ready"
    await silent.close()
    await session.close()
    await backup.close()


async def test_a_silent_session_is_dropped_and_its_job_cancelled(serve: Serve) -> None:
    """A session with an utterance on a node that then answers nothing, pings included, is
    dropped within a few ping intervals: the node gets job_cancel and the slot is released."""
    server = await serve(*_flags())
    node = FakeNode(
        server.ws_url + "/ws/node",
        node_id="worker",
        max_concurrency=1,
        behaviour=NodeBehaviour(mode="none"),  # holds the job until it is cancelled
    )
    await node.connect()
    await node.register()
    await node.heartbeat()
    await server.wait_node_status("worker", "ready")

    raw = await RawWebSocket.connect(server, "/ws/session")
    await raw.send_together(json.dumps(INIT))
    [ack] = await raw.receive_texts(1)
    assert ack["type"] == "session_init_ack", ack
    utterance: dict[str, Any] = FakeSession(server.ws_url).utterance_message(0)
    utterance["session_id"] = ack["session_id"]
    await raw.send_together(json.dumps(utterance))
    assign = await node.wait_for(of_type("job_assign"))
    await server.wait_stats(lambda s: s["reservations_held"] == 1, "the job holds a slot")

    # From here the session never reads nor pongs again.
    await server.wait_stats(
        lambda s: s["sessions"] == 0 and s["reservations_held"] == 0,
        "the silent session dropped and its slot released",
        within=_within(),
    )
    cancel = await node.wait_for(of_type("job_cancel"))
    assert cancel["job_id"] == assign["job_id"]

    async def node_still_there() -> bool:
        return (await server.nodes()).get("worker", {}).get("status") == "ready"

    await eventually(node_still_there, "the idle node that answers pings is kept")
    await raw.close()
    await node.close()


async def test_the_server_answers_a_peers_pings(serve: Serve) -> None:
    """Pings from the peer are answered with the same payload, before the session is open and
    after, and count as frames like any other (the session lives on)."""
    server = await serve(*_flags())
    raw = await RawWebSocket.connect(server, "/ws/session")
    await raw.ping(b"early")
    assert await raw.next_frame() == (OP_PONG, b"early")
    await raw.send_together(json.dumps(INIT))
    [ack] = await raw.receive_texts(1)
    assert ack["type"] == "session_init_ack", ack
    await raw.ping(b"later")
    assert await raw.next_frame() == (OP_PONG, b"later")
    heartbeat = {"type": "client_heartbeat", "session_id": ack["session_id"], "timestamp": 1}
    await raw.send_together(json.dumps(heartbeat))
    [beat] = await raw.receive_texts(1)
    assert beat["type"] == "server_heartbeat", beat
    await raw.close()
