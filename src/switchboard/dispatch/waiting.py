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

Cost (``benchmarks/micro/waiting_line.py``): ``add`` and ``remove`` are O(1) dict operations
plus, when a flow's head or tag changes, O(log F) in the class's heap of its F waiting
tenants (a job that re-enters out of acceptance order, after a failed reservation or a
failover, re-sorts its flow, as the single line did); reading the first k jobs of
``in_order`` costs O(k log(k + F)) per class, and is a plain iteration when one tenant waits.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

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

    __slots__ = ("cost", "entry", "jobs", "tag")

    def __init__(self, tag: float, cost: float) -> None:
        self.jobs: dict[Job, None] = {}  # an insertion-ordered set, in acceptance order
        self.tag = tag  # the virtual finish tag of this flow's next service
        self.cost = cost  # 1 / the tenant's weight
        self.entry: list[Any] | None = None  # its current entry in the class's heap


# A flow's entry in its class's heap: [tag, head job's seq, tie-breaker, flow or None].  A
# flow whose tag or head changes gets a new entry and its old one is blanked (heapq's
# "mark as removed" recipe), so each change costs O(log F).
_TAG, _SEQ, _FLOW = 0, 1, 3


class _Class:
    """One priority class's waiting jobs, one flow per tenant, and a heap of the flows."""

    __slots__ = ("flows", "heap", "jobs", "priority", "vtime")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.jobs: dict[Job, None] = {}  # every job of the class, in acceptance order
        self.flows: dict[Tenant, _Flow] = {}
        self.heap: list[list[Any]] = []  # min-heap of flow entries by (tag, head seq)
        self.vtime = 0.0  # the tag of the last job served

    def rebuild(self) -> None:
        """A second flow arrived: the heap starts (one flow needs none)."""
        self.heap = []
        for flow in self.flows.values():
            head = next(iter(flow.jobs))
            flow.entry = [flow.tag, head.seq, next(_ties), flow]
            self.heap.append(flow.entry)
        heapq.heapify(self.heap)

    def single(self) -> None:
        """Down to one flow: the heap goes."""
        self.heap = []
        for flow in self.flows.values():
            flow.entry = None

    def push(self, flow: _Flow) -> None:
        """(Re)enter ``flow`` in the heap with its current tag and head."""
        self.drop(flow)
        head = next(iter(flow.jobs))
        entry = flow.entry = [flow.tag, head.seq, next(_ties), flow]
        heap = self.heap
        heapq.heappush(heap, entry)
        if len(heap) > 2 * len(self.flows) + 16:  # blanked entries: drop them, amortised O(1)
            heap[:] = [e for e in heap if e[_FLOW] is not None]
            heapq.heapify(heap)

    def drop(self, flow: _Flow) -> None:
        """Blank ``flow``'s entry.  The served flow's is usually the top, and blanked tops
        are popped at once, so a walk from the top does not wade through them."""
        if flow.entry is not None:
            flow.entry[_FLOW] = None
            flow.entry = None
            heap = self.heap
            while heap and heap[0][_FLOW] is None:
                heapq.heappop(heap)

    def merged(self) -> Iterator[Job]:
        """The class's jobs in fair-queueing order (see the module docstring), lazily: the
        first k cost O(k log(k + F)), walking the flows' heap best first without changing
        it.  A flow behind the virtual time counts from it."""
        flows = self.flows
        if len(flows) == 1:
            yield from next(iter(flows.values())).jobs
            return
        heap, vtime = self.heap, self.vtime
        # Each item: (tag, seq, tie, heap index or -1, the flow's job iterator, its cost, the
        # flow's first tag, k): the flow's k-th job is at first + k * cost, a product rather
        # than k sums, so that equal tags stay equal (and ties go to the older job).
        todo: list[tuple[float, int, int, int, Iterator[Job] | None, float, float, int]] = []
        if heap:
            top = heap[0]
            tag = top[_TAG] if top[_TAG] > vtime else vtime
            todo.append((tag, top[_SEQ], next(_ties), 0, None, 0.0, tag, 0))
        size = len(heap)
        while todo:
            tag, _, _, index, jobs, cost, first, k = heapq.heappop(todo)
            if index >= 0:  # a flow's heap entry: its children may come next
                for child in (2 * index + 1, 2 * index + 2):
                    if child < size:
                        e = heap[child]
                        at = e[_TAG] if e[_TAG] > vtime else vtime
                        item = (at, e[_SEQ], next(_ties), child, None, 0.0, at, 0)
                        heapq.heappush(todo, item)
                flow = heap[index][_FLOW]
                if flow is None:
                    continue  # blanked
                jobs, cost = iter(flow.jobs), flow.cost
            assert jobs is not None
            job = next(jobs, None)
            if job is None:
                continue
            yield job
            following = next(jobs, None)
            if following is not None:
                # The flow's next job, one cost later; the iterator is re-read from it.
                again = itertools.chain((following,), jobs)
                k += 1
                heapq.heappush(
                    todo, (first + k * cost, following.seq, next(_ties), -1, again, cost, first, k)
                )


_ties = itertools.count()


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
        flows = cls.flows
        flow = flows.get(tenant)
        _insert(cls.jobs, job)
        if flow is None:
            flow = flows[tenant] = _Flow(cls.vtime + tenant.cost, tenant.cost)
            flow.jobs[job] = None
            if len(flows) == 2:
                cls.rebuild()
            elif len(flows) > 2:
                cls.push(flow)
        else:
            _insert(flow.jobs, job)
            if len(flows) > 1 and next(iter(flow.jobs)) is job:  # a new head: a new entry
                cls.push(flow)
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
        flows = cls.flows
        flow = flows[tenant]
        jobs = flow.jobs
        multi = len(flows) > 1
        was_head = multi and next(iter(jobs)) is job
        del jobs[job]
        if served:
            tag = flow.tag if flow.tag > cls.vtime else cls.vtime
            cls.vtime = tag
            flow.tag = tag + flow.cost
        if not jobs:
            cls.drop(flow)
            del flows[tenant]
            if len(flows) == 1:
                cls.single()
            elif not flows:
                del self._classes[cls.priority]
        elif multi and (served or was_head):
            cls.push(flow)
        key = job.key
        self._keys[key] -= 1
        if self._keys[key] <= 0:
            del self._keys[key]
        self._len -= 1
        return True

    def in_order(self) -> Iterator[Job]:
        """Every waiting job in serving order (see the module docstring)."""
        classes = self._classes
        if len(classes) == 1:
            cls = next(iter(classes.values()))
            if len(cls.flows) == 1:
                return iter(cls.jobs)  # the plain deployment: today's FIFO line
            return cls.merged()
        return self._ranked()

    def _ranked(self) -> Iterator[Job]:
        for cls in sorted(self._classes.values(), key=self._rank):
            yield from cls.merged()

    def _rank(self, cls: _Class) -> tuple[float, int]:
        """Smaller first.  A class's rank is its priority plus the time its oldest job has
        waited over ``aging``; ``now`` cancels out of the comparison, leaving the oldest
        job's start shifted back by ``aging`` per class."""
        oldest = next(iter(cls.jobs))
        if self.aging > 0:
            return (oldest.wait_since / self.aging - cls.priority, oldest.seq)
        return (-cls.priority, oldest.seq)
