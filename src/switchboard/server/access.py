"""The access log (``switchboard.access``): one line per HTTP request, and for a WebSocket one
when its handshake completes and one when it ends.

A line names the method, the path, the status, the remote address and the time taken; never
the query string or a header, so no token given either way can reach it (the admin bearer token
travels in ``Authorization``; node and session tokens inside the first frame, which is not
logged either).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from switchboard.logs import ACCESS_LOGGER

log = logging.getLogger(ACCESS_LOGGER)
_SWITCHING = 101


class AccessLogger(AbstractAccessLogger):
    """aiohttp calls ``log`` once a request is done: a WebSocket's when its connection ends."""

    # aiohttp makes one per connection, idle sessions included (issue 4's budget): hand it
    # the one instance made for this logger instead.
    __slots__ = ()
    _made: ClassVar[dict[tuple[str, str], AccessLogger]] = {}

    def __new__(cls, logger: logging.Logger, log_format: str) -> AccessLogger:
        key = (logger.name, log_format)
        made = cls._made.get(key)
        if made is None:
            made = cls._made[key] = super().__new__(cls)
        return made

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        status = response.status
        what = "websocket closed" if status == _SWITCHING else "request"
        self.logger.info(
            "%s %s %s %d",
            what,
            request.method,
            request.path,  # the path alone: a query string may carry a token
            status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "remote": request.remote,
                "duration_ms": round(time * 1000, 3),
                "size": response.body_length,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def handshake(request: BaseRequest) -> None:
    """A WebSocket upgrade completed (its end is logged by :class:`AccessLogger`)."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "websocket opened %s",
            request.path,
            extra={
                "method": request.method,
                "path": request.path,
                "status": _SWITCHING,
                "remote": request.remote,
            },
        )
