"""``SessionRecorder``: ``switchboard serve --record FILE`` (events: ``bench/trace.py``).

A ``SessionObserver`` (``server/observe.py``) that ``switchboard serve --record`` hands to the
server through ``ServeHooks``; with it unset each hook point costs one ``is None`` test.
Answers are caught where they leave the session's ordered line — ``SessionConnection.push`` —
so the order in the file is the order the client receives them.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec

from switchboard.bench import trace
from switchboard.dispatch.jobs import Job
from switchboard.protocol.messages import SessionInit
from switchboard.runtime.snapshot import RuntimeSnapshot, SnapshotHolder


class _Out(msgspec.Struct, frozen=True):
    """The fields of an outgoing session frame that the recorder needs."""

    type: str = ""
    utterance_index: int | None = None
    job_id: str | None = None
    node_id: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None


_out_decoder = msgspec.json.Decoder(_Out)
_PRIVATE_INIT_FIELDS = frozenset({"token", "type"})
_RESULT_TYPES = frozenset({"translation_result", "missing_result"})


class SessionRecorder:
    def __init__(
        self,
        path: str,
        *,
        snapshots: SnapshotHolder,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._out: BinaryIO | None = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._clock = clock
        self._t0 = clock()
        self._snapshots = snapshots
        self._open: set[str] = set()
        self._acknowledged: set[str] = set()  # sessions whose session_close was acknowledged
        self._live: list[int] | None = None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        self._write(trace.Header(started_at=started, source="serve"))
        snapshots.subscribe(self._on_snapshot)
        self._on_snapshot(snapshots.current)

    def _now(self) -> float:
        return round(self._clock() - self._t0, 6)

    def _write(self, event: trace.Event) -> None:
        if self._out is not None:
            self._out.write(trace.encode(event))

    # --- hooks ------------------------------------------------------------------------------

    def opened(self, session_id: str, init: SessionInit) -> None:
        fields = {
            key: value
            for key, value in msgspec.structs.asdict(init).items()
            if value is not None and key not in _PRIVATE_INIT_FIELDS
        }
        self._open.add(session_id)
        self._write(trace.Opened(t=self._now(), session=session_id, init=fields))

    def accepted(self, job: Job) -> None:
        self._write(
            trace.Accepted(
                t=round(job.received_at - self._t0, 6),
                session=job.session.session_id,
                index=job.utterance_index,
                src=job.src_lang,
                tgt=job.tgt_lang,
                job_id=job.job_id,
            )
        )

    def pushed(self, session_id: str, frame: bytes) -> None:
        try:
            out = _out_decoder.decode(frame)
        except msgspec.DecodeError:
            return
        # missing_result (lingua-parity §4) is a successful answer that carries no text.
        if out.type in _RESULT_TYPES and out.job_id is not None:
            self._answer(session_id, "result", out.job_id, out.utterance_index, None, out.node_id)
        elif out.type == "error":
            self._error(session_id, out)
        elif out.type == "session_close_ack":
            self._acknowledged.add(session_id)

    def _error(self, session_id: str, out: _Out) -> None:
        details = out.details or {}
        job_id, index = details.get("job_id"), details.get("utterance_index")
        code = out.code or ""
        if isinstance(job_id, str):
            node_id = details.get("node_id")
            node = node_id if isinstance(node_id, str) else None
            self._answer(session_id, "error", job_id, _int(index), code, node)
        elif index is not None:
            self._write(
                trace.Rejected(t=self._now(), session=session_id, code=code, index=_int(index))
            )

    def _answer(
        self,
        session_id: str,
        kind: str,
        job_id: str,
        index: int | None,
        code: str | None,
        node_id: str | None,
    ) -> None:
        pools: list[int] | None = None
        pairs: list[tuple[str, str]] | None = None
        if node_id is not None:
            snapshot = self._snapshots.current
            pools = snapshot.pools_of(node_id)
            node = snapshot.nodes.get(node_id)
            pairs = sorted(node.pairs) if node is not None else None
        self._write(
            trace.Answered(
                t=self._now(),
                session=session_id,
                kind=kind,
                job_id=job_id,
                index=index,
                code=code,
                node_id=node_id,
                pools=pools,
                pairs=pairs,
            )
        )

    def closed(self, session_id: str) -> None:
        if session_id not in self._open:
            return
        self._open.discard(session_id)
        how = "close" if session_id in self._acknowledged else "disconnect"
        self._acknowledged.discard(session_id)
        self._write(trace.Closed(t=self._now(), session=session_id, how=how))

    def _on_snapshot(self, snapshot: RuntimeSnapshot) -> None:
        live = sorted(pool for pool, members in snapshot.pool_members.items() if members)
        if live != self._live:
            self._live = live
            self._write(trace.PoolsLive(t=self._now(), live=live))

    def close(self) -> None:
        """Sessions still open end with ``shutdown``; then the file is closed (idempotent)."""
        if self._out is None:
            return
        now = self._now()
        for session_id in sorted(self._open):
            self._write(trace.Closed(t=now, session=session_id, how="shutdown"))
        self._open.clear()
        out, self._out = self._out, None
        out.close()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
