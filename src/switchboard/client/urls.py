"""Scheduler addresses as users type them → the WebSocket URL of one channel."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "ws://127.0.0.1:5010"
_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def endpoint(url: str, path: str) -> str:
    """``http://host:port`` (or ``ws://``, or ``host:port``) → ``ws://host:port/<path>``.

    A URL that already names a path is kept as it is, so a scheduler behind a proxy that
    maps the channels elsewhere can still be reached.
    """
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a scheduler URL: {url!r} (expected ws://HOST:PORT)")
    route = parts.path if parts.path not in ("", "/") else path
    return urlunsplit((scheme, parts.netloc, route, parts.query, ""))
