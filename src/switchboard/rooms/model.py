"""A room and its members (lingua-parity §5), as plain values the registry owns.

Times arrive as arguments: ``joined_at`` is wall-clock seconds since the epoch (it goes on the
wire as RFC 3339), ``last_active`` a monotonic reading (expiry compares it with ``now``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchboard.protocol import langs


class RoomErrorCode(enum.StrEnum):
    """The codes of ``room_error`` (lingua-parity §5)."""

    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    ALREADY_IN_ROOM = "ALREADY_IN_ROOM"


@dataclass(frozen=True, slots=True)
class RoomError:
    """A refused room request: returned, not raised (losing is an answer, not a bug)."""

    code: RoomErrorCode
    message: str


@dataclass(slots=True, eq=False)
class Member:
    session_id: str
    display_name: str | None
    preferred_lang: str | None  # as the client gave it; ``None``: it listens to no translation
    joined_at: float  # epoch seconds
    # Made on the first preference: most members never set one.
    raw_voice: dict[str, bool] | None = None

    def receives_raw_voice_of(self, sender: str) -> bool:
        """Unset means yes (Lingua's default)."""
        return True if self.raw_voice is None else self.raw_voice.get(sender, True)

    def wire(self) -> dict[str, Any]:
        """One item of ``room_members``; ``participant_id`` is the session id (Lingua's
        shape); an unset name or language is left out, as Lingua leaves it out."""
        item: dict[str, Any] = {
            "participant_id": self.session_id,
            "session_id": self.session_id,
            "raw_voice_preferences": dict(self.raw_voice or {}),
            "joined_at": rfc3339(self.joined_at),
        }
        if self.display_name is not None:
            item["display_name"] = self.display_name
        if self.preferred_lang is not None:
            item["preferred_lang"] = self.preferred_lang
        return item


@dataclass(slots=True, eq=False)
class Room:
    code: str  # six digits, unique among live rooms
    room_id: str  # a UUID
    last_active: float  # monotonic: creation, a join, a delivered room translation
    # In joining order (a dict keeps it): room_members lists members the same way every time.
    members: dict[str, Member] = field(default_factory=dict)

    def wire_members(self) -> list[dict[str, Any]]:
        return [member.wire() for member in self.members.values()]

    def listeners(self, speaker: str) -> dict[str, list[str]]:
        """The other members with a ``preferred_lang``, grouped by it, in joining order:
        one translation per language (lingua-parity §5 "Fan-out")."""
        groups: dict[str, list[str]] = {}
        for member in self.members.values():
            lang = member.preferred_lang
            if lang is not None and member.session_id != speaker:
                groups.setdefault(langs.normalize(lang), []).append(member.session_id)
        return groups


def listens_to(member: Member, lang: str) -> bool:
    """``member`` gets the translations into ``lang`` (normalised)."""
    return member.preferred_lang is not None and langs.normalize(member.preferred_lang) == lang


def rfc3339(epoch_s: float) -> str:
    """``2026-11-30T22:40:22.123Z``: UTC with milliseconds."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
