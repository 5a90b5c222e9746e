"""The agent's frames (pure): what it sends decodes with the scheduler's own decoder, and what
the scheduler sends decodes into the backend's view."""

from __future__ import annotations

import base64

import msgspec
import pytest

from switchboard.agent import Result, wire
from switchboard.protocol import codec
from switchboard.protocol.cuts import Cut, CutKind
from switchboard.protocol.messages import (
    AsrPartial,
    JobAck,
    JobResult,
    JobStarted,
    NodeErrorMsg,
    NodeHeartbeat,
    NodeRegister,
)
from switchboard.protocol.profile import SessionProfile
from tests.agent.support import assign_frame

IDENT = wire.Identity(
    pairs=(("en", "de"), ("de", "en")),
    services=("asr", "nmt", "tts"),
    max_concurrency=3,
    backend_name="probe",
    streams_partials=True,
    hardware={"cpu_cores": 8, "memory_gb": 31.2, "gpus": []},
    platform="linux-x86_64",
)


def _job() -> wire.Job:
    raw = assign_frame("job-1", index=7, audio=base64.b64encode(b"pcm").decode())
    assign, fields = wire.decode(msgspec.json.encode(raw))
    assert isinstance(assign, wire.JobAssign)
    return wire.to_job(assign, fields)


def test_register_is_a_valid_node_register() -> None:
    """node_register carries pairs, services, capacity, id and token as §1 names them."""
    msg = codec.decode_node(wire.register(IDENT, node_id="gpu-1", token="s3cret"))
    assert isinstance(msg, NodeRegister)
    assert msg.node_id == "gpu-1" and msg.token == "s3cret" and msg.max_concurrency == 3
    assert msg.language_capabilities is not None
    pairs = msg.language_capabilities.supported_language_pairs or []
    assert [(p.src, p.tgt) for p in pairs] == [("en", "de"), ("de", "en")]
    assert {(m.src_lang, m.tgt_lang) for m in msg.installed_models if m.kind == "nmt"} == {
        ("en", "de"),
        ("de", "en"),
    }
    assert [(c.type, c.ready) for c in msg.capability_by_type] == [
        ("asr", True),
        ("nmt", True),
        ("tts", True),
    ]
    assert msg.accept_public_jobs is True
    assert msg.features_supported == {"asr_partial": True}


def test_register_without_id_or_token_omits_them() -> None:
    """The scheduler assigns an id when the node sends none (§1 node_register_ack)."""
    frame = msgspec.json.decode(wire.register(IDENT, node_id=None, token=None))
    assert "node_id" not in frame and "token" not in frame


@pytest.mark.parametrize("ready", [True, False])
def test_heartbeat_reports_usage_and_readiness(ready: bool) -> None:
    """A draining heartbeat (ready=False) reports every service not ready, which is what
    makes the scheduler mark the node degraded (§1 "Status")."""
    frame = wire.heartbeat(
        IDENT, node_id="gpu-1", cpu_percent=12.345, mem_percent=50.0, running_jobs=2, ready=ready
    )
    msg = codec.decode_node(frame)
    assert isinstance(msg, NodeHeartbeat)
    assert msg.resource_usage.running_jobs == 2
    assert msg.resource_usage.cpu_percent == 12.3
    assert msg.capability_by_type is not None
    assert {c.ready for c in msg.capability_by_type} == {ready}


def test_job_assign_becomes_a_job_with_audio_and_opaque_fields() -> None:
    """Audio is decoded from base64; unknown utterance fields reach the backend untouched."""
    job = _job()
    assert job.audio == b"pcm"
    assert (job.job_id, job.attempt_id, job.utterance_index) == ("job-1", 1, 7)
    assert (job.src_lang, job.tgt_lang, job.sample_rate) == ("en", "de", 16000)
    assert job.opaque == {"dialect": "opaque-dialect"}


def test_bad_audio_names_the_job() -> None:
    """A job whose audio is not base64 can still be answered: the error carries its ids."""
    raw = assign_frame("job-2", audio="not base64!")
    assign, fields = wire.decode(msgspec.json.encode(raw))
    assert isinstance(assign, wire.JobAssign)
    with pytest.raises(wire.BadFrame) as caught:
        wire.to_job(assign, fields)
    assert caught.value.job is not None
    ref = wire.JobRef.from_raw(caught.value.job)
    assert ref is not None and ref.job_id == "job-2"


