"""Incremental snapshots (design.md "a structural change costs what changed"): built event by
event, a snapshot equals one built from scratch, and it shares what the change left alone."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.management.builder import SnapshotBuilder
from switchboard.management.pools import MemberView, members_of
from switchboard.runtime.eligibility import eligible
from switchboard.runtime.index import PoolLanguageIndex
from switchboard.runtime.snapshot import RuntimeSnapshot
from switchboard.runtime.values import NodeRuntime, NodeStatus, Pool, node_languages
from tests.unit.helpers import ALL, node

CODES = ["en", "zh", "ja", "zh-cn", "fr"]
NODE_IDS = [f"n{i}" for i in range(7)]
SERVICE_SETS = [ALL, frozenset({"asr", "nmt"}), frozenset({"nmt"})]
LOOKUPS = [(s, t) for s in [*CODES, "auto"] for t in CODES if s != t]

# --- events -------------------------------------------------------------------------------------

pairs = st.frozensets(
    st.tuples(st.sampled_from(CODES), st.sampled_from(CODES)).filter(lambda p: p[0] != p[1]),
    max_size=3,
)
runtimes = st.builds(
    NodeRuntime,
    node_id=st.sampled_from(NODE_IDS),
    status=st.sampled_from([NodeStatus.READY, NodeStatus.READY, *NodeStatus]),
    pairs=pairs,
    services=st.sampled_from(SERVICE_SETS),
    accept_public_jobs=st.booleans(),
    max_concurrency=st.integers(1, 4),
)
pool_lists = st.lists(
    st.builds(
        Pool,
        pool_id=st.integers(10, 13),
        name=st.just("p"),
        languages=st.frozensets(st.sampled_from(CODES), min_size=1, max_size=2),
        required_services=st.frozensets(st.sampled_from(sorted(ALL)), max_size=2),
    ),
    max_size=3,
    unique_by=lambda p: p.pool_id,
)


@dataclass(frozen=True)
class Join:  # also any change of a node's view: status, pairs, services, capacity
    view: NodeRuntime


@dataclass(frozen=True)
class Leave:
    node_id: str


@dataclass(frozen=True)
class Status:  # a health flip or a drain
    node_id: str
    status: NodeStatus


@dataclass(frozen=True)
class Capacity:  # a re-registration with another max_concurrency: eligibility unchanged
    node_id: str
    capacity: int


@dataclass(frozen=True)
class SetPools:
    pools: tuple[Pool, ...] | None


events = st.one_of(
    runtimes.map(Join),
    st.sampled_from(NODE_IDS).map(Leave),
    st.builds(Status, st.sampled_from(NODE_IDS), st.sampled_from(list(NodeStatus))),
    st.builds(Capacity, st.sampled_from(NODE_IDS), st.integers(1, 4)),
    pool_lists.map(lambda ps: SetPools(tuple(ps) or None)),
)
batches = st.lists(st.lists(events, min_size=1, max_size=4), min_size=1, max_size=12)


# --- the reference: the from-scratch algorithm ----------------------------------------------


@dataclass
class Truth:
    nodes: dict[str, NodeRuntime]
    configured: tuple[Pool, ...] | None = None

    def apply(self, event: object, changes: dict[str, NodeRuntime | None]) -> None:
        match event:
            case Join(view):
                self.nodes[view.node_id] = changes[view.node_id] = view
            case Leave(node_id) if node_id in self.nodes:
                del self.nodes[node_id]
                changes[node_id] = None
            case Status(node_id, status) if node_id in self.nodes:
                view = replace(self.nodes[node_id], status=status)
                self.nodes[node_id] = changes[node_id] = view
            case Capacity(node_id, capacity) if node_id in self.nodes:
                view = replace(self.nodes[node_id], max_concurrency=capacity)
                self.nodes[node_id] = changes[node_id] = view
            case SetPools(pools):
                self.configured = pools


def expected_pools(truth: Truth, ids: dict[frozenset[str], int]) -> tuple[Pool, ...]:
    if truth.configured is not None:
        return truth.configured
    live = {node_languages(n.pairs) for n in truth.nodes.values()} - {frozenset()}
    assert set(ids) == live, "one generated pool per live language set"
    return tuple(
        Pool(ids[s], "-".join(sorted(s)), s, frozenset()) for s in sorted(live, key=ids.get)
    )


def check(snap: RuntimeSnapshot, truth: Truth) -> None:
    """``snap`` is what the from-scratch algorithm makes of ``truth``."""
    generated = truth.configured is None
    ids = {p.languages: p.pool_id for p in snap.pools} if generated else {}
    pools = expected_pools(truth, ids)
    assert snap.pools == pools and snap.generated_pools == generated
    assert dict(snap.nodes) == truth.nodes
    views = [
        MemberView(n.node_id, node_languages(n.pairs), n.services) for n in truth.nodes.values()
    ]
    members = members_of(pools, views, generated=generated)
    assert dict(snap.pool_members) == members
    index = PoolLanguageIndex(pools, generated=generated)
    for src, tgt in LOOKUPS:
        assert snap.lang_index.lookup(src, tgt) == index.lookup(src, tgt), (src, tgt)
    for pool in pools:
        for src, tgt in LOOKUPS:
            for services in SERVICE_SETS:
                want = eligible(truth.nodes, members[pool.pool_id], src, tgt, services)
                got = snap.eligible_members(pool.pool_id, src, tgt, services)
                assert got == want, (pool, src, tgt, services)


def dispatch_some(snap: RuntimeSnapshot) -> None:
    """Fill a few memo entries, as dispatch would, so the next build has some to patch."""
    for pool in snap.pools:
        for src, tgt in LOOKUPS[::2]:
            for services in SERVICE_SETS:
                snap.eligible_members(pool.pool_id, src, tgt, services)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_incremental_snapshot_equals_one_built_from_scratch(plan: list[list[object]]) -> None:
    """Any sequence of joins, leaves, health flips, drains and pool changes, built batch by
    batch, gives the snapshot the from-scratch algorithm gives, memos included; and building
    the next snapshot never changes what the previous one answers (copy-on-write)."""
    builder = SnapshotBuilder()
    truth = Truth({})
    seen_ids: dict[int, frozenset[str]] = {}
    previous: tuple[RuntimeSnapshot, Truth] | None = None
    for version, batch in enumerate(plan, start=1):
        changes: dict[str, NodeRuntime | None] = {}
        for event in batch:
            truth.apply(event, changes)
        snap = builder.build(version, changes, configured=truth.configured)
        check(snap, truth)
        if snap.generated_pools:  # a generated pool id always means the same language set
            for pool in snap.pools:
                assert seen_ids.setdefault(pool.pool_id, pool.languages) == pool.languages
        if previous is not None:
            check(*previous)
        previous = (snap, Truth(dict(truth.nodes), truth.configured))
        dispatch_some(snap)


def test_a_change_shares_every_untouched_pool() -> None:
    """A health flip in one pool leaves the other pools' members, memos and the index shared."""
    builder = SnapshotBuilder()
    first = builder.build(
        1,
        {"a": node("a", ("zh", "en")), "b": node("b", ("ja", "en")), "c": node("c", ("zh", "en"))},
        configured=None,
    )
    zh = next(p.pool_id for p in first.pools if p.name == "en-zh")
    ja = next(p.pool_id for p in first.pools if p.name == "en-ja")
    assert first.eligible_members(zh, "zh", "en", ALL)[0] == ("a", "c")
    first.eligible_members(ja, "ja", "en", ALL)
    flipped = node("a", ("zh", "en"), status=NodeStatus.DEGRADED)
    second = builder.build(2, {"a": flipped}, configured=None)
    assert second.lang_index is first.lang_index
    assert second.eligible[ja] is first.eligible[ja]
    assert second.pool_members[zh] is first.pool_members[zh]  # membership did not change
    assert second.eligible[zh] is not first.eligible[zh]
    assert second.eligible[zh].get(("zh", "en", ALL)) == (("c",), (4,))  # patched, not dropped
    assert first.eligible_members(zh, "zh", "en", ALL)[0] == ("a", "c")  # the old one is intact
    assert second.nodes["b"] is first.nodes["b"]


