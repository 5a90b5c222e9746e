"""The protocol decoder under hostile input (issue 5 "Bad input"), without a socket.

Two kinds of evidence:

- **properties** (hypothesis): a message built from the contract's schema decodes; the same
  message without one of its required fields, or with a required field of the wrong type, is
  ``INVALID_MESSAGE``; with fields the contract does not name it still decodes (§ intro:
  unknown fields are ignored, not rejected).  The oracle is the schema below, not the decoder.
- **mutation fuzzing** (``mutate.py``, seeded): whatever the bytes, the server's decoders raise
  nothing but a ``ProtocolError`` with a short message, and what they accept keeps the
  contract's bounds.  ``SWITCHBOARD_FUZZ_FRAMES`` sets the count (default 20,000).

Seeds and frames that found bugs are kept below as regression tests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.errors import ProtocolError
from switchboard.protocol import codec, rooms
from switchboard.protocol.messages import (
    AudioChunk,
    JobResult,
    NodeHeartbeat,
    TtsPlayEnded,
    Utterance,
)
from switchboard.protocol.rooms import Signal
from switchboard.server.channel import bad_frame_error
from tests.fuzz import messages
from tests.fuzz.mutate import Mutator

FRAMES = int(os.environ.get("SWITCHBOARD_FUZZ_FRAMES", "20000"))
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.text(min_size=1, max_size=40)
langs = st.sampled_from(["en", "de", "zh-CN", "pt_BR", "auto", "x" * 64])
counts = st.integers(min_value=0, max_value=2**63)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
)
# Required fields of five messages, with a value of the right type each (protocol.md §1–§2).
SCHEMAS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "utterance": {
        "session_id": ids,
        "utterance_index": counts,
        "src_lang": langs,
        "tgt_lang": langs,
        "audio": st.text(max_size=50),
        "audio_format": st.text(max_size=10),
        "sample_rate": st.integers(min_value=1, max_value=2**31),
    },
    "audio_chunk": {
        "session_id": ids,
        "seq": counts,
        "is_final": st.booleans(),
    },
    "node_heartbeat": {
        "node_id": ids,
        "timestamp": numbers,
        "resource_usage": st.fixed_dictionaries(
            {"cpu_percent": numbers, "mem_percent": numbers, "running_jobs": counts}
        ),
    },
    "job_result": {
        "job_id": ids,
        "attempt_id": st.integers(min_value=1, max_value=2**31),
        "node_id": ids,
        "session_id": ids,
        "utterance_index": counts,
        "success": st.booleans(),
        "trace_id": st.text(max_size=40),
    },
    "tts_play_ended": {
        "session_id": ids,
        "group_id": ids,
        "ts_end_ms": counts,
    },
}
WRONG = {"str": 7, "int": "7", "bool": "true", "dict": [1]}
KIND = {
    "session_id": "str",
    "utterance_index": "int",
    "src_lang": "str",
    "tgt_lang": "str",
    "audio": "str",
    "audio_format": "str",
    "sample_rate": "int",
    "seq": "int",
    "is_final": "bool",
    "node_id": "str",
    "timestamp": "int",  # a number: a string is wrong
    "resource_usage": "dict",
    "job_id": "str",
    "attempt_id": "int",
    "success": "bool",
    "trace_id": "str",
    "group_id": "str",
    "ts_end_ms": "int",
}
TYPES = {
    "utterance": Utterance,
    "audio_chunk": AudioChunk,
    "node_heartbeat": NodeHeartbeat,
    "job_result": JobResult,
    "tts_play_ended": TtsPlayEnded,
}
SESSION_KINDS = frozenset({"utterance", "audio_chunk", "tts_play_ended"})
# Every field a fuzzed type models, optional ones included (an "unknown" field must be one
# the contract does not name: a wrong-typed optional ``payload`` is rightly refused).
NAMED = frozenset(name for t in TYPES.values() for name in t.__struct_fields__)


def decode(kind: str, frame: bytes) -> object:
    if kind in SESSION_KINDS:
        return codec.decode_session(frame)
    return codec.decode_node(frame)


def valid(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(SCHEMAS[kind]).map(lambda body: {"type": kind, **body})


def encoded(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


# --- properties ---------------------------------------------------------------------------------


@PROPERTIES
@given(data=st.data(), kind=st.sampled_from(sorted(SCHEMAS)))
def test_schema_valid_messages_decode(data: st.DataObject, kind: str) -> None:
    """Every message the schema allows decodes to its type, with the values sent."""
    message = data.draw(valid(kind))
    decoded = decode(kind, encoded(message))
    assert isinstance(decoded, TYPES[kind])
    for key in SCHEMAS[kind]:
        sent, got = message[key], getattr(decoded, key)
        assert sent == got or key == "resource_usage", (key, sent, got)


@PROPERTIES
@given(data=st.data(), kind=st.sampled_from(sorted(SCHEMAS)))
def test_a_missing_required_field_is_invalid(data: st.DataObject, kind: str) -> None:
    message = data.draw(valid(kind))
    del message[data.draw(st.sampled_from(sorted(SCHEMAS[kind])))]
    with pytest.raises(ProtocolError) as caught:
        decode(kind, encoded(message))
    assert caught.value.code == "INVALID_MESSAGE"


@PROPERTIES
@given(data=st.data(), kind=st.sampled_from(sorted(SCHEMAS)))
def test_a_required_field_of_the_wrong_type_is_invalid(data: st.DataObject, kind: str) -> None:
    message = data.draw(valid(kind))
    key = data.draw(st.sampled_from(sorted(SCHEMAS[kind])))
    message[key] = WRONG[KIND[key]]
    with pytest.raises(ProtocolError):
        decode(kind, encoded(message))


@PROPERTIES
@given(
    data=st.data(),
    kind=st.sampled_from(sorted(SCHEMAS)),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: k not in NAMED and k != "type"),
        st.recursive(
            st.none() | st.booleans() | numbers | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=10,
        ),
        max_size=4,
    ),
)
def test_unknown_fields_are_ignored(data: st.DataObject, kind: str, extra: dict[str, Any]) -> None:
    """Forward compatibility: fields the contract does not name never make a frame invalid."""
    message = {**extra, **data.draw(valid(kind))}
    assert isinstance(decode(kind, encoded(message)), TYPES[kind])


# --- mutation fuzzing ---------------------------------------------------------------------------


def _check_accepted(message: object) -> None:
    """What the decoder lets through keeps the contract's bounds (§1–§2)."""
    for name in ("session_id", "node_id", "job_id", "group_id"):
        value = getattr(message, name, None)
        if value is not None:
            assert 1 <= len(value) <= 256, (name, len(value))
    index = getattr(message, "utterance_index", 0)
    assert isinstance(index, int) and index >= 0
    if isinstance(message, Utterance):
        assert message.sample_rate >= 1
    if isinstance(message, AudioChunk):
        with contextlib.suppress(ProtocolError):  # bad base64: INVALID_MESSAGE, nothing else
            codec.chunk_audio(message)
    for name, most in (("room_code", 64), ("to", 256), ("target_session_id", 256)):
        value = getattr(message, name, None)
        if value is not None:
            assert 1 <= len(value) <= most, (name, len(value))
    if isinstance(message, Signal):
        # What the relay sends on is JSON whatever the sender's sdp or candidate held.
        relayed = json.loads(rooms.relayed(message, "s-sender"))
        assert relayed["to"] == "s-sender" and relayed["type"] == message.__struct_config__.tag


