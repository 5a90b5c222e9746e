"""The waiting line (dispatch/waiting.py): classes with aging, fair queueing between tenants,
acceptance order per tenant; pure, no core, no clock."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from switchboard.dispatch.jobs import Job, Session
from switchboard.dispatch.tenants import Tenant, Tenants, TenantSpec
from switchboard.dispatch.waiting import WaitingLine
from switchboard.protocol.profile import SessionProfile
from switchboard.sessions.manager import SessionManager

_seq = itertools.count()


class _Peer:
    def push(self, frame: bytes) -> None:
        raise AssertionError("not used")


def session(tenant: Tenant, *, priority: int = 0, name: str | None = None) -> Session:
    name = name or f"{tenant.name}-{next(_seq)}"
    profile = SessionProfile(trace_id="t", src_lang="en", tgt_lang="de")
    return Session(name, SessionManager().create(name), _Peer(), profile, tenant, priority)


def job(owner: Session, *, now: float = 0.0, pair: tuple[str, str] = ("en", "de")) -> Job:
    seq = next(_seq)
    return Job(
        job_id=f"j{seq}",
        session=owner,
        utterance_index=seq,
        src_lang=pair[0],
        tgt_lang=pair[1],
        services=frozenset({"asr", "nmt", "tts"}),
        pipeline={},
        raw={},
        trace_id="t",
        received_at=now,
        seq=seq,
        wait_since=now,
    )


def serve(line: WaitingLine) -> Job:
    """The job the next slot goes to: the first in serving order."""
    first = next(line.in_order())
    assert line.remove(first, served=True)
    return first


def tenants(*specs: TenantSpec) -> Tenants:
    return Tenants(specs)


def test_one_tenant_one_class_is_fifo_and_keeps_acceptance_order() -> None:
    """The plain deployment: today's line, a late re-entry back in its place."""
    t = tenants()
    s = session(t.default)
    line = WaitingLine()
    jobs = [job(s) for _ in range(4)]
    for j in jobs[1:]:
        line.add(j)
    line.add(jobs[0])  # a failed reservation comes back: it is the oldest
    assert list(line.in_order()) == jobs == list(line)
    assert line.ahead(jobs[0].key) and len(line) == 4
    assert [serve(line) for _ in range(4)] == jobs
    assert not line.ahead(jobs[0].key) and len(line) == 0


def test_a_burst_does_not_starve_a_small_tenant() -> None:
    """Equal weights: the small tenant's jobs alternate with the flood's, not after it."""
    t = tenants()
    big, small = session(t.join("big")), session(t.join("small"))
    line = WaitingLine()
    for _ in range(10):
        line.add(job(big))
    for _ in range(3):
        line.add(job(small))
    order = [serve(line).session.tenant.name for _ in range(13)]
    assert order[:7] == ["big", "small", "big", "small", "big", "small", "big"]
    assert order[7:] == ["big"] * 6


def test_a_tenant_arriving_late_is_served_next_not_after_the_backlog() -> None:
    t = tenants()
    big, small = session(t.join("big")), session(t.join("small"))
    line = WaitingLine()
    for _ in range(10):
        line.add(job(big))
    served = [serve(line) for _ in range(5)]
    late = job(small)
    line.add(late)
    assert serve(line) is not late  # a tie goes to the older job
    assert serve(line) is late
    assert all(j.session is big for j in served)


def test_weights_set_the_shares() -> None:
    """Weights 2 and 1, both backlogged: two jobs of the heavy tenant per job of the other."""
    t = tenants(TenantSpec(name="heavy", weight=2))
    heavy, light = session(t.join("heavy")), session(t.join("light"))
    line = WaitingLine()
    for _ in range(40):
        line.add(job(heavy))
        line.add(job(light))
    counts = Counter(serve(line).session.tenant.name for _ in range(30))
    assert counts == {"heavy": 20, "light": 10}


def test_a_blocked_tenant_earns_no_credit() -> None:
    """A tenant whose jobs sat behind full nodes while another was served does not then take
    every slot: it counts from the virtual time, one job ahead at most, then alternates."""
    t = tenants()
    a, b = session(t.join("a")), session(t.join("b"))
    line = WaitingLine()
    blocked = [job(b) for _ in range(5)]
    for j in blocked:
        line.add(j)
    for _ in range(20):  # a's jobs were served while b's nodes were full
        line.add(job(a))
        for j in line.in_order():
            if j.session is a:
                line.remove(j, served=True)
                break
    for _ in range(5):
        line.add(job(a))
    order = [serve(line).session.tenant.name for _ in range(7)]
    assert order == ["b", "b", "a", "b", "a", "b", "a"]


def test_higher_classes_go_first() -> None:
    t = tenants()
    low, high = session(t.default, priority=-1), session(t.default, priority=1)
    line = WaitingLine()
    lows = [job(low) for _ in range(3)]
    for j in lows:
        line.add(j)
    highs = [job(high) for _ in range(2)]
    for j in highs:
        line.add(j)
    assert list(line.in_order()) == highs + lows
    assert list(line) == lows + highs  # iteration is acceptance order


def test_aging_bounds_how_much_longer_a_lower_class_waits() -> None:
    """With aging 1 s, a class's oldest job ranks as if one class higher per second it has
    waited: a class two steps down goes first once its oldest job has waited 2 s longer than
    the higher class's oldest (ties: the older first)."""
    t = tenants()
    line = WaitingLine(aging=1.0)
    low = session(t.default, priority=-1)
    high = session(t.default, priority=1)
    old_low = job(low, now=0.0)
    line.add(old_low)
    high_jobs = [job(high, now=1.9), job(high, now=2.5)]
    for j in high_jobs:
        line.add(j)
    assert list(line.in_order()) == [*high_jobs, old_low]  # 1.9 s: not yet
    line.remove(high_jobs[0], served=True)
    assert next(line.in_order()) is old_low  # 2.5 s younger than it: the low class goes


