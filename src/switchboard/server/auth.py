"""Token checks (contract §3–§4): constant-time, and no token ever reaches a log or an error."""

from __future__ import annotations

import hmac


def token_ok(given: str | None, expected: str | None) -> bool:
    """``True`` when no token is required, or ``given`` equals it (compared in constant time)."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
