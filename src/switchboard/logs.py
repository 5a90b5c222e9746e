"""Log lines for people (``--log-format text``) and for machines (``--log-format json``).

Context travels as record attributes, passed with ``extra=`` where the line is made (no
context variables: the dispatch loop serves thousands of jobs at once, and a job's ids are at
hand wherever one of its lines is written).  Both formats print the fields of
:data:`CONTEXT_FIELDS` a record carries: the text format as ``key=value`` after the message,
the JSON format as keys of the object (protocol.md §7 "Logs": ``ts``, ``level``, ``logger``,
``msg``, and ``trace_id``, ``session_id``, ``job_id``, ``node_id`` where they apply).

No token ever appears in a line: the access log never prints a query string or a header, and
both formatters pass the finished line through :func:`redact` as a last guard, for a message
that quotes a peer's frame or a URL.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Final, TextIO

import msgspec

FORMATS: Final = ("text", "json")
JOBS_LOGGER: Final = "switchboard.jobs"  # dispatch/steps.py: one DEBUG line per job step
ACCESS_LOGGER: Final = "switchboard.access"
# In this order in text lines; JSON keeps it too.
CONTEXT_FIELDS: Final = (
    "trace_id",
    "session_id",
    "job_id",
    "node_id",
    "utterance_index",
    "attempt",
    "method",
    "path",
    "status",
    "remote",
    "duration_ms",
    "size",
)
# token=…, "token": "…", Authorization: Bearer …, and the user-info of a URL.
_SECRETS: Final = (
    (re.compile(r"(?i)(token=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(?i)(\"token\"\s*:\s*)\"[^\"]*\""), r'\1"***"'),
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"']+"), r"\1***"),
    (re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1***"),
    (re.compile(r"(://[^/@\s:]*:)[^@/\s]+@"), r"\1***@"),
)


_HINTS: Final = ("token", "bearer", "authorization", "@")


def redact(line: str) -> str:
    """``line`` with anything that looks like a token replaced by ``***``."""
    if (
        "oken" not in line
        and "earer" not in line
        and "uthorization" not in line
        and "@" not in line
    ):
        return line  # the common case: nothing to look for
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line


def _iso(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO switchboard.jobs: job accepted trace_id=… job_id=…``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{key}={value}"
            for key in CONTEXT_FIELDS
            if (value := record.__dict__.get(key)) is not None
        )
        if context:
            head, sep, rest = line.partition("\n")  # after the message, before a traceback
            line = f"{head} {context}{sep}{rest}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (protocol.md §7 "Logs")."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        attrs = record.__dict__
        for key in CONTEXT_FIELDS:
            value = attrs.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return redact(msgspec.json.encode(entry).decode())


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs, told apart from anyone else's."""


def configure(
    *, level: str, fmt: str = "text", jobs: bool = False, stream: TextIO | None = None
) -> None:
    """Set up the root logger for ``switchboard serve`` (replacing the one it set before).

    ``jobs`` turns on the job steps (``switchboard.jobs`` at DEBUG) whatever ``level`` is:
    an operator can follow jobs by ``trace_id`` without every other debug line.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):  # ours from an earlier call; others (pytest's) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if jobs:
        logging.getLogger(JOBS_LOGGER).setLevel(logging.DEBUG)
