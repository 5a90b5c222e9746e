"""Valid Lingua messages to mutate (protocol.md §1–§2), for given ids; the node side is the
tools' fake node's frames (``switchboard.tools.fakenode``)."""

from __future__ import annotations

import base64
from typing import Any

from switchboard.tools import fakenode

JSON = dict[str, Any]
AUDIO = base64.b64encode(b"\x01\x00" * 64).decode("ascii")


def node_register(node_id: str, token: str | None = None) -> JSON:
    return fakenode.register_message(
        node_id,
        [("fz", "zz")],
        version="2.1.0",
        max_concurrency=2,
        token=token,
        hardware={"cpu_cores": 8, "memory_gb": 32, "gpus": [{"name": "fuzz"}]},
        installed_models=[
            {"model_id": "m", "kind": "nmt", "src_lang": "fz", "tgt_lang": "zz", "version": "1"}
        ],
        installed_services=[
            {"service_id": "asr-1", "type": "asr", "device": "cuda", "status": "running"}
        ],
        features={"streaming": True},
    )


def node_frames(node_id: str, job: JSON) -> list[JSON]:
    """Every node → scheduler type after registration; ``job`` gives the ids of a job
    (someone else's, or none that exists)."""
    job = {"utterance_index": 0, **job}
    heartbeat = fakenode.heartbeat_message(
        node_id,
        running_jobs=0,
        services={"asr": True},
        usage={"cpu_percent": 1.5, "mem_percent": 2},
    )
    heartbeat["timestamp"] = 1700000000000  # fixed: a seed must give the same frames
    return [
        heartbeat,
        fakenode.ack_message(job, node_id),
        fakenode.ack_message(job, node_id, "job_started"),
        fakenode.result_message(job, node_id, text_asr="FORGED", text_translated="FORGED"),
        fakenode.partial_message(job, node_id, "FORGED"),
        {"type": "node_error", "node_id": node_id, "code": "X", "message": "fuzz"},
        node_register(node_id),
    ]


def session_init(token: str | None = None) -> JSON:
    message: JSON = {
        "type": "session_init",
        "client_version": "3.0.0",
        "platform": "fuzz",
        "src_lang": "en",
        "tgt_lang": "de",
        # Lingua's session fields (lingua-parity §1), and the audio it negotiates.
        "mode": "two_way_auto",
        "lang_a": "en",
        "lang_b": "de",
        "auto_langs": ["en", "de"],
        "features": {"speaker_identification": True},
        "tenant_id": "fuzz",
        "dialect": None,
        "audio_format": "opus",
        "sample_rate": 16000,
    }
    if token is not None:
        message["token"] = token
    return message


def utterance(session_id: str, index: int) -> JSON:
    return {
        "type": "utterance",
        "session_id": session_id,
        "utterance_index": index,
        "src_lang": "en",
        "tgt_lang": "de",
        "audio": AUDIO,
        "audio_format": "pcm16",
        "sample_rate": 16000,
        "manual_cut": True,
        "features": {"emotion_detection": True},
    }


def tts_play_ended(session_id: str) -> JSON:
    return {
        "type": "tts_play_ended",
        "session_id": session_id,
        "trace_id": "t-fuzz",
        "group_id": f"group_{session_id}_1700000000000",
        "ts_end_ms": 1700000000000,
    }


def audio_chunk(session_id: str, seq: int, *, final: bool = False) -> JSON:
    return {
        "type": "audio_chunk",
        "session_id": session_id,
        "seq": seq,
        "is_final": final,
        "payload": AUDIO,
        "client_timestamp_ms": 1700000000000,
    }


def session_frames(session_id: str, index: int) -> list[JSON]:
    """Every client → scheduler type on an open session (session_init last)."""
    return [
        utterance(session_id, index),
        utterance(session_id, index),
        audio_chunk(session_id, index),
        {"type": "client_heartbeat", "session_id": session_id, "timestamp": 1700000000000},
        tts_play_ended(session_id),
        {"type": "session_close", "session_id": session_id, "reason": "fuzz"},
        *room_frames(session_id),
        session_init(),
    ]


def room_frames(session_id: str) -> list[JSON]:
    """Every room and signalling type (lingua-parity §5–§6); ``session_id`` is the peer the
    signals and the preference name."""
    code = "123456"
    return [
        {"type": "room_create", "client_ts": 1700000000000, "display_name": "Fuzz"},
        {"type": "room_join", "room_code": code, "display_name": "F", "preferred_lang": "de"},
        {"type": "room_leave", "room_code": code},
        {
            "type": "room_raw_voice_preference",
            "room_code": code,
            "target_session_id": session_id,
            "receive_raw_voice": False,
        },
        {"type": "webrtc_offer", "room_code": code, "to": session_id, "sdp": {"sdp": "v=0"}},
        {"type": "webrtc_answer", "room_code": code, "to": session_id, "sdp": {"type": "answer"}},
        {"type": "webrtc_ice", "room_code": code, "to": session_id, "candidate": {"c": 1}},
    ]
