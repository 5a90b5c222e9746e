"""Stamps along a reservation's path inside the scheduler (issue 9's inside p50 on Redis).

Put this directory on ``PYTHONPATH`` with ``INSTR_OUT=/some/prefix`` set, and every Python
process started with it (the benchmark's scheduler processes inherit both) wraps three methods
of the dispatch driver and the pipelined Redis connection's ``data_received``.  Per first
attempt it keeps five stamps: the utterance read off the socket (``Job.received_at``), the
reservation call, the last read on a pipelined Redis connection before the reservation's
callback, the callback, and ``job_assign`` written.  At exit each process writes them to
``$INSTR_OUT.<pid>`` as doubles; ``breakdown.py`` reads them.  Without ``INSTR_OUT`` nothing is
imported or wrapped.  A measuring aid, not part of the package.
"""

from __future__ import annotations

import os

if os.environ.get("INSTR_OUT"):
    import atexit
    import time
    from array import array
    from typing import Any

    from switchboard.dispatch import driver
    from switchboard.store import pipelined

    _clock = time.perf_counter
    _open: dict[int, list[float]] = {}  # id(job) → [read, call, callback, last read]
    _samples = array("d")
    _last_read = [0.0]
    _reserve = driver.DispatchDriver._reserve
    _reserved = driver.DispatchDriver._reserved
    _assign = driver.DispatchDriver._assign
    _data_received = pipelined._Connection.data_received

    def reserve(self: Any, action: Any, queue: Any) -> None:
        _open[id(action.job)] = [action.job.received_at, _clock(), 0.0, 0.0]
        _reserve(self, action, queue)

    def reserved(self: Any, action: Any, results: Any, error: Any) -> None:
        stamps = _open.get(id(action.job))
        if stamps is not None:
            stamps[2], stamps[3] = _clock(), _last_read[0]
        _reserved(self, action, results, error)

    def assign(self: Any, action: Any, queue: Any) -> None:
        _assign(self, action, queue)
        stamps = _open.pop(id(action.job), None)
        if stamps is not None and action.attempt == 1 and stamps[2]:
            _samples.extend((stamps[0], stamps[1], stamps[2], _clock(), stamps[3]))

    def data_received(self: Any, data: bytes) -> None:
        _last_read[0] = _clock()
        _data_received(self, data)

    def _dump() -> None:
        with open(f"{os.environ['INSTR_OUT']}.{os.getpid()}", "wb") as out:
            _samples.tofile(out)

    driver.DispatchDriver._reserve = reserve  # type: ignore[method-assign]
    driver.DispatchDriver._reserved = reserved  # type: ignore[method-assign]
    driver.DispatchDriver._assign = assign  # type: ignore[method-assign]
    pipelined._Connection.data_received = data_received  # type: ignore[method-assign]
    atexit.register(_dump)
