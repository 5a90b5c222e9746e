"""Is the scheduler itself the bottleneck?  The verdict behind ``OVERLOADED`` (protocol.md §3).

Pure: no clock, no loop.  The driver feeds the signals it keeps anyway (``driver.py``): the
lateness of a periodic loop probe, the reservation store's calls still owed an answer; the core
lends the waiting line's oldest job (``waiting_since``).  ``overloaded(now)`` reads those few
numbers, so the check on the hot path is O(1) and allocates nothing.

Hysteresis: the gauge enters overload when one signal passes its bound and leaves it only once
every signal is below ``RECOVER`` times its bound, so a scheduler at its limit sheds in runs
rather than flapping utterance by utterance.  Each bound of 0 turns its signal off.

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
        "_behind_at",
        "_bounds",
        "_lag",
        "_probe_due",
        "_reason",
        "behind_reason",
        "store_owed",
        "waiting_since",
    )

    def __init__(self, bounds: OverloadBounds) -> None:
        self._bounds = bounds
        self._lag = 0.0  # moving average of the probes' lateness
        self._probe_due: float | None = None  # when the probe now running should fire
        self._reason: Reason | None = None  # the state: overloaded, and why
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

    def loop_lag(self, now: float) -> float:
        """The lag now: the average, or more if the running probe is late already (a long
        loop iteration shows while it lasts, not only once it has ended)."""
        due = self._probe_due
        if due is not None and now - due > self._lag:
            return now - due
        return self._lag

    # --- the verdict ------------------------------------------------------------------------

    def overloaded(self, now: float) -> Reason | None:
        """Whether a new utterance should be refused now, and why (``None``: accept it)."""
        b = self._bounds
        share = RECOVER if self._reason is not None else 1.0
        reason: Reason | None = None
        if b.loop_lag and self.loop_lag(now) > b.loop_lag * share:
            reason = Reason.LOOP_LAG
        elif b.store_backlog and self.store_owed > b.store_backlog * share:
            reason = Reason.STORE_BACKLOG
        elif b.queue_age:
            since = self.waiting_since()
            if since is not None and now - since > b.queue_age * share:
                reason = Reason.QUEUE_AGE
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
