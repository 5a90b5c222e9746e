"""The one exception tree of Switchboard.

::

    SwitchboardError
    ├── ConfigError              bad settings; the CLI exits with status 2
    ├── ProtocolError            a frame that breaks wire contract v1 (carries the error code)
    └── StoreError               anything that went wrong inside a reservation store
        └── StoreUnavailable     the store cannot be reached (→ SCHEDULER_DEPENDENCY_DOWN)

Other libraries' exceptions (redis-py, aiohttp, msgspec) are translated into these at the
module that talks to the library; none of them leaves it.  Losing a race (no free slot) is a
return value, never an exception.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""


class ConfigError(SwitchboardError):
    """Settings that cannot be used; the message says which and why."""


class ProtocolError(SwitchboardError):
    """A frame that breaks the wire contract; ``code`` is the contract's error code."""

    def __init__(self, code: str, message: str, *, details: dict[str, object] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, object] = details or {}


class StoreError(SwitchboardError):
    """A reservation store failed in a way that is not a lost race."""


class StoreUnavailable(StoreError):
    """The reservation store cannot be reached right now; callers refuse, never guess."""