def test_unknown_and_malformed_frames() -> None:
    """Unknown types are ignored (forward compatibility); a job_assign without its required
    fields and non-JSON are errors."""
    unknown, _ = wire.decode(b'{"type": "future_thing", "x": 1}')
    assert unknown == wire.Unknown("future_thing")
    with pytest.raises(wire.BadFrame):
        wire.decode(b'{"type": "job_assign", "job_id": "j"}')
    with pytest.raises(wire.BadFrame):
        wire.decode(b"[1, 2")


def test_job_frames_decode_with_the_scheduler() -> None:
    """job_ack, job_started, asr_partial and both kinds of job_result are valid §1 frames."""
    job = _job()
    ref = wire.JobRef.of(job)
    assert isinstance(codec.decode_node(wire.job_ack(job, "n")), JobAck)
    assert isinstance(codec.decode_node(wire.job_started(job, "n")), JobStarted)
    partial = codec.decode_node(wire.asr_partial(job, "n", "hel", is_final=False))
    assert isinstance(partial, AsrPartial) and partial.utterance_index == 7
    result = Result(text_asr="a", text_translated="[de] b", extra={"stand_in": True})
    ok_frame = wire.job_success(ref, "n", result, processing_ms=12)
    ok = codec.decode_node(ok_frame)
    assert isinstance(ok, JobResult) and ok.success and ok.trace_id == "trace-job-1"
    fields = msgspec.json.decode(ok_frame)
    assert fields["text_translated"] == "[de] b" and fields["extra"] == {"stand_in": True}
    assert fields["processing_time_ms"] == 12
    failed = codec.decode_node(wire.job_failure(ref, "n", code="NODE_BUSY", message="full"))
    assert isinstance(failed, JobResult) and not failed.success
    assert failed.error is not None and failed.error.code == "NODE_BUSY"
    node_error = codec.decode_node(wire.encode_node_error("n", "INVALID_MESSAGE", "bad"))
    assert isinstance(node_error, NodeErrorMsg)


def test_lingua_job_assign_fields_reach_the_job() -> None:
    """The scheduler's job_assign (session fields, streaming ASR, a cut) becomes typed Job
    attributes; the same fields stay in ``opaque`` for backends that read them there."""
    profile = SessionProfile(
        trace_id="t-s",
        src_lang="en",
        tgt_lang="de",
        mode="two_way_auto",
        lang_a="en",
        lang_b="de",
        auto_langs=("en", "de"),
        tenant_id="acme",
        features={"speaker_identification": True},
    )
    frame = codec.job_assign(
        codec.stream_fields("cGNt", audio_format="opus", sample_rate=16000),
        job_id="job-9",
        attempt_id=1,
        session_id="s-1",
        utterance_index=2,
        src_lang="en",
        tgt_lang="de",
        pipeline={"use_asr": True, "use_nmt": True, "use_tts": True},
        trace_id="t-s",
        profile=profile,
        cut=Cut(CutKind.PAUSE, 220),
    )
    assign, fields = wire.decode(frame)
    assert isinstance(assign, wire.JobAssign)
    job = wire.to_job(assign, fields)
    assert (job.mode, job.lang_a, job.lang_b, job.auto_langs) == (
        "two_way_auto",
        "en",
        "de",
        ("en", "de"),
    )
    assert job.features == {"speaker_identification": True} and job.tenant_id == "acme"
    assert job.dialect is None and job.audio == b"pcm" and job.audio_format == "opus"
    assert job.streaming_asr and job.partial_update_interval_ms == 1000
    assert job.is_pause_triggered and job.padding_ms == 220
    assert not (job.is_manual_cut or job.is_timeout_triggered)
    assert job.opaque["mode"] == "two_way_auto" and job.opaque["is_pause_triggered"] is True


def test_a_plain_job_assign_leaves_the_lingua_attributes_unset() -> None:
    """A job_assign without Lingua's fields (an older scheduler) decodes with defaults."""
    job = _job()
    assert job.mode is None and job.features is None and job.auto_langs is None
    assert not job.streaming_asr and job.padding_ms == 0 and not job.is_manual_cut
