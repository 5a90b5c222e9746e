"""The client SDK's exceptions: one tree, rooted in Switchboard's own.

::

    SwitchboardError                 (switchboard.errors: the root of every Switchboard error)
    └── ClientError                  anything the SDK raises on purpose
        ├── ConnectFailed            the scheduler could not be reached or the handshake failed
        └── ServerError              an ``error`` frame; ``code``, ``message``, ``details``
            ├── InvalidMessage       INVALID_MESSAGE
            ├── InvalidSession       INVALID_SESSION
            ├── SessionClosed        SESSION_CLOSED, and the session ending with answers due
            │   └── ConnectionLost       the socket dropped (``code`` is None: no frame said so)
            ├── Unauthorized         UNAUTHORIZED
            ├── TooManyPending       TOO_MANY_PENDING
            ├── NoAvailableNode      NO_AVAILABLE_NODE
            ├── NodeUnavailable      NODE_UNAVAILABLE
            ├── JobTimeout           JOB_TIMEOUT
            ├── DependencyDown       SCHEDULER_DEPENDENCY_DOWN
            ├── Overloaded           OVERLOADED: the scheduler is saturated; ``retry_after_ms``
            ├── PayloadTooLarge      PAYLOAD_TOO_LARGE
            ├── LimitReached         TOO_MANY_SESSIONS, TOO_MANY_CONNECTIONS (retry later)
            │   └── RateLimited          RATE_LIMITED: this client sent frames too fast
            ├── HandshakeTimeout     HANDSHAKE_TIMEOUT
            ├── InternalError        INTERNAL_ERROR
            ├── RoomRefused          a ``room_error``: ROOM_NOT_FOUND, ALREADY_IN_ROOM
            └── NodeError            NODE_ERROR, or any code a node gave (``ASR_FAILED``,
                                     ``NODE_BUSY`` …): contract §2 "Failures"

The mapping follows contract §3.  An unknown code is a node's own (the scheduler's codes are
all listed there), so it maps to :class:`NodeError`, whose ``code`` keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from switchboard.errors import SwitchboardError
from switchboard.protocol.codes import ErrorCode

__all__ = [
    "ClientError",
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
    "PayloadTooLarge",
    "RateLimited",
    "RoomRefused",
    "ServerError",
    "SessionClosed",
    "SwitchboardError",
    "TooManyPending",
    "Unauthorized",
    "error_from_frame",
]


class ClientError(SwitchboardError):
    """Base of every error the client SDK raises on purpose."""


class ConnectFailed(ClientError):
    """The scheduler could not be reached, or did not answer ``session_init`` in time."""


class ServerError(ClientError):
    """The scheduler answered with ``error``; ``code`` is the contract's (None if local)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message
        self.details: Mapping[str, Any] = dict(details or {})

    @property
    def utterance_index(self) -> int | None:
        index = self.details.get("utterance_index")
        return index if isinstance(index, int) else None


class InvalidMessage(ServerError):
    """INVALID_MESSAGE: the scheduler could not accept a frame (or a duplicate index)."""


class InvalidSession(ServerError):
    """INVALID_SESSION: a frame named another session."""


class SessionClosed(ServerError):
    """The session is over: the scheduler ended it, or it was closed with answers due."""


class ConnectionLost(SessionClosed):
    """The socket dropped without the scheduler saying why."""


class Unauthorized(ServerError):
    """UNAUTHORIZED: missing or wrong session token."""


class TooManyPending(ServerError):
    """TOO_MANY_PENDING: the session has ``--max-pending-per-session`` utterances open."""


class NoAvailableNode(ServerError):
    """NO_AVAILABLE_NODE: no eligible node had a free slot within the pending timeout."""


class NodeUnavailable(ServerError):
    """NODE_UNAVAILABLE: the job's node went away and no other could take it."""


class JobTimeout(ServerError):
    """JOB_TIMEOUT: no node answered within the job timeout, on every attempt."""


class DependencyDown(ServerError):
    """SCHEDULER_DEPENDENCY_DOWN: the scheduler's reservation store is unreachable."""


class Overloaded(ServerError):
    """OVERLOADED: the scheduler itself was saturated (protocol.md §3).  The SDK resends the
    utterance after ``retry_after_ms`` (with jitter) up to its ``overload_retries``; this is
    raised once they run out."""

    @property
    def retry_after_ms(self) -> int | None:
        hint = self.details.get("retry_after_ms")
        return hint if isinstance(hint, int) and hint >= 0 else None

    @property
    def reason(self) -> str | None:
        reason = self.details.get("reason")
        return reason if isinstance(reason, str) else None


class PayloadTooLarge(ServerError):
    """PAYLOAD_TOO_LARGE: a frame above the scheduler's ``--max-frame-bytes``."""


class LimitReached(ServerError):
    """TOO_MANY_SESSIONS / TOO_MANY_CONNECTIONS: a server limit refused the connection."""


class RateLimited(LimitReached):
    """RATE_LIMITED: more frames than the server's ``--max-frames-per-second`` (and its burst)
    allow; the server closed the connection.  A :class:`LimitReached`: reconnect later, and
    send more slowly."""


class HandshakeTimeout(ServerError):
    """HANDSHAKE_TIMEOUT: ``session_init`` did not arrive within the server's time."""


class InternalError(ServerError):
    """INTERNAL_ERROR: a bug in the scheduler cost this answer."""


class RoomRefused(ServerError):
    """A room request refused with ``room_error`` (lingua-parity §5); ``code`` says why."""


class NodeError(ServerError):
    """The node failed the job; ``code`` is NODE_ERROR or the node's own code."""


_BY_CODE: Final[Mapping[str, type[ServerError]]] = {
    ErrorCode.INVALID_MESSAGE: InvalidMessage,
    ErrorCode.INVALID_SESSION: InvalidSession,
    ErrorCode.SESSION_CLOSED: SessionClosed,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.TOO_MANY_PENDING: TooManyPending,
    ErrorCode.NO_AVAILABLE_NODE: NoAvailableNode,
    ErrorCode.NODE_UNAVAILABLE: NodeUnavailable,
    ErrorCode.JOB_TIMEOUT: JobTimeout,
    ErrorCode.SCHEDULER_DEPENDENCY_DOWN: DependencyDown,
    ErrorCode.OVERLOADED: Overloaded,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    ErrorCode.TOO_MANY_SESSIONS: LimitReached,
    ErrorCode.TOO_MANY_CONNECTIONS: LimitReached,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.HANDSHAKE_TIMEOUT: HandshakeTimeout,
    ErrorCode.INTERNAL_ERROR: InternalError,
    ErrorCode.NODE_ERROR: NodeError,
    # NODE_ID_CONFLICT is a node-channel code: a client never receives it.
}


def error_from_frame(frame: Mapping[str, Any]) -> ServerError:
    """The exception for an ``error`` frame (contract §2, codes of §3)."""
    code = str(frame.get("code") or ErrorCode.INTERNAL_ERROR)
    details = frame.get("details")
    cls = _BY_CODE.get(code, NodeError)
    return cls(
        str(frame.get("message") or code),
        code=code,
        details=details if isinstance(details, Mapping) else None,
    )
