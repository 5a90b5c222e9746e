"""Is the scheduler itself the bottleneck?  The verdict behind ``OVERLOADED`` (protocol.md §3).

Pure: no clock, no loop.  The driver feeds the signals it keeps anyway (``driver.py``): the
lateness of a periodic loop probe, the reservation store's calls still owed an answer; the core
lends the waiting line's oldest job (``waiting_since``).  ``overloaded(now)`` reads those few
numbers, so the check on the hot path is O(1) and allocates nothing.

The loop's lag is controlled, not switched (AIMD on the admitted share): every probe that
fires later than the bound cuts the share of new utterances admitted by ``ADMIT_CUT``, every
probe well under it (below ``RECOVER`` times the bound) raises it by ``ADMIT_STEP``, and the
admitted ones are spread evenly over the refused (a credit, not a coin).  An on/off gauge
(the first design) swung between refusing everything and admitting everything for a probe
interval at a time; each admitting spell queued tens of milliseconds of work in front of the
loop, so accepted work waited ~100 ms at 2× overload whatever the bound (E5, docs/benchmarks.md).
A probe running late right now past the bound still refuses everything at once (one long
iteration must not keep admitting).  The store's backlog and the line's age keep hysteresis:
overload starts past the bound and ends only below ``RECOVER`` times it.  Each bound of 0 turns
its signal off.

Why these signals (issue 14's reproduction): past its capacity on Redis, reservations queue
behind the pipelined connection; the core's own load count only drops when a release is
confirmed, so nodes look full, jobs join the waiting line and then wait out
``--pending-timeout`` behind wake rounds that are themselves stuck behind that queue.  The
loop's lag shows the same on the embedded store, where one loop iteration reads every ready
socket.  Refusing *new* work while either grows keeps accepted work's latency bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from switchboard.protocol.codes import ShedReason

# Leave overload once every signal is below this share of its bound.
RECOVER = 0.5
# Weight of the newest probe in the loop lag's moving average.
LAG_WEIGHT = 0.3
# The largest retry hint given, whatever the signals say.
MAX_RETRY_AFTER = 10.0
# AIMD of the admitted share while the loop lags: cut by this factor at each late probe,
# raised by this step at each probe well on time (from nothing back to all in 20 probes).
ADMIT_CUT = 0.7
ADMIT_STEP = 0.05


Reason = ShedReason  # the wire's names for the signals (protocol/codes.py)
REASONS = tuple(reason.value for reason in Reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadBounds:
    """The bounds (``--overload-*``); 0 turns a signal off."""

    loop_lag: float = 0.02  # seconds (chosen from E5: docs/benchmarks.md, issue 14)
    store_backlog: int = 512  # reservation and release calls owed by the store
    queue_age: float = 0.0  # seconds; off by default (full nodes are NO_AVAILABLE_NODE's)
    retry_after: float = 0.25  # seconds: the least retry_after_ms hint

    @property
    def enabled(self) -> bool:
        return bool(self.loop_lag or self.store_backlog or self.queue_age)


def _none() -> float | None:
    return None


class Overload:
    """The signals and the verdict.  The driver writes ``store_owed`` and calls
    ``probe_started`` / ``probe_fired``; the core sets ``waiting_since``."""

    __slots__ = (
        "_admit",
        "_behind_at",
        "_bounds",
        "_credit",
        "_lag",
        "_probe_due",
        "_reason",
        "_store_behind",
        "_throttled",
        "behind_reason",
        "store_owed",
        "waiting_since",
    )

    def __init__(self, bounds: OverloadBounds) -> None:
        self._bounds = bounds
        self._lag = 0.0  # moving average of the probes' lateness
        self._probe_due: float | None = None  # when the probe now running should fire
        self._reason: Reason | None = None  # the state: overloaded, and why
        self._admit = 1.0  # the share of new utterances admitted while the loop lags (AIMD)
        self._credit = 0.0  # admitted shares owed: at 1 the next utterance is admitted
        self._throttled = False  # the last verdict was the admitted share alone, not a bound
        self._store_behind = False  # the store's backlog is past its bound (hysteresis)
        # The last moment the gauge saw the scheduler itself behind (loop or store), and why.
        self._behind_at = float("-inf")
        self.behind_reason = Reason.LOOP_LAG
        self.store_owed = 0
        # The waiting line's oldest job's start of wait (the core lends it), None if empty.
        self.waiting_since: Callable[[], float | None] = _none

    @property
    def bounds(self) -> OverloadBounds:
        return self._bounds

    @property
    def state(self) -> Reason | None:
        """The verdict of the last check, without checking again."""
        return self._reason

    # --- signals in ------------------------------------------------------------------------

    def probe_started(self, due: float) -> None:
        """A loop probe was scheduled to fire at ``due``."""
        self._probe_due = due

    def probe_fired(self, now: float) -> None:
        """The probe fired at ``now``: its lateness is one sample of the loop's lag (with
        ``loop_lag`` off the probe still runs, so the verdict is refreshed between arrivals)."""
        due = self._probe_due
        if due is None:
            return
        self._probe_due = None
        late = max(0.0, now - due)
        self._lag += LAG_WEIGHT * (late - self._lag)
        bound = self._bounds.loop_lag
        if bound:
            if late > bound:
                self._admit *= ADMIT_CUT
            elif late < bound * RECOVER and self._admit < 1.0:
                self._admit = min(1.0, self._admit + ADMIT_STEP)
                if self._admit == 1.0:
                    self._credit = 0.0

    @property
    def admitted_share(self) -> float:
        """The share of new utterances admitted while the loop lags (1.0: all)."""
        return self._admit

    def _overdue(self, now: float) -> float:
        """How late the running probe is already (0 if none is running or it is not due)."""
        due = self._probe_due
        return 0.0 if due is None else now - due

    @property
    def throttled(self) -> bool:
        """The last verdict came from the admitted share alone (see :meth:`admit_one`)."""
        return self._throttled

    def admit_one(self) -> bool:
        """While :attr:`throttled`: whether this new utterance is one of the admitted share.
        Deterministic and even: each refusal adds the share to a credit, and the utterance
        that brings it to 1 is admitted."""
        self._credit += self._admit
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def loop_lag(self, now: float) -> float:
        """The lag now: the average, or more if the running probe is late already (a long
        loop iteration shows while it lasts, not only once it has ended)."""
        return max(self._lag, self._overdue(now))

    # --- the verdict ------------------------------------------------------------------------

    def overloaded(self, now: float) -> Reason | None:
        """Whether the scheduler sheds new work now, and why (``None``: it accepts all).  While
        only the admitted share is below 1 (:attr:`throttled`), a part is still admitted:
        :meth:`admit_one` says which."""
        b = self._bounds
        reason: Reason | None = None
        if b.store_backlog:
            share = RECOVER if self._store_behind else 1.0
            self._store_behind = self.store_owed > b.store_backlog * share
        throttled = False
        if b.loop_lag and self._overdue(now) > b.loop_lag:
            reason = Reason.LOOP_LAG  # a long iteration now: nothing more until it ends
        elif self._store_behind:
            reason = Reason.STORE_BACKLOG
        elif (
            b.queue_age
            and (since := self.waiting_since()) is not None
            and (now - since > b.queue_age * (RECOVER if self._reason is Reason.QUEUE_AGE else 1.0))
        ):
            reason = Reason.QUEUE_AGE
        elif self._admit < 1.0:
            reason, throttled = Reason.LOOP_LAG, True
        self._throttled = throttled
        was = self._reason
        if was is not None and was is not Reason.QUEUE_AGE:
            self._behind_at = now  # behind until now at least
        if reason is not None and reason is not Reason.QUEUE_AGE:
            self._behind_at = now
            self.behind_reason = reason
        self._reason = reason
        return reason

    def behind_since(self, start: float, now: float) -> bool:
        """Whether the scheduler itself was seen behind (its loop or its store: not a long
        waiting line, which full nodes make too) at any moment from ``start`` to ``now``.  A
        job that waited through it is not blamed on the nodes (protocol.md §3)."""
        if not self._bounds.enabled:
            return False
        self.overloaded(now)
        return self._behind_at >= start

    def retry_after_ms(self, reason: Reason, now: float) -> int:
        """The hint for a refused client: the bound's least wait, or the time the signal
        suggests the backlog needs to clear, whichever is longer."""
        hint = self._bounds.retry_after
        if reason is Reason.LOOP_LAG:
            hint = max(hint, 2 * self.loop_lag(now))
        elif reason is Reason.QUEUE_AGE:
            since = self.waiting_since()
            if since is not None:
                hint = max(hint, now - since)
        return int(min(hint, MAX_RETRY_AFTER) * 1000)