def test_a_join_of_a_new_language_set_rebuilds_the_index_and_nothing_else() -> None:
    """A new language set makes a new pool and index; existing pools keep their members."""
    builder = SnapshotBuilder()
    first = builder.build(1, {"a": node("a", ("zh", "en"))}, configured=None)
    second = builder.build(2, {"b": node("b", ("fr", "en"))}, configured=None)
    (zh,) = first.pools
    assert second.lang_index is not first.lang_index
    assert second.pool_members[zh.pool_id] is first.pool_members[zh.pool_id]
    assert second.eligible[zh.pool_id] is first.eligible[zh.pool_id]
    assert [p.name for p in second.pools] == ["en-zh", "en-fr"]
    third = builder.build(3, {}, configured=None)
    assert third.lang_index is second.lang_index and third.version == 3


def test_a_node_that_changes_language_set_moves_pool_memos_too() -> None:
    """A node that adds a pair leaves its generated pool (and that pool's cached eligible
    members, though it still serves the pair) and joins the pool of its new set."""
    builder = SnapshotBuilder()
    first = builder.build(
        1, {"a": node("a", ("zh", "en")), "b": node("b", ("zh", "en"))}, configured=None
    )
    (zh,) = first.pools
    assert first.eligible_members(zh.pool_id, "zh", "en", ALL)[0] == ("a", "b")
    second = builder.build(2, {"a": node("a", ("zh", "en"), ("en", "fr"))}, configured=None)
    wide = next(p.pool_id for p in second.pools if p.name == "en-fr-zh")
    assert second.pool_members[zh.pool_id] == ("b",)
    assert second.eligible_members(zh.pool_id, "zh", "en", ALL)[0] == ("b",)
    assert second.eligible_members(wide, "zh", "en", ALL)[0] == ("a",)
    assert second.lang_index.lookup("zh", "en") == (zh.pool_id, wide)


