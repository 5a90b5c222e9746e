"""A session's utterance group (lingua-parity §4, Lingua's ``managers/group_manager.rs``): pure.

Results with ASR text that follow each other closely form a group, so a client can tell
continued speech from a new turn.  A result continues the session's group if it comes within
``GROUP_WINDOW_MS`` of the later of the group's creation and the end of its last playback
(``tts_play_ended``); otherwise a new group ``group_<session_id>_<ms>`` starts.  Only the
current group is kept: Lingua keeps older ones too, but a closed group is never continued, so
a playback end for it changes nothing.
"""

from __future__ import annotations

GROUP_WINDOW_MS = 2000


class GroupState:
    """Made at a session's first result with text (an idle session holds none)."""

    __slots__ = ("_session_id", "group_id", "last_tts_end_at_ms", "next_part")

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self.group_id = ""
        self.last_tts_end_at_ms = 0
        self.next_part = 0

    def on_result(self, now_ms: int) -> tuple[str, int]:
        """``(group_id, part_index)`` for a result with text arriving at ``now_ms``."""
        if not self.group_id or now_ms - self.last_tts_end_at_ms > GROUP_WINDOW_MS:
            self.group_id = f"group_{self._session_id}_{now_ms}"
            self.last_tts_end_at_ms = now_ms  # Lingua anchors a new group at its creation
            self.next_part = 0
        part = self.next_part
        self.next_part += 1
        return self.group_id, part

    def on_tts_play_ended(self, group_id: str, ts_end_ms: int) -> bool:
        """The client finished playing ``group_id`` at ``ts_end_ms``; ``False`` if that is
        not the current group (an older one, or none): nothing changes."""
        if group_id != self.group_id or not group_id:
            return False
        self.last_tts_end_at_ms = ts_end_ms
        return True
