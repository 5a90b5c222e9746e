"""``/health/ready``'s decision (protocol.md §7), without a server."""

from __future__ import annotations

import pytest

from switchboard.server.admin_api import readiness


@pytest.mark.parametrize(
    ("store_up", "closing", "expected"),
    [
        (True, False, (200, {"status": "ready"})),
        (False, False, (503, {"status": "not_ready", "reason": "store_down"})),
        (True, True, (503, {"status": "not_ready", "reason": "shutting_down"})),
        # Both at once: shutting down is the one that will not pass, so it is the reason given.
        (False, True, (503, {"status": "not_ready", "reason": "shutting_down"})),
    ],
)
def test_readiness(store_up: bool, closing: bool, expected: tuple[int, dict[str, str]]) -> None:
    assert readiness(store_up=store_up, closing=closing) == expected