def test_a_redefined_pool_keeps_its_memo_patched_for_the_same_batch() -> None:
    """An operator edit that keeps a pool's members keeps its memo (no walk on the next
    dispatch), patched for a health flip that arrives in the same coalesced batch."""
    builder = SnapshotBuilder()
    asia = Pool(10, "asia", frozenset({"zh", "en"}), frozenset())
    views = {n: node(n, ("zh", "en")) for n in ("a", "b", "c")}
    first = builder.build(1, views, configured=(asia,))
    assert first.eligible_members(10, "zh", "en", ALL)[0] == ("a", "b", "c")
    strict = replace(asia, required_services=frozenset({"tts"}))  # every member has tts
    flipped = node("b", ("zh", "en"), status=NodeStatus.DEGRADED)
    second = builder.build(2, {"b": flipped}, configured=(strict,))
    assert second.pool_members[10] == ("a", "b", "c")
    assert second.eligible[10].get(("zh", "en", ALL)) == (("a", "c"), (4, 4))
    notts = node("c", ("zh", "en"), services=frozenset({"asr", "nmt"}))
    third = builder.build(3, {"c": notts}, configured=(asia,))
    assert third.eligible[10].get(("zh", "en", ALL)) == (("a",), (4,))
    asr_nmt = frozenset({"asr", "nmt"})
    assert third.eligible_members(10, "zh", "en", asr_nmt)[0] == ("a", "c")
    fourth = builder.build(4, {}, configured=(strict,))  # c leaves the pool: patched out
    assert fourth.pool_members[10] == ("a", "b")
    assert fourth.eligible[10].get(("zh", "en", asr_nmt)) == (("a",), (4,))


def test_an_edit_that_moves_no_member_keeps_members_memo_and_index() -> None:
    """A required service every member has: the pool is redefined, but no kind moves in or
    out, so its member tuple, its memo and the language index are carried as they are."""
    builder = SnapshotBuilder()
    asia = Pool(10, "asia", frozenset({"zh", "en"}), frozenset())
    euro = Pool(11, "euro", frozenset({"fr", "en"}), frozenset())
    views = {"a": node("a", ("zh", "en")), "b": node("b", ("fr", "en"))}
    first = builder.build(1, views, configured=(asia, euro))
    first.eligible_members(10, "zh", "en", ALL)
    strict = replace(asia, required_services=frozenset({"tts"}))
    second = builder.build(2, {}, configured=(strict, euro))
    assert second.pools[0] == strict
    assert second.pool_members[10] is first.pool_members[10]
    assert second.eligible[10] is first.eligible[10]
    assert second.lang_index is first.lang_index
    moved = replace(asia, languages=frozenset({"fr", "en"}))  # b in, a out; a new index
    third = builder.build(3, {}, configured=(moved, euro))
    assert third.pool_members[10] == ("b",)
    assert third.lang_index is not second.lang_index
    assert third.lang_index.lookup("fr", "en") == (10, 11)


def test_a_kind_that_empties_across_a_pool_change_is_not_remembered_stale() -> None:
    """Found by the property test: a node's kind empties, the pools change while it has no
    node, and a node of that kind comes back: its pools are those of the new pool list."""
    builder = SnapshotBuilder()
    wide = ("en", "zh"), ("ja", "zh-cn")
    two = frozenset({"asr", "nmt"})
    builder.build(1, {"n": node("n", *wide, services=two)}, configured=None)
    builder.build(2, {"n": node("n", services=ALL)}, configured=None)  # no languages: no pool
    third = builder.build(3, {"n": node("n", *wide)}, configured=None)  # the set's new pool
    fourth = builder.build(4, {"n": node("n", *wide, services=two)}, configured=None)
    (pool,) = fourth.pools
    assert pool == third.pools[0]
    assert fourth.pool_members[pool.pool_id] == ("n",)


def test_a_flipping_lone_node_keeps_its_kind_cached_until_the_pools_change() -> None:
    """A health flip moves a node out of its kind and back; the kind's pools stay cached in
    between (not checked against every pool again at each flip), and a pool change drops
    the cache of kinds no node has, so nothing stale survives it."""
    builder = SnapshotBuilder()
    pair = ("en", "zh")
    two = frozenset({"asr", "nmt"})
    builder.build(1, {"n": node("n", pair), "m": node("m", pair)}, configured=None)
    builder.build(2, {"n": node("n", pair, services=two)}, configured=None)  # degraded, alone
    degraded = (node_languages(node("n", pair).pairs), two)
    builder.build(3, {"n": node("n", pair)}, configured=None)  # ready again: that kind empties
    assert degraded in builder._kind_pools  # kept for the next flip
    pools = builder.snapshot.pools
    edited = tuple(replace(p, required_services=two) for p in pools)
    builder.build(4, {}, configured=edited)
    assert degraded not in builder._kind_pools  # a dead kind is not carried over a pool change
    fifth = builder.build(5, {"n": node("n", pair, services=two)}, configured=edited)
    check_members = {pid: set(ids) for pid, ids in fifth.pool_members.items()}
    assert all({"n", "m"} <= ids for ids in check_members.values())
