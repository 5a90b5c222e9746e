"""The waiting line: jobs that found no free slot (contract §2 "Waiting"), served by priority
class, then by weighted fair queueing between tenants (issue 14 items 3–4).

Shape: one sub-line per priority class (``_Class``); in each, one *flow* per tenant
(``_Flow``), each kept in acceptance order (``Job.seq``); and a count per key (``Job.key``:
pair and services), so that a new job can tell in O(1) whether others are ahead of it for the
same nodes (it then goes behind them, rather than trying the store first).

Serving order (``in_order``), read by each wake round:

* **Classes**, higher first.  **Aging**: a class ranks one class higher for every ``aging``
  seconds its oldest job has waited, so a lower class's oldest job never waits more than
  ``aging`` per class step longer than the oldest job of a class above it before it goes
  first; equal ranks go oldest first.  ``aging = 0`` is strict priority.  With one class
  (the default) none of this applies.
* **Tenants** within a class, by self-clocked fair queueing (SCFQ: Golestani, 1994): a
  flow's next job has the virtual finish tag ``tag``; the one after it ``tag + 1/weight``,
  and so on.  Serving a job of a flow (``remove(served=True)``) sets the class's virtual time
  to the flow's tag and advances the flow by ``1/weight``; a flow that starts waiting starts
  at the virtual time plus ``1/weight``, so an idle tenant gets no credit for idling, and a
  tenant with a burst gets its share and no more: the jobs of two equal-weight tenants
  alternate.  A flow left behind the virtual time (its jobs' nodes were full while others
  were served) counts from the virtual time: no credit from being blocked either.
* **Jobs** within a flow, oldest first: each session keeps its order, and FIFO holds per key
  within a tenant and class.  With one tenant and one class, the line is today's FIFO.

Jobs stay in the line while a wake round tries them (a job accepted meanwhile still queues
behind them); a round's job that finds no slot keeps its place and its tag.

Cost: ``add`` and ``remove`` are O(1) dict operations (a job that re-enters out of
acceptance order, after a failed reservation or a failover, re-sorts its flow, as the single
line did); ``in_order`` is O(F + k log F) for k jobs read among F waiting tenants of a class,
and a plain iteration when one tenant waits.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator

from switchboard.dispatch.jobs import Job
from switchboard.dispatch.tenants import Tenant

Key = tuple[str, str, frozenset[str]]


def _by_seq(job: Job) -> int:
    return job.seq


def _insert(jobs: dict[Job, None], job: Job) -> None:
    """Add ``job`` to an insertion-ordered set kept in acceptance order."""
    late = bool(jobs) and job.seq < next(reversed(jobs)).seq
    jobs[job] = None
    if late:
        # Concurrent reservations can fail in any order (Redis answers them in any order,
        # a failover comes back later): keep acceptance order, in place.
        ordered = sorted(jobs, key=_by_seq)
        jobs.clear()
        jobs.update(dict.fromkeys(ordered))


class _Flow:
    """One tenant's waiting jobs in one class."""

    __slots__ = ("cost", "jobs", "tag")

    def __init__(self, tag: float, cost: float) -> None:
        self.jobs: dict[Job, None] = {}  # an insertion-ordered set, in acceptance order
        self.tag = tag  # the virtual finish tag of this flow's next service
        self.cost = cost  # 1 / the tenant's weight


class _Class:
    """One priority class's waiting jobs, one flow per tenant."""

    __slots__ = ("flows", "jobs", "priority", "vtime")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.jobs: dict[Job, None] = {}  # every job of the class, in acceptance order
        self.flows: dict[Tenant, _Flow] = {}
        self.vtime = 0.0  # the tag of the last job served

    def merged(self) -> Iterator[Job]:
        """The class's jobs in fair-queueing order (see the module docstring)."""
        flows = self.flows
        if len(flows) == 1:
            yield from next(iter(flows.values())).jobs
            return
        vtime = self.vtime
        heap: list[tuple[float, int, int, Job, Iterator[Job], float]] = []
        for n, flow in enumerate(flows.values()):
            it = iter(flow.jobs)
            job = next(it)  # a flow is never empty
            tag = flow.tag if flow.tag > vtime else vtime
            heap.append((tag, job.seq, n, job, it, flow.cost))
        heapq.heapify(heap)
        while heap:
            tag, _, n, job, it, cost = heap[0]
            yield job
            following = next(it, None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (tag + cost, following.seq, n, following, it, cost))


class WaitingLine:
    __slots__ = ("_classes", "_keys", "_len", "aging")

    def __init__(self, *, aging: float = 0.0) -> None:
        self._classes: dict[int, _Class] = {}
        self._keys: Counter[Key] = Counter()
        self._len = 0
        self.aging = aging  # seconds per class step; 0: strict priority

    def __len__(self) -> int:
        return self._len

    def __contains__(self, job: Job) -> bool:
        cls = self._classes.get(job.session.priority)
        return cls is not None and job in cls.jobs

    def __iter__(self) -> Iterator[Job]:
        """Every waiting job, oldest first.  Iterate over a copy (``list(line)``) to change the
        line meanwhile."""
        return heapq.merge(*(cls.jobs for cls in self._classes.values()), key=_by_seq)

    def ahead(self, key: Key) -> bool:
        """Whether jobs of ``key`` are waiting (a new one of that key goes behind them)."""
        return self._keys[key] > 0

    def add(self, job: Job) -> None:
        session = job.session
        priority = session.priority
        cls = self._classes.get(priority)
        if cls is None:
            cls = self._classes[priority] = _Class(priority)
        elif job in cls.jobs:
            return
        tenant = session.tenant
        flow = cls.flows.get(tenant)
        if flow is None:
            flow = cls.flows[tenant] = _Flow(cls.vtime + tenant.cost, tenant.cost)
        _insert(cls.jobs, job)
        _insert(flow.jobs, job)
        self._keys[job.key] += 1
        self._len += 1

    def remove(self, job: Job, *, served: bool = False) -> bool:
        """Take ``job`` out of the line (``False`` if it was not in it); ``served``: because it
        got a slot, which its tenant is charged for."""
        session = job.session
        cls = self._classes.get(session.priority)
        if cls is None or cls.jobs.pop(job, False) is not None:
            return False
        tenant = session.tenant
        flow = cls.flows[tenant]
        del flow.jobs[job]
        if served:
            tag = flow.tag if flow.tag > cls.vtime else cls.vtime
            cls.vtime = tag
            flow.tag = tag + flow.cost
        if not flow.jobs:
            del cls.flows[tenant]
            if not cls.jobs:
                del self._classes[cls.priority]
        key = job.key
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]
        self._len -= 1
        return True

    def in_order(self) -> Iterator[Job]:
        """Every waiting job in serving order (see the module docstring)."""
        classes = self._classes
        ranked: Iterable[_Class] = classes.values()
        if len(classes) > 1:
            ranked = sorted(ranked, key=self._rank)
        for cls in ranked:
            yield from cls.merged()

    def _rank(self, cls: _Class) -> tuple[float, int]:
        """Smaller first.  A class's rank is its priority plus the time its oldest job has
        waited over ``aging``; ``now`` cancels out of the comparison, leaving the oldest
        job's start shifted back by ``aging`` per class."""
        oldest = next(iter(cls.jobs))
        if self.aging > 0:
            return (oldest.wait_since / self.aging - cls.priority, oldest.seq)
        return (-cls.priority, oldest.seq)
