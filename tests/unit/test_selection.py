"""The session decision and the choice of candidates (seed §5–§6), as pure functions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dispatch import selection
from switchboard.protocol.messages import Pipeline
from switchboard.runtime.values import NodeStatus
from switchboard.sessions.state import SessionRuntimeState
from tests.unit.helpers import ALL, node, snapshot


def test_decision_binds_pair_and_preferred_pool_and_keeps_them() -> None:
    """The first utterance binds pair and pool; the next keeps them (cache per version)."""
    snap = snapshot(node("a", ("zh", "en")), node("b", ("zh", "en"), ("ja", "en")))
    state = SessionRuntimeState()
    first = state.decide(snap, "zh_CN", "EN")
    assert first.pair == ("zh-cn", "en") and first.rebound
    assert first.preferred_pool == first.pools[0] and first.members == ("a",)
    second = state.decide(snap, "zh-cn", "en")
    assert not second.rebound and second.preferred_pool == first.preferred_pool
    assert state.cached_members == (("a",), 1)


def test_decision_rebinds_on_new_pair() -> None:
    """Another pair rebinds both the pair and the preferred pool (contract §2)."""
    snap = snapshot(node("a", ("zh", "en")), node("b", ("ja", "en")))
    state = SessionRuntimeState()
    zh = state.decide(snap, "zh", "en")
    ja = state.decide(snap, "ja", "en")
    assert ja.rebound and ja.pair == ("ja", "en")
    assert ja.preferred_pool != zh.preferred_pool and ja.members == ("b",)


def test_decision_rebinds_when_preferred_pool_loses_its_members() -> None:
    """A preferred pool that no longer has members is replaced by one that has."""
    state = SessionRuntimeState()
    snap1 = snapshot(node("a", ("zh", "en")), node("b", ("zh", "en"), ("fr", "en")))
    d1 = state.decide(snap1, "zh", "en")
    snap2 = snapshot(node("b", ("zh", "en"), ("fr", "en")), version=2)
    d2 = state.decide(snap2, "zh", "en")
    assert d2.rebound and d2.members == ("b",) and d2.preferred_pool != d1.preferred_pool


def test_candidates_tiers_preferred_then_other_pools_then_tried() -> None:
    """Preferred pool first, other serving pools next, already-tried nodes last."""
    snap = snapshot(node("a", ("zh", "en")), node("b", ("zh", "en"), ("fr", "en")))
    decision = SessionRuntimeState().decide(snap, "zh", "en")
    cands = selection.candidates(snap, decision, ALL)
    assert [(c.node_id, c.tier) for c in cands] == [("a", 0), ("b", 1)]
    retry = selection.candidates(snap, decision, ALL, tried={"a"})
    assert [(c.node_id, c.tier) for c in retry] == [("b", 1), ("a", 2)]


def test_candidates_rotate_within_a_tier() -> None:
    """Equal nodes take turns: the start position rotates."""
    snap = snapshot(node("a", ("zh", "en")), node("b", ("zh", "en")), node("c", ("zh", "en")))
    decision = SessionRuntimeState().decide(snap, "zh", "en")
    firsts = {selection.candidates(snap, decision, ALL, start=i)[0].node_id for i in range(3)}
    assert firsts == {"a", "b", "c"}


def test_exclusion_reasons() -> None:
    """Only ready, public nodes serving the exact pair with the needed services qualify."""
    needs_tts = selection.services_for(Pipeline(use_asr=True, use_nmt=True, use_tts=True))
    asr_nmt = selection.services_for(Pipeline(use_asr=True, use_nmt=True, use_tts=False))
    assert asr_nmt == frozenset({"asr", "nmt"})
    assert selection.services_for(None) == ALL
    cases = {
        node("reg", ("zh", "en"), status=NodeStatus.REGISTERING): "status registering",
        node("drn", ("zh", "en"), status=NodeStatus.DRAINING): "status draining",
        node("priv", ("zh", "en"), public=False): "does not accept public jobs",
        node("oneway", ("en", "zh")): "does not serve zh->en",
        node("notts", ("zh", "en"), services=frozenset({"asr", "nmt"})): "services not ready: tts",
    }
    for n, reason in cases.items():
        assert selection.exclusion(n, "zh", "en", needs_tts) == reason
    assert selection.exclusion(node("ok", ("zh", "en")), "zh", "en", needs_tts) is None
    notts = node("notts", ("zh", "en"), services=frozenset({"asr", "nmt"}))
    assert selection.exclusion(notts, "zh", "en", asr_nmt) is None


def test_auto_source_and_one_way_nodes() -> None:
    """'auto' takes any pair with the target; a one-way node gets only its direction."""
    one_way = node("ow", ("zh", "en"))
    assert one_way.serves("auto", "en") and one_way.serves("zh-cn", "en")
    assert not one_way.serves("en", "zh") and not one_way.serves("auto", "zh")


@settings(max_examples=200, deadline=None)
@given(
    # Large pools with few loaded nodes (placed by bisection) as well as anything else.
    caps=st.lists(st.integers(1, 3), min_size=24, max_size=40)
    | st.lists(st.integers(1, 3), min_size=1, max_size=40),
    loaded=st.dictionaries(st.integers(0, 39), st.integers(0, 4), max_size=2)
    | st.dictionaries(st.integers(0, 39), st.integers(0, 4), max_size=40),
    start=st.integers(0, 100),
    limit=st.integers(1, 6),
    skip=st.sets(st.integers(0, 39), max_size=5),
)
def test_best_is_least_loaded_with_room_in_rotated_member_order(
    caps: list[int], loaded: dict[int, int], start: int, limit: int, skip: set[int]
) -> None:
    """Whether the pool's load is sparse or dense, the choice is the same ranking: job count,
    then member order rotated to the start, nodes without room or skipped left out."""
    ids = tuple(f"n{i:02d}" for i in range(len(caps)))
    load = {f"n{i:02d}": jobs for i, jobs in loaded.items()}
    load["elsewhere"] = 1  # a node of another pool: it must change nothing
    skipped = {f"n{i:02d}" for i in skip}
    count = len(ids)
    ranked = sorted(range(count), key=lambda i: (load.get(ids[i], 0), (i - start) % count))
    want = [
        (ids[i], caps[i]) for i in ranked if load.get(ids[i], 0) < caps[i] and ids[i] not in skipped
    ][:limit]
    got = selection._best((ids, tuple(caps)), start=start, load=load, skip=skipped, limit=limit)
    assert got == want
