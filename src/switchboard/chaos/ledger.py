"""What every utterance of a fault run became (pure: no I/O, no clock of its own).

Each session connection is a *line* (a reconnecting session opens a new line, since it is a new
``session_id``).  For every utterance sent on a line the ledger keeps when it was sent and each
answer it got; a line that ends before all its answers came (the scheduler closed it, crashed,
or the client dropped it on purpose) *cuts* the utterances still unanswered, which contract §2
"Ending" allows.  What no rule allows:

- **lost**: sent on a line that was still open at the end and never answered;
- **duplicated**: answered more than once;
- **misordered**: an answer of the ordered stream arriving before the answer of an utterance
  sent earlier on the same line (rejections are outside that stream, §2 "Accepting");
- **stale relayed**: a result the node produced for an attempt the scheduler had cancelled.

Times are whatever clock the caller uses (``time.monotonic`` in the runner).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

RESULT: Final = "result"
# Answered at once, outside the ordered stream (contract §2 "Accepting").
REJECTIONS: Final = frozenset({"INVALID_MESSAGE", "INVALID_SESSION", "TOO_MANY_PENDING"})
# ``OVERLOADED`` with no ``job_id``: a new utterance refused at once while the scheduler is
# saturated, outside the ordered stream too (protocol.md §3 "Saturation"); with a ``job_id`` it
# is a waited job's answer, in the stream like any other.
SHED: Final = "OVERLOADED (refused)"
_MISORDERED: Final = "__misordered__"  # a marker among an utterance's answers, never a code


@dataclass(slots=True)
class _Utterance:
    sent_at: float
    answers: list[tuple[float, str]] = field(default_factory=list)
    cut: str | None = None  # why its line ended before it was answered
    cut_at: float | None = None


@dataclass(slots=True)
class _Line:
    utterances: dict[int, _Utterance] = field(default_factory=dict)
    last_in_order: int = -1
    ended: str | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """The outcome of one run, as the report shows it."""

    sent: int
    results: int
    errors: dict[str, int]
    cut: dict[str, int]
    lost: int
    duplicated: int
    misordered: int
    stale_relayed: int
    unexpected: int
    recovery_s: float | None
    slowest: dict[str, float]  # the longest wait for an answer, by result / error code

    @property
    def clean(self) -> bool:
        """No utterance lost, doubled, misordered or answered from a cancelled attempt."""
        bad = (self.lost, self.duplicated, self.misordered, self.stale_relayed, self.unexpected)
        return not any(bad)


class Ledger:
    """Utterances by line and index; see the module docstring for what is counted."""

    def __init__(self) -> None:
        self._lines: dict[int, _Line] = {}
        self._next_line = 0
        self.stale_relayed = 0
        self.unexpected = 0  # answers for nothing we sent
        self.episodes: list[tuple[float, float]] = []  # (start, end) of each fault

    def open_line(self) -> int:
        """A new session connection; returns its key."""
        key = self._next_line
        self._next_line += 1
        self._lines[key] = _Line()
        return key

    def sent(self, line: int, index: int, at: float) -> None:
        self._lines[line].utterances[index] = _Utterance(at)

    def pending(self, line: int) -> int:
        """Utterances of ``line`` neither answered nor cut."""
        return sum(1 for u in self._lines[line].utterances.values() if _open(u))

    def answered(self, line: int, index: int | None, kind: str, at: float) -> None:
        """An answer (``RESULT`` or an error code) for ``index`` on ``line``."""
        record = self._lines[line]
        utterance = record.utterances.get(index) if index is not None else None
        if utterance is None:
            self.unexpected += 1
            return
        utterance.answers.append((at, kind))
        if kind in REJECTIONS or kind == SHED:
            return
        assert index is not None
        if index < record.last_in_order:  # indexes are sent in increasing order on a line
            utterance.answers.append((at, _MISORDERED))
        record.last_in_order = max(record.last_in_order, index)

    def stale(self) -> None:
        """A result the node sent for a cancelled attempt reached the client."""
        self.stale_relayed += 1

    def end_line(self, line: int, reason: str, at: float) -> int:
        """The line closed; its unanswered utterances are cut for ``reason``; how many."""
        record = self._lines[line]
        if record.ended is not None:
            return 0
        record.ended = reason
        cut = 0
        for utterance in record.utterances.values():
            if _open(utterance):
                utterance.cut, utterance.cut_at = reason, at
                cut += 1
        return cut

    def first_answers(self, line: int) -> list[tuple[float, str | None, float | None]]:
        """Each utterance of ``line``: when it was sent, its first answer's kind and time."""
        return [
            (u.sent_at, *(u.answers[0][::-1] if u.answers else (None, None)))
            for u in self._lines[line].utterances.values()
        ]

    def fault(self, at: float) -> None:
        """A fault was injected now; it also ends now unless :meth:`repaired` says later."""
        self.episodes.append((at, at))

    def repaired(self, at: float) -> None:
        """The latest fault ended now (the node answers again, Redis is back …)."""
        if self.episodes:
            self.episodes[-1] = (self.episodes[-1][0], at)

    def figures(self, *, slow_after: float = 0.3) -> Figures:
        """The counts; call once every line has ended or been waited for.  ``slow_after``:
        an answer later than this was held up by the fault (see :func:`recovery`)."""
        all_utts = [u for line in self._lines.values() for u in line.utterances.values()]
        errors: Counter[str] = Counter()
        cut: Counter[str] = Counter()
        slowest: dict[str, float] = {}
        results = lost = duplicated = misordered = 0
        for u in all_utts:
            kinds = [k for _, k in u.answers if k != _MISORDERED]
            misordered += len(u.answers) - len(kinds)
            if len(kinds) > 1:
                duplicated += 1
            if kinds:
                waited = u.answers[0][0] - u.sent_at
                slowest[kinds[0]] = max(slowest.get(kinds[0], 0.0), waited)
                if kinds[0] == RESULT:
                    results += 1
                else:
                    errors[kinds[0]] += 1
            elif u.cut is not None:
                cut[u.cut] += 1
            else:
                lost += 1
        return Figures(
            sent=len(all_utts),
            results=results,
            errors=dict(errors),
            cut=dict(cut),
            lost=lost,
            duplicated=duplicated,
            misordered=misordered,
            stale_relayed=self.stale_relayed,
            unexpected=self.unexpected,
            recovery_s=recovery(all_utts, self.episodes, slow_after=slow_after),
            slowest=slowest,
        )