def _fuzz_one(decoder: Any, data: bytes) -> bool:
    """One frame through a server decoder: accepted (True) or a short ProtocolError."""
    try:
        message = decoder(data)
    except ProtocolError as exc:
        assert exc.code == "INVALID_MESSAGE"
        assert len(exc.message) <= codec.MAX_ERROR_MESSAGE
        error = json.loads(bad_frame_error(exc, data))  # the frame the peer would get
        assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE"
        return False
    _check_accepted(message)
    raw = codec.raw_fields(data)  # the server copies opaque fields out of every accepted frame
    if isinstance(message, JobResult):  # and judges a result's fields (lingua-parity §4)
        assert isinstance(codec.is_silent(raw), bool)
        assert isinstance(codec.has_asr_text(raw), bool)
    return True


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_frames_get_invalid_message_or_a_bounded_message(seed: int) -> None:
    """``SWITCHBOARD_FUZZ_FRAMES`` mutated frames per seed (half node, half session): never
    any exception but ProtocolError(INVALID_MESSAGE), and some are still accepted (the
    mutations are not all fatal, so acceptance is exercised too)."""
    mutator = Mutator(seed)
    job = {"job_id": "job-1", "attempt_id": 1, "session_id": "s-1", "trace_id": "t"}
    node_bases = [*messages.node_frames("node-1", job), messages.node_register("node-1")]
    session_bases = [*messages.session_frames("s-1", 3), messages.session_init()]
    accepted = 0
    for n in range(FRAMES // 2):
        node = mutator.frame(node_bases[n % len(node_bases)])
        accepted += _fuzz_one(codec.decode_node, node.data)
        session = mutator.frame(session_bases[n % len(session_bases)])
        accepted += _fuzz_one(codec.decode_session, session.data)
    assert 0 < accepted < FRAMES


# --- regressions: frames that found bugs -----------------------------------------------------

DEEP = b'{"type":"client_heartbeat","session_id":"s","timestamp":1,"x":' + b"[" * 20000
DEEP += b"]" * 20000 + b"}"
DEEP_NODE = b'{"type":"node_heartbeat","node_id":"n","deep":' + b'{"a":' * 20000
DEEP_NODE += b"1" + b"}" * 20000 + b"}"


@pytest.mark.parametrize(
    ("decoder", "frame"),
    [
        (codec.decode_session, DEEP),
        (codec.decode_node, DEEP_NODE),
        (codec.decode_session, b'{"type":"utterance","utterance_index":' + b"[" * 5000),
    ],
    ids=["session-array", "node-object", "truncated"],
)
def test_deep_nesting_is_invalid_message(decoder: Any, frame: bytes) -> None:
    """Found by mutate.py (_deep_nesting, seed 1): msgspec's RecursionError escaped the
    decoder and killed the connection without an answer; now INVALID_MESSAGE."""
    with pytest.raises(ProtocolError) as caught:
        decoder(frame)
    assert caught.value.code == "INVALID_MESSAGE"
    assert codec.peek_utterance_index(frame) is None


UTTERANCE = (
    b'{"type":"utterance","session_id":"s","utterance_index":1,"src_lang":"en","tgt_lang":"de",'
    b'"audio":"","audio_format":"pcm16","sample_rate":16000,'
)


@pytest.mark.parametrize(
    "tail",
    [b'"extra":"\xff"}', b'"capabil\xc4ty":1}', b'"x":["\xed\xa0\x80"]}'],
    ids=["value", "key", "encoded-surrogate"],
)
def test_invalid_utf8_in_an_unknown_field_is_invalid_message(tail: bytes) -> None:
    """Found by mutate.py (_invalid_utf8 / _flip_bytes, seed 1): msgspec skips unknown fields
    without checking them, so such a frame decoded and its bytes went on verbatim in a text
    frame to the node (which must drop the connection: RFC 6455 §8.1) — or, in a key, made
    the copy raise.  Now the whole frame must be UTF-8."""
    frame = UTTERANCE + tail.decode("unicode_escape").encode("latin-1")
    with pytest.raises(ProtocolError) as caught:
        codec.decode_session(frame)
    assert "UTF-8" in caught.value.message


def test_error_messages_do_not_echo_the_frame() -> None:
    """Found by mutate.py (_other_type / _huge_string): msgspec quotes the bad value, so a
    20 kB ``type`` came back in the error; now the message is cut to MAX_MESSAGE."""
    frame = json.dumps({"type": "x" * 20000}).encode()
    with pytest.raises(ProtocolError) as caught:
        codec.decode_session(frame)
    assert len(caught.value.message) <= codec.MAX_ERROR_MESSAGE


def test_codec_itself_turns_deep_nesting_into_invalid_message() -> None:
    """RecursionError from msgspec on deep nesting becomes INVALID_MESSAGE in the codec."""
    with pytest.raises(ProtocolError):
        codec.decode_session(DEEP)


@PROPERTIES
@given(
    payload=st.one_of(
        st.text(max_size=40),
        st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode("ascii")),
    )
)
def test_an_audio_chunk_payload_is_strict_base64_or_invalid_message(payload: str) -> None:
    """lingua-parity §3 "Errors": the payload decodes as strict base64 (the oracle: binascii's
    strict mode), or the chunk is INVALID_MESSAGE (and the server buffers nothing of it)."""
    frame = encoded(
        {
            "type": "audio_chunk",
            "session_id": "s-1",
            "seq": 0,
            "is_final": False,
            "payload": payload,
        }
    )
    message = codec.decode_session(frame)
    assert isinstance(message, AudioChunk)
    try:
        expected: bytes | None = binascii.a2b_base64(payload.encode(), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        expected = None
    if expected is None:
        with pytest.raises(ProtocolError) as caught:
            codec.chunk_audio(message)
        assert caught.value.code == "INVALID_MESSAGE"
    else:
        assert codec.chunk_audio(message) == expected
