"""``SessionProfile``: what a session's ``session_init`` says that every one of its jobs carries
(lingua-parity §1), as one small frozen value made once per session.

One value rather than fields on the session record: an idle session must stay small, and the
value is shared, never copied, by each job's ``job_assign``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from switchboard.errors import ProtocolError
from switchboard.protocol import langs
from switchboard.protocol.codes import ErrorCode
from switchboard.protocol.messages import SessionInit

# session_init_ack's negotiation when the client asks for nothing (Lingua always says these).
DEFAULT_AUDIO_FORMAT = "opus"
DEFAULT_SAMPLE_RATE = 16000
CHANNEL_COUNT = 1
# Priority classes (protocol.md §2.4): a small integer, higher first, or a name.
PRIORITY_MIN: Final = -9
PRIORITY_MAX: Final = 9
PRIORITY_NAMES: Final[Mapping[str, int]] = {"low": -1, "normal": 0, "high": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionProfile:
    trace_id: str  # the client's, else a new one: an utterance without its own takes it
    src_lang: str  # normalised, for jobs that do not come from an utterance frame
    tgt_lang: str
    audio_format: str = DEFAULT_AUDIO_FORMAT  # negotiated (session_init_ack)
    sample_rate: int = DEFAULT_SAMPLE_RATE
    # Sent with every job, whatever the utterance says (Lingua takes them from the session).
    mode: str | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: tuple[str, ...] | None = None
    tenant_id: str | None = None
    # Sent unless the utterance gives its own.  Never mutated: shared by every job.
    features: Mapping[str, Any] | None = None
    dialect: str | None = None
    # Scheduling only, never sent to nodes: the tenant whose token the session presented
    # (it wins over tenant_id), and the class features.priority asked for.
    auth_tenant: str | None = None
    priority: int | None = None


def parse_priority(raw: object) -> int:
    """A priority class from the wire or the config file: an integer in range, or a name;
    ``ValueError`` otherwise."""
    if isinstance(raw, str) and raw.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[raw.strip().lower()]
    if isinstance(raw, int) and not isinstance(raw, bool) and PRIORITY_MIN <= raw <= PRIORITY_MAX:
        return raw
    names = ", ".join(PRIORITY_NAMES)
    raise ValueError(
        f"a priority is an integer from {PRIORITY_MIN} to {PRIORITY_MAX} or one of {names},"
        f" got {raw!r}"
    )


def priority_of(features: Mapping[str, Any] | None) -> int | None:
    """``features.priority`` of a ``session_init``, checked (``INVALID_MESSAGE`` if bad)."""
    if features is None or "priority" not in features:
        return None
    try:
        return parse_priority(features["priority"])
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"features.priority: {exc}") from None


def profile_of(
    init: SessionInit, trace_id: str, *, auth_tenant: str | None = None
) -> SessionProfile:
    """The profile of a session opened by ``init`` (``trace_id``: the one its ack carries;
    ``auth_tenant``: the tenant its token pinned).  Raises ``ProtocolError`` for a bad
    ``features.priority``."""
    return SessionProfile(
        trace_id=trace_id,
        src_lang=langs.normalize(init.src_lang),
        tgt_lang=langs.normalize(init.tgt_lang),
        audio_format=init.audio_format or DEFAULT_AUDIO_FORMAT,
        sample_rate=init.sample_rate or DEFAULT_SAMPLE_RATE,
        mode=init.mode,
        lang_a=init.lang_a,
        lang_b=init.lang_b,
        auto_langs=None if init.auto_langs is None else tuple(init.auto_langs),
        tenant_id=init.tenant_id,
        features=init.features,
        dialect=init.dialect,
        auth_tenant=auth_tenant,
        priority=priority_of(init.features),
    )
