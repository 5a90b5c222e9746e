"""Wire contract v1 decoding and encoding (contract §1–§3), without sockets."""

from __future__ import annotations

import json

import msgspec
import pytest

from switchboard.errors import ProtocolError
from switchboard.protocol import codec, langs
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import (
    CapabilityByType,
    InstalledService,
    JobResult,
    NodeHeartbeat,
    NodeHeartbeatReport,
    NodeRegister,
    ResourceUsage,
    Utterance,
)
from switchboard.protocol.profile import SessionProfile

REGISTER = {
    "type": "node_register",
    "version": "1.0",
    "platform": "linux",
    "hardware": {"cpu_cores": 8, "memory_gb": 31.5, "gpus": [{"name": "L4"}]},
    "installed_models": [
        {
            "model_id": "m",
            "kind": "nmt",
            "src_lang": "zh",
            "tgt_lang": "en",
            "dialect": None,
            "version": "1",
            "size": 3,
        }
    ],
    "capability_by_type": [{"type": "asr", "ready": True}],
    "features_supported": {"x": True},
    "accept_public_jobs": True,
    "some_future_field": {"deep": [1]},
}
UTTERANCE = {
    "type": "utterance",
    "session_id": "s-1",
    "utterance_index": 3,
    "src_lang": "zh_CN",
    "tgt_lang": "en",
    "audio": "AAEC/w==",
    "audio_format": "pcm16",
    "sample_rate": 16000,
    "dialect": "yue",
    "features": {"emotion": True},
    "mode": "one_way",
    "custom": [1, "ü"],
}


def test_register_decodes_and_ignores_unknown_fields() -> None:
    """Unknown fields are ignored, not rejected (contract preamble)."""
    msg = codec.decode_node(json.dumps(REGISTER))
    assert isinstance(msg, NodeRegister)
    assert msg.installed_models[0].src_lang == "zh"
    assert msg.max_concurrency is None and msg.node_id is None


@pytest.mark.parametrize(
    "field", ["version", "hardware", "capability_by_type", "accept_public_jobs", "installed_models"]
)
def test_register_missing_required_field_is_invalid(field: str) -> None:
    """Every required field of node_register is required."""
    frame = {k: v for k, v in REGISTER.items() if k != field}
    with pytest.raises(ProtocolError) as err:
        codec.decode_node(json.dumps(frame))
    assert err.value.code == ErrorCode.INVALID_MESSAGE
    assert field in err.value.message


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"type":"nope"}',
        b"\xff\xfe",
        b'{"type":"node_heartbeat"}',
        json.dumps({**REGISTER, "accept_public_jobs": "yes"}).encode(),
        json.dumps({**REGISTER, "max_concurrency": 0}).encode(),
    ],
)
def test_bad_node_frames_raise_invalid_message(frame: bytes) -> None:
    """Malformed frames become INVALID_MESSAGE, never another exception."""
    with pytest.raises(ProtocolError) as err:
        codec.decode_node(frame)
    assert err.value.code == ErrorCode.INVALID_MESSAGE


def test_a_full_heartbeat_decodes_to_the_fields_the_scheduler_reads() -> None:
    """What a node sends (installed services included) decodes to ``NodeHeartbeat``, which
    skips the installed services and keeps everything the registry uses."""
    report = NodeHeartbeatReport(
        node_id="n",
        timestamp=5,
        resource_usage=ResourceUsage(cpu_percent=1, mem_percent=2, running_jobs=3),
        capability_by_type=[CapabilityByType(type="asr", ready=False)],
        installed_services=[InstalledService(type="asr", status="running")],
    )
    hb = codec.decode_node(msgspec.json.encode(report))
    assert type(hb) is NodeHeartbeat
    assert not hasattr(hb, "installed_services")
    assert (hb.node_id, hb.timestamp, hb.resource_usage) == ("n", 5, report.resource_usage)
    assert hb.capability_by_type == report.capability_by_type


def test_heartbeat_and_result_decode() -> None:
    """Heartbeats and results decode into their typed messages."""
    hb = codec.decode_node(
        json.dumps(
            {
                "type": "node_heartbeat",
                "node_id": "n",
                "timestamp": 1700000000000,
                "resource_usage": {"cpu_percent": 1.5, "mem_percent": 2, "running_jobs": 0},
            }
        )
    )
    assert isinstance(hb, NodeHeartbeat) and hb.resource_usage.running_jobs == 0
    res = codec.decode_node(
        json.dumps(
            {
                "type": "job_result",
                "job_id": "j",
                "attempt_id": 1,
                "node_id": "n",
                "session_id": "s",
                "utterance_index": 0,
                "success": False,
                "trace_id": "t",
                "error": {"code": "MODEL_NOT_AVAILABLE", "message": "m", "details": {"a": 1}},
            }
        )
    )
    assert isinstance(res, JobResult) and res.error is not None
    assert res.error.code == "MODEL_NOT_AVAILABLE"


