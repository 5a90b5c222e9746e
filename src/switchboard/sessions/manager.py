"""``SessionManager``: one entry and one lock per session (seed §5, tasks C1 and C3).

The lock is held only for the session's decision (a synchronous function of the snapshot),
never across the reservation or a send.  The decision runs inside the sans-I/O dispatch core,
which never awaits, so the lock is a synchronous guard: in one event loop nothing can
interleave with it, and taking it twice (a decision that reached back into itself) is a bug it
reports at once instead of hiding.  It is also what the deadlock test watches (seed §7: no
path holds it together with the management lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.sessions.state import Decision, SessionRuntimeState


class SessionLock:
    """A non-blocking mutual-exclusion guard for one session's decision."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise RuntimeError("session lock taken twice")
        self._held = True

    def __exit__(self, *_: object) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held


@dataclass(slots=True)
class SessionEntry:
    session_id: str
    # Made by the session's first decision: an idle session holds none (issue 4's per-session
    # memory budget is 16 KiB).
    lock: SessionLock | None = None
    state: SessionRuntimeState = field(default_factory=SessionRuntimeState)


class SessionManager:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionEntry] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, session_id: str) -> SessionEntry:
        entry = SessionEntry(session_id)
        self._sessions[session_id] = entry
        return entry

    def get(self, session_id: str) -> SessionEntry | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    @staticmethod
    def decide(entry: SessionEntry, snapshot: RuntimeSnapshot, src: str, tgt: str) -> Decision:
        lock = entry.lock
        if lock is None:
            lock = entry.lock = SessionLock()
        with lock:
            return entry.state.decide(snapshot, src, tgt)
