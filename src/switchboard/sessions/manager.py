"""``SessionManager``: one entry and one lock per session (seed §5, tasks C1 and C3).

The lock is held only for the session's decision (a synchronous function of the snapshot), never
across the reservation or a send.  In one asyncio loop an uncontended ``asyncio.Lock`` is taken
without suspending; it keeps the decision serial per session even if the decision ever grows an
``await`` (e.g. session state kept in Redis), and it is what the deadlock test watches.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.sessions.state import Decision, SessionRuntimeState


@dataclass(slots=True)
class SessionEntry:
    session_id: str
    # Made by the session's first decision: an idle session holds none (~100 bytes of the
    # 16 KiB per idle session that issue 4 allows).
    lock: asyncio.Lock | None = None
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

    async def decide(
        self, entry: SessionEntry, snapshot: RuntimeSnapshot, src: str, tgt: str
    ) -> Decision:
        lock = entry.lock
        if lock is None:
            lock = entry.lock = asyncio.Lock()
        async with lock:
            return entry.state.decide(snapshot, src, tgt)
