"""``SessionObserver``: what a tool may watch of sessions (``switchboard serve --record``).

The server calls an observer only when one was handed to it through ``ServeHooks``; the
recorder of ``switchboard.bench`` is one.  With none, each hook point costs one ``is None``.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.dispatch.jobs import Job
from switchboard.protocol.messages import SessionInit


class SessionObserver(Protocol):
    def opened(self, session_id: str, init: SessionInit) -> None:
        """A session was opened by ``init``."""

    def accepted(self, job: Job) -> None:
        """An utterance was accepted as ``job``."""

    def pushed(self, session_id: str, frame: bytes) -> None:
        """``frame`` was queued for the client (in the order the client gets them)."""

    def closed(self, session_id: str) -> None:
        """The session ended."""

    def close(self) -> None:
        """The scheduler stops."""
