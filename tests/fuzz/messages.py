"""Valid Lingua messages to mutate (protocol.md §1–§2), for given ids."""

from __future__ import annotations

import base64
from typing import Any

JSON = dict[str, Any]
AUDIO = base64.b64encode(b"\x01\x00" * 64).decode("ascii")


def node_register(node_id: str, token: str | None = None) -> JSON:
    message: JSON = {
        "type": "node_register",
        "node_id": node_id,
        "version": "2.1.0",
        "platform": "linux-x86_64",
        "hardware": {"cpu_cores": 8, "memory_gb": 32, "gpus": [{"name": "fuzz"}]},
        "installed_models": [
            {"model_id": "m", "kind": "nmt", "src_lang": "fz", "tgt_lang": "zz", "version": "1"}
        ],
        "installed_services": [
            {"service_id": "asr-1", "type": "asr", "device": "cuda", "status": "running"}
        ],
        "capability_by_type": [
            {"type": "asr", "ready": True},
            {"type": "nmt", "ready": True},
            {"type": "tts", "ready": True},
        ],
        "features_supported": {"streaming": True},
        "accept_public_jobs": True,
        "language_capabilities": {"supported_language_pairs": [{"src": "fz", "tgt": "zz"}]},
        "max_concurrency": 2,
    }
    if token is not None:
        message["token"] = token
    return message


def node_frames(node_id: str, job: JSON) -> list[JSON]:
    """Every node → scheduler type after registration; ``job`` gives the ids of a job
    (someone else's, or none that exists)."""
    ref = {
        "job_id": job["job_id"],
        "attempt_id": job["attempt_id"],
        "node_id": node_id,
        "session_id": job["session_id"],
        "trace_id": job["trace_id"],
    }
    return [
        {
            "type": "node_heartbeat",
            "node_id": node_id,
            "timestamp": 1700000000000,
            "resource_usage": {"cpu_percent": 1.5, "mem_percent": 2, "running_jobs": 0},
            "capability_by_type": [{"type": "asr", "ready": True}],
        },
        {**ref, "type": "job_ack"},
        {**ref, "type": "job_started"},
        {
            **ref,
            "type": "job_result",
            "utterance_index": job.get("utterance_index", 0),
            "success": True,
            "text_asr": "FORGED",
            "text_translated": "FORGED",
            "tts_audio": "",
            "tts_format": "pcm16",
        },
        {
            **ref,
            "type": "asr_partial",
            "utterance_index": job.get("utterance_index", 0),
            "text": "FORGED",
            "is_final": False,
        },
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
    }


def session_frames(session_id: str, index: int) -> list[JSON]:
    """Every client → scheduler type on an open session."""
    return [
        utterance(session_id, index),
        utterance(session_id, index),
        {"type": "client_heartbeat", "session_id": session_id, "timestamp": 1700000000000},
        {"type": "session_close", "session_id": session_id, "reason": "fuzz"},
        session_init(),
    ]