def test_no_aging_is_strict_priority() -> None:
    t = tenants()
    line = WaitingLine(aging=0.0)
    low, high = session(t.default, priority=-1), session(t.default, priority=0)
    old = job(low, now=0.0)
    line.add(old)
    line.add(job(high, now=100.0))
    assert next(line.in_order()) is not old


def test_remove_unknown_and_dropped_jobs() -> None:
    """Dropping a job (answered or expired while waiting) charges nobody."""
    t = tenants()
    a, b = session(t.join("a")), session(t.join("b"))
    line = WaitingLine()
    ja, jb = job(a), job(b)
    assert not line.remove(ja)
    line.add(ja)
    line.add(ja)  # twice is once
    line.add(jb)
    assert len(line) == 2 and ja in line
    assert line.remove(ja) and not line.remove(ja)
    assert ja not in line and list(line.in_order()) == [jb]


@settings(max_examples=200, deadline=None)
@given(
    weights=st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3])),
    events=st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 1), st.integers(0, 1), st.integers(1, 6)),
            st.tuples(st.just("serve"), st.integers(1, 8), st.just(0), st.just(0)),
        ),
        max_size=60,
    ),
)
def test_served_shares_follow_weights_and_sessions_keep_their_order(
    weights: tuple[int, int], events: list[tuple[str, int, int, int]]
) -> None:
    """Two tenants, two sessions each, arrivals and services in any order.  While both are
    backlogged, their normalised service never differs by more than SCFQ's bound (one job of
    each), so shares converge to the weights and neither starves; each session's jobs are
    served in acceptance order; everything added is served once."""
    t = tenants(TenantSpec(name="a", weight=weights[0]), TenantSpec(name="b", weight=weights[1]))
    flows = [t.join("a"), t.join("b")]
    sessions = [[session(flow) for _ in range(2)] for flow in flows]
    line = WaitingLine()
    added: list[Job] = []
    served: list[Job] = []
    window = [0, 0]  # services to each tenant since both became backlogged
    bound = 1 / weights[0] + 1 / weights[1] + 1e-9

    def backlogged(i: int) -> bool:
        return any(j.session.tenant is flows[i] for j in line)

    def serve_one() -> None:
        both = backlogged(0) and backlogged(1)
        if not both:
            window[:] = [0, 0]
        j = serve(line)
        served.append(j)
        if both:
            window[flows.index(j.session.tenant)] += 1
            lag = window[0] / weights[0] - window[1] / weights[1]
            assert abs(lag) <= bound, (window, weights)

    for kind, a, b, n in events:
        if kind == "add":
            for _ in range(n):
                j = job(sessions[a][b])
                added.append(j)
                line.add(j)
        else:
            for _ in range(min(a, len(line))):
                serve_one()
    while line:
        serve_one()
    assert sorted(served, key=lambda j: j.seq) == added
    for owner in itertools.chain(*sessions):
        mine = [j.seq for j in served if j.session is owner]
        assert mine == sorted(mine)


def _reference_order(line: WaitingLine, flows: list[Tenant]) -> list[Job]:
    """What ``in_order`` must give for one class served in order: every flow's k-th job at
    its tag plus k costs, ties to the older job (a brute-force sort of the whole line)."""
    keyed = []
    for tenant in flows:
        mine = sorted((j for j in line if j.session.tenant is tenant), key=lambda j: j.seq)
        if mine:
            flow = line._classes[0].flows[tenant]
            keyed += [(flow.tag + k * flow.cost, j.seq, j) for k, j in enumerate(mine)]
    return [j for _, _, j in sorted(keyed, key=lambda item: item[:2])]


@settings(max_examples=150, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.5, 1, 2, 5]), min_size=3, max_size=6),
    events=st.lists(
        st.tuples(st.sampled_from(["add", "serve", "drop"]), st.integers(0, 5), st.integers(1, 4)),
        max_size=50,
    ),
)
@example(  # equal tags: 2.0 against ten 0.2s added up (1.9999999999999998)
    weights=[0.5, 0.5, 5], events=[("add", 0, 1), ("add", 2, 2), ("add", 2, 4), ("add", 2, 4)]
)
def test_the_heap_of_tenants_gives_the_fair_queueing_order(
    weights: list[float], events: list[tuple[str, int, int]]
) -> None:
    """Many tenants, arrivals, services of the first job and drops anywhere: ``in_order``
    walks the tenants' heap to exactly the order of a brute-force sort."""
    t = Tenants(tuple(TenantSpec(name=f"t{n}", weight=w) for n, w in enumerate(weights)))
    flows = [t.join(f"t{n}") for n in range(len(weights))]
    owners = [session(flow) for flow in flows]
    line = WaitingLine()
    for kind, who, n in events:
        if kind == "add":
            for _ in range(n):
                line.add(job(owners[who % len(owners)]))
        elif kind == "serve":
            for _ in range(min(n, len(line))):
                serve(line)
        elif line:
            victim = sorted(line, key=lambda j: j.seq)[who % len(line)]
            assert line.remove(victim)  # answered or expired while waiting: no charge
        if line:
            assert list(line.in_order()) == _reference_order(line, flows)
