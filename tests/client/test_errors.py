"""Error codes → the SDK's exception tree (pure; contract §3)."""

from __future__ import annotations

import pytest

from switchboard.client import errors
from switchboard.errors import SwitchboardError
from switchboard.protocol.codes import ErrorCode


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (ErrorCode.INVALID_MESSAGE, errors.InvalidMessage),
        (ErrorCode.INVALID_SESSION, errors.InvalidSession),
        (ErrorCode.SESSION_CLOSED, errors.SessionClosed),
        (ErrorCode.UNAUTHORIZED, errors.Unauthorized),
        (ErrorCode.TOO_MANY_PENDING, errors.TooManyPending),
        (ErrorCode.NO_AVAILABLE_NODE, errors.NoAvailableNode),
        (ErrorCode.NODE_UNAVAILABLE, errors.NodeUnavailable),
        (ErrorCode.JOB_TIMEOUT, errors.JobTimeout),
        (ErrorCode.NODE_ERROR, errors.NodeError),
        (ErrorCode.SCHEDULER_DEPENDENCY_DOWN, errors.DependencyDown),
        (ErrorCode.INTERNAL_ERROR, errors.InternalError),
        (ErrorCode.PAYLOAD_TOO_LARGE, errors.PayloadTooLarge),
        (ErrorCode.RATE_LIMITED, errors.RateLimited),
        (ErrorCode.OVERLOADED, errors.Overloaded),
    ],
)
def test_every_scheduler_code_has_its_exception(code: str, cls: type[errors.ServerError]) -> None:
    exc = errors.error_from_frame({"type": "error", "code": code, "message": "m", "details": {}})
    assert type(exc) is cls
    assert exc.code == code and exc.message == "m"
    assert isinstance(exc, errors.ClientError) and isinstance(exc, SwitchboardError)


def test_node_codes_are_node_errors_that_keep_their_code() -> None:
    """Contract §2 "Failures": the client gets the node's own code (ASR_FAILED, NODE_BUSY…)."""
    frame = {
        "type": "error",
        "code": "ASR_FAILED",
        "message": "no speech",
        "details": {"utterance_index": 4, "job_id": "job-1", "node_id": "gpu-1"},
    }
    exc = errors.error_from_frame(frame)
    assert isinstance(exc, errors.NodeError)
    assert exc.code == "ASR_FAILED" and exc.utterance_index == 4
    assert exc.details["node_id"] == "gpu-1"
    assert str(exc) == "ASR_FAILED: no speech"


def test_overloaded_carries_the_retry_hint_and_reason() -> None:
    frame = {
        "type": "error",
        "code": "OVERLOADED",
        "message": "saturated",
        "details": {"utterance_index": 3, "retry_after_ms": 250, "reason": "loop_lag"},
    }
    exc = errors.error_from_frame(frame)
    assert isinstance(exc, errors.Overloaded)
    assert exc.retry_after_ms == 250 and exc.reason == "loop_lag" and exc.utterance_index == 3
    bare = errors.error_from_frame({"code": "OVERLOADED", "details": {"retry_after_ms": "soon"}})
    assert isinstance(bare, errors.Overloaded) and bare.retry_after_ms is None


def test_missing_fields_do_not_break_the_mapping() -> None:
    exc = errors.error_from_frame({"type": "error"})
    assert isinstance(exc, errors.InternalError) and exc.utterance_index is None
    odd = errors.error_from_frame({"code": "JOB_TIMEOUT", "details": ["not", "a", "map"]})
    assert isinstance(odd, errors.JobTimeout) and odd.details == {}


def test_connection_lost_is_a_session_closed_without_code() -> None:
    exc = errors.ConnectionLost("gone")
    assert isinstance(exc, errors.SessionClosed) and exc.code is None


def test_rate_limited_is_a_limit_reached() -> None:
    """Code that retries later after any server limit (LimitReached) covers RATE_LIMITED."""
    exc = errors.error_from_frame({"type": "error", "code": "RATE_LIMITED", "message": "slow"})
    assert isinstance(exc, errors.LimitReached)
