"""--max-frames-per-second / --frame-burst end to end (docs/security.md): a connection over its
rate gets RATE_LIMITED, then close 1008, and what it held is freed; one within its rate, or a
burst within the default budget, is served in full."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.harness import FakeNode, NodeBehaviour, b64, of_type
from tests.security.clients import Client, session_init
from tests.security.conftest import Serve

TIGHT = ("--max-frames-per-second", "5", "--frame-burst", "10")


def _beat(session_id: str, n: int) -> dict[str, Any]:
    return {"type": "client_heartbeat", "session_id": session_id, "timestamp": n}


async def _frames_until_closed(client: Client) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while (frame := await client.receive()) is not None:
        frames.append(frame)
    return frames


async def test_a_flooding_session_is_rate_limited_and_its_job_cancelled(serve: Serve) -> None:
    """With a burst of 10, a session that sends an utterance and then 30 heartbeats at once
    gets RATE_LIMITED (with the limits in details) and close
    1008; its pending job is cancelled on the node and the slot released."""
    server = await serve(*TIGHT)
    node = FakeNode(server.ws_url + "/ws/node", node_id="worker", behaviour=NodeBehaviour("none"))
    await node.connect()
    await node.register()
    await node.heartbeat()
    await server.wait_node_status("worker", "ready")

    client = await Client.connect(server, "/ws/session")
    await client.send(session_init())
    ack = await client.receive()
    assert ack is not None and ack["type"] == "session_init_ack"
    session_id = ack["session_id"]
    await client.send(
        {
            "type": "utterance",
            "session_id": session_id,
            "utterance_index": 0,
            "src_lang": "en",
            "tgt_lang": "de",
            "audio": b64(b"\0" * 64),
            "audio_format": "pcm16",
            "sample_rate": 16000,
        }
    )
    assign = await node.wait_for(of_type("job_assign"))
    for n in range(30):
        await client.send(_beat(session_id, n))
    frames = await _frames_until_closed(client)
    beats = [f for f in frames if f["type"] == "server_heartbeat"]
    # At most the burst's worth is served (the utterance took one); answers still queued for
    # the session when it is cut off are dropped with it, as for a slow consumer.
    assert len(beats) <= 9, frames
    last = frames[-1]
    assert last["type"] == "error" and last["code"] == "RATE_LIMITED", frames
    assert last["details"] == {"max_frames_per_second": 5, "frame_burst": 10}
    assert client.ws.close_code == 1008
    cancel = await node.wait_for(of_type("job_cancel"))
    assert cancel["job_id"] == assign["job_id"]
    await server.wait_stats(
        lambda s: s["sessions"] == 0 and s["reservations_held"] == 0, "session gone, slot free"
    )
    await client.close()
    await node.close()


async def test_a_flooding_node_is_rate_limited_and_removed(serve: Serve) -> None:
    """A node that sends 30 heartbeats at once against a burst of 10 gets RATE_LIMITED, close
    1008, and is no longer listed."""
    server = await serve(*TIGHT)
    spec = FakeNode(server.ws_url + "/ws/node", node_id="flooder")
    client = await Client.connect(server, "/ws/node")
    await client.send(spec.register_message())
    ack = await client.receive()
    assert ack is not None and ack["type"] == "node_register_ack"
    await client.send(spec.heartbeat_message("flooder"))
    await server.wait_node_status("flooder", "ready")
    for _ in range(30):
        await client.send(spec.heartbeat_message("flooder"))
    frames = await _frames_until_closed(client)
    assert frames and frames[-1]["code"] == "RATE_LIMITED", frames
    assert client.ws.close_code == 1008
    await server.wait_node_status("flooder", None)
    await client.close()


async def test_a_sender_within_its_rate_is_never_limited(serve: Serve) -> None:
    """At 10 frames/s against a limit of 20/s with a burst of only 3, every frame is served
    for longer than the burst alone would last."""
    server = await serve("--max-frames-per-second", "20", "--frame-burst", "3")
    client = await Client.connect(server, "/ws/session")
    await client.send(session_init())
    ack = await client.receive()
    assert ack is not None
    for n in range(15):
        await client.send(_beat(ack["session_id"], n))
        answer = await client.receive()
        assert answer is not None and answer["type"] == "server_heartbeat", answer
        await asyncio.sleep(0.1)
    await client.close()


async def test_the_default_budget_serves_a_busy_burst(serve: Serve) -> None:
    """With the defaults, a session sending 1,000 frames as fast as it can (far above the tens
    of utterances a second a busy client sends) gets every answer and stays open."""
    server = await serve()
    client = await Client.connect(server, "/ws/session")
    await client.send(session_init())
    ack = await client.receive()
    assert ack is not None
    for n in range(1000):
        await client.send(_beat(ack["session_id"], n))
    for _ in range(1000):
        answer = await client.receive()
        assert answer is not None and answer["type"] == "server_heartbeat", answer
    assert not client.ws.closed
    await client.close()
