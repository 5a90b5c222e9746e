"""How a streamed utterance was cut, as ``job_assign`` tells the node (lingua-parity §2, §3).

A plain value the dispatch core and the session side's streaming buffer both use: the buffer
decides the cut, the core writes its flags into the job.  Lingua's node reads these flags to
decide whether to process the audio at once; without any of them it holds the audio back until
it has 10 s (``audio-aggregator.ts``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CutKind(enum.Enum):
    """Which ``job_assign`` flag a cut sets (the flag's wire name); ``NONE`` sets none."""

    MANUAL = "is_manual_cut"  # the client said so: is_final chunk, or utterance manual_cut
    PAUSE = "is_pause_triggered"
    TIMEOUT = "is_timeout_triggered"
    NONE = ""  # e.g. the buffer grew too big: Lingua sends no flag


@dataclass(frozen=True, slots=True)
class Cut:
    """A cut: its flag and the ``padding_ms`` the node appends as silence (0: not sent)."""

    kind: CutKind
    padding_ms: int = 0

    def assign_fields(self) -> tuple[tuple[str, object], ...]:
        """The ``job_assign`` fields of this cut, each only when true (Lingua omits false
        flags and a missing padding)."""
        fields: list[tuple[str, object]] = []
        if self.padding_ms > 0:
            fields.append(("padding_ms", self.padding_ms))
        if self.kind is not CutKind.NONE:
            fields.append((self.kind.value, True))
        return tuple(fields)


# An ``utterance`` frame with ``manual_cut: true`` (lingua-parity §2, Better): the flag alone.
MANUAL_CUT = Cut(CutKind.MANUAL)
