"""Identifiers in Lingua's shapes (``s-…``, ``job-…``, ``node-…``), unique across instances.

Each process draws a random prefix once; job ids add a counter, so they are cheap to make and
never collide between scheduler instances sharing one Redis (holders are ``<job_id>:<attempt>``).
"""

from __future__ import annotations

import itertools
import secrets
import uuid

_PREFIX = secrets.token_hex(4).upper()
_jobs = itertools.count(1)


def job_id() -> str:
    return f"job-{_PREFIX}{next(_jobs):08X}"


def session_id() -> str:
    return f"s-{secrets.token_hex(8).upper()}"


def node_id() -> str:
    return f"node-{secrets.token_hex(6).upper()}"


def trace_id() -> str:
    return str(uuid.uuid4())
