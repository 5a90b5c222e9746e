"""The client SDK: open sessions on a Switchboard scheduler and translate utterances (§2).

::

    from switchboard.client import Session

    async with Session.connect("ws://127.0.0.1:5010", src_lang="en", tgt_lang="de") as s:
        result = await s.translate(pcm16, sample_rate=16000)
        print(result.text_translated, result.node_id, result.latency_s)

See docs/client.md.
"""

from switchboard.client.audio import Clip, read_wav, sine_pcm16, write_wav
from switchboard.client.errors import (
    ClientError,
    ConnectFailed,
    ConnectionLost,
    DependencyDown,
    HandshakeTimeout,
    InternalError,
    InvalidMessage,
    InvalidSession,
    JobTimeout,
    LimitReached,
    NoAvailableNode,
    NodeError,
    NodeUnavailable,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RoomRefused,
    ServerError,
    SessionClosed,
    SwitchboardError,
    TooManyPending,
    Unauthorized,
)
from switchboard.client.rooms import (
    Room,
    RoomEvent,
    RoomEvents,
    RoomExpired,
    RoomMember,
    RoomMembers,
    Rooms,
    RoomSpeech,
    Signal,
)
from switchboard.client.session import (
    AudioStream,
    Partial,
    PartialStream,
    PendingTranslation,
    Session,
    Translation,
)

__all__ = [
    "AudioStream",
    "ClientError",
    "Clip",
    "ConnectFailed",
    "ConnectionLost",
    "DependencyDown",
    "HandshakeTimeout",
    "InternalError",
    "InvalidMessage",
    "InvalidSession",
    "JobTimeout",
    "LimitReached",
    "NoAvailableNode",
    "NodeError",
    "NodeUnavailable",
    "Overloaded",
    "Partial",
    "PartialStream",
    "PayloadTooLarge",
    "PendingTranslation",
    "RateLimited",
    "Room",
    "RoomEvent",
    "RoomEvents",
    "RoomExpired",
    "RoomMember",
    "RoomMembers",
    "RoomRefused",
    "RoomSpeech",
    "Rooms",
    "ServerError",
    "Session",
    "SessionClosed",
    "Signal",
    "SwitchboardError",
    "TooManyPending",
    "Translation",
    "Unauthorized",
    "read_wav",
    "sine_pcm16",
    "write_wav",
]