def _open(utterance: _Utterance) -> bool:
    return not utterance.answers and utterance.cut is None


def recovery(
    utterances: Sequence[_Utterance],
    episodes: Sequence[tuple[float, float]],
    *,
    slow_after: float,
) -> float | None:
    """The longest recovery over the fault episodes, in seconds from the episode's *end*: when
    the fault is put right (the node answers again, Redis is back, the restarted scheduler
    listens), or its start for faults the system must get over by itself (a crash, a frozen
    node, a storm).

    Recovered means both: (a) an utterance sent after the end got a result, and (b) every
    utterance the fault held up — answered with an error, cut, or answered later than
    ``slow_after`` after it was sent, and still unsettled at the end — has settled.  What
    settles after the next episode began counts for that one.  ``None`` when no
    fault was injected (or nothing was served after it: lost and cut counts say why).
    """
    worst: float | None = None
    for n, (_, end) in enumerate(episodes):
        following = episodes[n + 1][0] if n + 1 < len(episodes) else math.inf
        first_new = min(
            (u.answers[0][0] for u in utterances if u.sent_at >= end and _result(u)),
            default=None,
        )
        if first_new is None:
            continue
        held = (
            _settled_at(u) for u in utterances if u.sent_at < following and _held_up(u, slow_after)
        )
        # What settles only after the next episode began is that episode's; lost utterances
        # never settle (they are counted as lost, not as an endless recovery).
        settled = max((at for at in held if end <= at < following), default=end)
        took = max(first_new, settled) - end
        worst = took if worst is None else max(worst, took)
    return worst


def _result(utterance: _Utterance) -> bool:
    return bool(utterance.answers) and utterance.answers[0][1] == RESULT


def _held_up(utterance: _Utterance, slow_after: float) -> bool:
    if utterance.cut is not None:
        return True
    if not utterance.answers:
        return False  # lost
    at, kind = utterance.answers[0]
    return kind != RESULT or at - utterance.sent_at > slow_after


def _settled_at(utterance: _Utterance) -> float:
    if utterance.answers:
        return utterance.answers[0][0]
    if utterance.cut_at is not None:
        return utterance.cut_at
    return math.inf
