"""Session traces: what ``switchboard serve --record FILE`` writes and ``switchboard replay``
reads, one JSON object per line, tagged by ``event``.

=========  ==================================================================================
header     first line: format ``version``, ``started_at`` (UTC, ISO 8601), ``source``
open       a session opened: its ``init`` (the ``session_init`` fields, never the token)
accept     an utterance was accepted: ``index``, normalised ``src``/``tgt``, ``job_id``
answer     its one answer left the ordered line: ``kind`` (``result``/``error``), ``code``,
           ``job_id``, ``index``, ``node_id``, and that node's ``pools`` and ``pairs`` then
reject     an utterance was refused at once (outside the ordered stream): ``index``, ``code``
pools      the pools that had members changed: ``live`` (pool ids)
close      the session ended: ``how`` is ``close`` (``session_close`` acknowledged),
           ``disconnect`` (socket gone, or ended by the server) or ``shutdown``
=========  ==================================================================================

Every event but the header has ``t``: seconds since the recording started, on one monotonic
clock, so a replay can keep the original pacing.  Events are written in the order they
happened, which for answers is the order they were handed to the client's socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

VERSION: Final = 1


class _Event(msgspec.Struct, tag_field="event", frozen=True, omit_defaults=True):
    pass


class Header(_Event, tag="header", frozen=True):
    started_at: str
    source: str
    version: int = VERSION


class Opened(_Event, tag="open", frozen=True):
    t: float
    session: str
    init: dict[str, Any] = {}


class Accepted(_Event, tag="accept", frozen=True):
    t: float
    session: str
    index: int
    src: str
    tgt: str
    job_id: str


class Answered(_Event, tag="answer", frozen=True):
    t: float
    session: str
    kind: str  # "result" or "error"
    job_id: str
    index: int | None = None
    code: str | None = None
    node_id: str | None = None
    pools: list[int] | None = None
    pairs: list[tuple[str, str]] | None = None


class Rejected(_Event, tag="reject", frozen=True):
    t: float
    session: str
    code: str
    index: int | None = None


class PoolsLive(_Event, tag="pools", frozen=True):
    t: float
    live: list[int]


class Closed(_Event, tag="close", frozen=True):
    t: float
    session: str
    how: str  # "close", "disconnect" or "shutdown"


Event = Header | Opened | Accepted | Answered | Rejected | PoolsLive | Closed
SessionEvent = Opened | Accepted | Answered | Rejected | Closed

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the line."""


def encode(event: Event) -> bytes:
    return _encoder.encode(event) + b"\n"


def read_trace(path: str | Path) -> list[Event]:
    """Every event of a trace file, in file order."""
    events: list[Event] = []
    try:
        with open(path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    events.append(_decode_line(line, path, number))
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror}") from None
    return events


def _decode_line(line: bytes, path: str | Path, number: int) -> Event:
    try:
        event: Event = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise TraceError(f"{path}:{number}: not a trace event: {exc}") from None
    return event


def write_trace(path: str | Path, events: Iterable[Event]) -> None:
    with open(path, "wb") as file:
        for event in events:
            file.write(encode(event))


def session_events(events: Iterable[Event]) -> Iterator[SessionEvent]:
    """The events that belong to one session (not the header, not pool changes)."""
    for event in events:
        if not isinstance(event, Header | PoolsLive):
            yield event
