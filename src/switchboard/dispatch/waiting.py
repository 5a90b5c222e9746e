"""The waiting line: jobs that found no free slot, in acceptance order (contract §2 "Waiting").

One line for every key, kept in acceptance order (``Job.seq``), with a count per key
(``Job.key``: pair and services) so that a new job can tell in O(1) whether others are ahead
of it for the same nodes.  Jobs stay in the line while a wake round tries them, so a job
accepted meanwhile still queues behind them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from switchboard.dispatch.jobs import Job

Key = tuple[str, str, frozenset[str]]


def _by_seq(job: Job) -> int:
    return job.seq


class WaitingLine:
    __slots__ = ("_jobs", "_keys")

    def __init__(self) -> None:
        self._jobs: dict[Job, None] = {}  # an insertion-ordered set
        self._keys: Counter[Key] = Counter()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job: Job) -> bool:
        return job in self._jobs

    def __iter__(self) -> Iterator[Job]:
        """Oldest first.  Iterate over a copy (``list(line)``) to change the line meanwhile."""
        return iter(self._jobs)

    def ahead(self, key: Key) -> bool:
        """Whether jobs of ``key`` are waiting (a new one of that key goes behind them)."""
        return self._keys[key] > 0

    def add(self, job: Job) -> None:
        jobs = self._jobs
        if job in jobs:
            return
        late = bool(jobs) and job.seq < next(reversed(jobs)).seq
        jobs[job] = None
        self._keys[job.key] += 1
        if late:
            # Concurrent reservations can fail in any order (Redis answers them in any order,
            # a failover comes back later): keep the line in acceptance order.
            self._jobs = dict.fromkeys(sorted(jobs, key=_by_seq))

    def remove(self, job: Job) -> bool:
        if self._jobs.pop(job, False) is not None:
            return False
        key = job.key
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]
        return True
