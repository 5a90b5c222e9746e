"""Per-session consistency of a trace (E3): pure, over the events of ``trace.py``.

Rules (contract §2), each violation naming the session and the utterance:

- **one answer**: every accepted utterance gets exactly one answer — none for a job never
  accepted, never a second — unless its session ended first (then it goes unanswered);
- **order**: answers leave in the order the utterances were accepted;
- **language**: a result comes from a node serving the utterance's pair (``zh`` serves
  ``zh-cn``; ``auto`` source: any source);
- **pool**: while a session's pair stays the same, its results come from one pool — the
  preferred pool it bound — for as long as that pool still has members.  A hop to another pool
  while the bound pool lived is a violation.  (The scheduler also spills to other pools when the
  preferred pool is full, which a trace cannot see: the replay gives its nodes enough slots
  that this never happens, so there a hop means a broken binding.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from switchboard.bench import trace
from switchboard.protocol import langs

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Violation:
    session: str
    index: int | None
    rule: str  # "one answer", "order", "language" or "pool"
    detail: str

    def __str__(self) -> str:
        where = f"utterance {self.index}" if self.index is not None else "-"
        return f"session {self.session} {where}: [{self.rule}] {self.detail}"


def serves(pairs: Iterable[Sequence[str]], pair: Pair) -> bool:
    """Whether a node listing ``pairs`` serves ``pair`` (contract §1 "Eligibility")."""
    src, tgt = pair
    return any(
        langs.serves(node_tgt, tgt) and (src == langs.AUTO or langs.serves(node_src, src))
        for node_src, node_tgt in pairs
    )


@dataclass(slots=True)
class _Session:
    session_id: str
    line: OrderedDict[str, tuple[int, Pair]] = field(default_factory=OrderedDict)
    known: dict[str, tuple[int, Pair]] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    bound_pair: Pair | None = None
    bound_pools: set[int] | None = None
    closed: bool = False

    def violation(self, index: int | None, rule: str, detail: str) -> Violation:
        return Violation(self.session_id, index, rule, detail)

    def accept(self, ev: trace.Accepted) -> list[Violation]:
        if ev.job_id in self.known:
            return [self.violation(ev.index, "one answer", f"job {ev.job_id} accepted twice")]
        entry = (ev.index, (ev.src, ev.tgt))
        self.known[ev.job_id] = entry
        self.line[ev.job_id] = entry
        if self.closed:
            return [self.violation(ev.index, "one answer", "accepted after the session ended")]
        return []

    def answer(self, ev: trace.Answered, live: set[int] | None) -> list[Violation]:
        if ev.job_id in self.answered:
            return [self.violation(ev.index, "one answer", f"second answer for job {ev.job_id}")]
        entry = self.known.get(ev.job_id)
        if entry is None:
            return [
                self.violation(
                    ev.index, "one answer", f"answer for job {ev.job_id}, never accepted"
                )
            ]
        index, pair = entry
        found: list[Violation] = []
        if self.closed:
            found.append(self.violation(index, "one answer", "answered after the session ended"))
        head = next(iter(self.line), None)
        if head != ev.job_id and head is not None:
            found.append(
                self.violation(index, "order", f"answered before utterance {self.line[head][0]}")
            )
        self.line.pop(ev.job_id, None)
        self.answered.add(ev.job_id)
        if ev.kind == "result":
            found += self._binding(index, pair, ev, live)
        return found

    def _binding(
        self, index: int, pair: Pair, ev: trace.Answered, live: set[int] | None
    ) -> list[Violation]:
        found: list[Violation] = []
        if ev.pairs is not None and not serves(ev.pairs, pair):
            found.append(
                self.violation(
                    index, "language", f"node {ev.node_id} does not serve {pair[0]}->{pair[1]}"
                )
            )
        if ev.pools is None:
            return found
        pools = set(ev.pools)
        if pair != self.bound_pair or self.bound_pools is None:
            self.bound_pair, self.bound_pools = pair, pools
            return found
        common = self.bound_pools & pools
        if common:
            self.bound_pools = common
            return found
        if live is None or self.bound_pools & live:
            found.append(
                self.violation(
                    index,
                    "pool",
                    f"answered from pool {sorted(pools)} by {ev.node_id} while the bound pool"
                    f" {sorted(self.bound_pools)} still had members",
                )
            )
        self.bound_pools = pools
        return found

    def close(self) -> None:
        self.closed = True
        self.line.clear()  # unanswered at the end of a session: dropped, as the contract says

    def finish(self) -> list[Violation]:
        return [
            self.violation(index, "one answer", f"job {job_id} never answered")
            for job_id, (index, _) in self.line.items()
        ]


def check(events: Iterable[trace.Event]) -> list[Violation]:
    """Every violation in a trace, in the order they occur (then the never-answered ones)."""
    sessions: dict[str, _Session] = {}
    live: set[int] | None = None
    found: list[Violation] = []

    def session(session_id: str) -> _Session:
        return sessions.setdefault(session_id, _Session(session_id))

    for ev in events:
        if isinstance(ev, trace.PoolsLive):
            live = set(ev.live)
        elif isinstance(ev, trace.Opened):
            session(ev.session)
        elif isinstance(ev, trace.Accepted):
            found += session(ev.session).accept(ev)
        elif isinstance(ev, trace.Answered):
            found += session(ev.session).answer(ev, live)
        elif isinstance(ev, trace.Closed):
            session(ev.session).close()
    for state in sessions.values():
        found += state.finish()
    return found
