"""Identifiers in Lingua's shapes (``s-…``, ``job-…``, ``node-…``, UUID-shaped trace ids),
unique across instances.

Each process draws a random prefix once; job and trace ids add a counter, so they are cheap
to make on the dispatch path (``uuid4()`` costs ~4 µs a call here, the counter ~0.4 µs) and
never collide between scheduler instances sharing one Redis (holders are
``<job_id>:<attempt>``).
"""

from __future__ import annotations

import itertools
import os
import secrets

_PREFIX = ""
_jobs = itertools.count(1)

# Trace ids: a UUID's shape, version 8 ("custom", RFC 9562 §5.8) and the RFC variant; 74
# random bits fixed per process, then a 48-bit counter.  Readers that parse a UUID get one.
_TRACE_HEAD = ""
_traces = itertools.count(1)


def _draw() -> None:
    """Draw this process's prefixes; again in a forked child (``serve --workers``), whose ids
    would otherwise repeat its parent's and its siblings' on the shared Redis."""
    global _PREFIX, _TRACE_HEAD
    _PREFIX = secrets.token_hex(4).upper()
    rand = secrets.token_hex(10)
    variant = "89ab"[int(rand[15], 16) % 4]
    _TRACE_HEAD = f"{rand[:8]}-{rand[8:12]}-8{rand[12:15]}-{variant}{rand[16:19]}-"


_draw()
os.register_at_fork(after_in_child=_draw)


def job_id() -> str:
    return f"job-{_PREFIX}{next(_jobs):08X}"


def session_id() -> str:
    return f"s-{secrets.token_hex(8).upper()}"


def node_id() -> str:
    return f"node-{secrets.token_hex(6).upper()}"


def trace_id() -> str:
    return f"{_TRACE_HEAD}{next(_traces) & 0xFFFFFFFFFFFF:012x}"
