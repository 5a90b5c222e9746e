"""Decoding at the server's edge: whatever a hostile frame makes the codec raise becomes a
``ProtocolError`` with a short message (contract §3: a bad frame gets an ``error`` and the
connection lives on).

Two things the codec lets through, both found by ``tests/fuzz``:

- ``RecursionError``: msgspec walks nested arrays and objects recursively (also when it skips
  an unknown field), so ``[[[[…]]]]`` a few thousand levels deep, far below
  ``--max-frame-bytes``, escaped the decoder and killed the connection without an answer.
- msgspec quotes the offending value in its message (``Invalid value 'xxx…'``), so an error
  could echo up to a whole frame back to its sender; messages are cut to ``MAX_MESSAGE``.

(The same guard belongs in ``protocol/codec.py`` itself; it lives here because issue 5 may
change only the server.  ``tests/fuzz/test_codec_fuzz.py`` pins both behaviours.)
"""

from __future__ import annotations

from typing import Final

from switchboard.errors import ProtocolError
from switchboard.protocol import codec
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import NodeInbound, SessionInbound

MAX_MESSAGE: Final = 200
_TOO_DEEP: Final = "invalid message: nested too deeply"


def _short(exc: ProtocolError) -> ProtocolError:
    if len(exc.message) <= MAX_MESSAGE:
        return exc
    return ProtocolError(exc.code, exc.message[: MAX_MESSAGE - 1] + "…", details=exc.details)


def decode_node(frame: bytes) -> NodeInbound:
    """``codec.decode_node``, raising nothing but a short ``ProtocolError``."""
    try:
        return codec.decode_node(frame)
    except ProtocolError as exc:
        raise _short(exc) from None
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _TOO_DEEP) from None


def decode_session(frame: bytes) -> SessionInbound:
    """``codec.decode_session``, raising nothing but a short ``ProtocolError``."""
    try:
        return codec.decode_session(frame)
    except ProtocolError as exc:
        raise _short(exc) from None
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _TOO_DEEP) from None


def peek_utterance_index(frame: bytes) -> int | None:
    """``codec.peek_utterance_index``, ``None`` where the codec would raise."""
    try:
        return codec.peek_utterance_index(frame)
    except RecursionError:
        return None
