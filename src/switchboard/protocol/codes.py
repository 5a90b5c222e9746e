"""Error codes of contract §3 and WebSocket close codes."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_SESSION = "INVALID_SESSION"
    SESSION_CLOSED = "SESSION_CLOSED"
    UNAUTHORIZED = "UNAUTHORIZED"
    NODE_ID_CONFLICT = "NODE_ID_CONFLICT"
    TOO_MANY_PENDING = "TOO_MANY_PENDING"
    NO_AVAILABLE_NODE = "NO_AVAILABLE_NODE"
    NODE_UNAVAILABLE = "NODE_UNAVAILABLE"
    JOB_TIMEOUT = "JOB_TIMEOUT"
    NODE_ERROR = "NODE_ERROR"
    SCHEDULER_DEPENDENCY_DOWN = "SCHEDULER_DEPENDENCY_DOWN"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # v1.1 (§7 "Saturation"): the scheduler itself is saturated; an utterance refused at once
    # with details.retry_after_ms and details.reason, or one that waited because we fell behind.
    OVERLOADED = "OVERLOADED"
    # Extensions (issue 5; docs/protocol.md §3).  Each is sent once, then the socket is closed:
    # a frame above --max-frame-bytes (close 1009);
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # no node_register / session_init within --handshake-timeout (close 1008);
    HANDSHAKE_TIMEOUT = "HANDSHAKE_TIMEOUT"
    # --max-sessions sessions are open already (close 1008);
    TOO_MANY_SESSIONS = "TOO_MANY_SESSIONS"
    # --max-connections-per-address connections from this address are open already (close 1008).
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    # more frames than --max-frames-per-second allows (after --frame-burst) (close 1008).
    RATE_LIMITED = "RATE_LIMITED"


class ShedReason(enum.StrEnum):
    """Why a new utterance was refused ``OVERLOADED`` (``details.reason``, protocol.md §3
    "Saturation"; the shed metric's label): which signal passed its bound."""

    LOOP_LAG = "loop_lag"  # the event loop runs late: everything queued behind it waits
    STORE_BACKLOG = "store_backlog"  # reservation-store calls owed an answer
    QUEUE_AGE = "queue_age"  # the oldest job in the waiting line has waited this long


# RFC 6455 close codes the contract names (§3).
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001
CLOSE_NORMAL = 1000
