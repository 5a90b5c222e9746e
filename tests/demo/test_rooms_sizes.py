"""How ``demo --rooms`` seats sessions: rooms of three, the rest in rooms of two."""

from __future__ import annotations

import pytest

from switchboard.demo.rooms import room_sizes


@pytest.mark.parametrize(
    ("sessions", "sizes"),
    [(2, [2]), (3, [3]), (4, [2, 2]), (5, [3, 2]), (7, [3, 2, 2]), (9, [3, 3, 3])],
)
def test_nobody_sits_alone(sessions: int, sizes: list[int]) -> None:
    assert room_sizes(sessions) == sizes


def test_one_session_cannot_make_a_room() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        room_sizes(1)