def test_utterance_negative_index_is_invalid_but_index_is_peekable() -> None:
    """A rejected utterance still reports its index when it can be read."""
    frame = json.dumps({**UTTERANCE, "utterance_index": 7, "audio": 5})
    with pytest.raises(ProtocolError):
        codec.decode_session(frame)
    assert codec.peek_utterance_index(frame) == 7
    assert codec.peek_utterance_index(json.dumps({**UTTERANCE, "utterance_index": -1})) is None
    assert codec.peek_utterance_index(b"garbage") is None


def test_job_assign_carries_opaque_fields_byte_for_byte() -> None:
    """Every utterance field we do not set travels into job_assign unchanged."""
    frame = json.dumps(UTTERANCE, ensure_ascii=False).encode()
    msg = codec.decode_session(frame)
    assert isinstance(msg, Utterance)
    out = codec.job_assign(
        codec.raw_fields(frame),
        job_id="job-1",
        attempt_id=2,
        session_id="s-1",
        utterance_index=3,
        src_lang="zh-cn",
        tgt_lang="en",
        pipeline={"use_asr": True, "use_nmt": True, "use_tts": False},
        trace_id="t-1",
        profile=SessionProfile(trace_id="t-0", src_lang="zh-cn", tgt_lang="en"),
    )
    assert '"custom":[1, "ü"]'.encode() in out  # the value's own bytes, spacing and all
    decoded = json.loads(out)
    assert decoded["type"] == "job_assign" and decoded["attempt_id"] == 2
    assert decoded["src_lang"] == "zh-cn" and decoded["audio"] == "AAEC/w=="
    assert decoded["dialect"] == "yue" and decoded["features"] == {"emotion": True}
    assert decoded["pipeline"]["use_tts"] is False


def test_translation_result_relays_extras_but_not_success_attempt_or_error() -> None:
    """translation_result carries the node's fields, minus success/attempt_id/error."""
    result = json.dumps(
        {
            "type": "job_result",
            "job_id": "j",
            "attempt_id": 2,
            "node_id": "n",
            "session_id": "s",
            "utterance_index": 9,
            "success": True,
            "trace_id": "evil",
            "text_asr": "a",
            "text_translated": "b",
            "extra": {"k": [1]},
            "processing_time_ms": 12,
            "error": None,
        }
    )
    out = json.loads(
        codec.translation_result(
            codec.raw_fields(result),
            session_id="s",
            utterance_index=4,
            job_id="j",
            trace_id="t",
            node_id="n",
        )
    )
    assert out["type"] == "translation_result"
    assert out["utterance_index"] == 4 and out["trace_id"] == "t"
    assert out["extra"] == {"k": [1]} and out["processing_time_ms"] == 12
    assert out["tts_audio"] == "" and out["tts_format"] == "pcm16"
    assert not {"success", "attempt_id", "error"} & out.keys()


def test_asr_partial_drops_node_id() -> None:
    """Partials reach the client without the node's id."""
    partial = json.dumps(
        {
            "type": "asr_partial",
            "job_id": "j",
            "node_id": "n",
            "session_id": "s",
            "utterance_index": 1,
            "text": "he",
            "is_final": False,
            "trace_id": "t",
        }
    )
    out = json.loads(
        codec.asr_partial(codec.raw_fields(partial), session_id="s", utterance_index=1)
    )
    assert "node_id" not in out and out["text"] == "he"


def test_error_frame_shape() -> None:
    """error frames have code, message and details (contract §2)."""
    out = msgspec.json.decode(codec.error("TOO_MANY_PENDING", "m", {"utterance_index": 1}))
    assert out == {
        "type": "error",
        "code": "TOO_MANY_PENDING",
        "message": "m",
        "details": {"utterance_index": 1},
    }


@pytest.mark.parametrize(
    ("raw", "norm"), [("zh-CN", "zh-cn"), ("zh_CN", "zh-cn"), (" EN ", "en"), ("auto", "auto")]
)
def test_normalize(raw: str, norm: str) -> None:
    """Codes are lower case with '-' (contract §2 "Binding")."""
    assert langs.normalize(raw) == norm


def test_serves_prefix_only_one_way() -> None:
    """zh serves zh-cn; zh-cn does not serve zh; en does not serve eng."""
    assert langs.serves("zh", "zh-cn")
    assert not langs.serves("zh-cn", "zh")
    assert not langs.serves("en", "eng")
    assert langs.lookup_keys("zh-hant-tw") == ("zh-hant-tw", "zh-hant", "zh")
