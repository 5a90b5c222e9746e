"""Choose-and-reserve across node groups, the pure plan (store/groups.py): it picks what one
script over every candidate would pick, counting its own picks, and sends a holder asking twice
where it went first."""

from __future__ import annotations

from switchboard.store.base import Candidate
from switchboard.store.groups import Probe, by_group, plan, unique

GROUP = {"a": 0, "b": 1, "c": 2, "d": 0}


def test_unique_keeps_each_node_at_its_first_entry() -> None:
    cands = [Candidate("a", 1), Candidate("b", 2), Candidate("a", 5, tier=2)]
    assert unique(cands) == [Candidate("a", 1), Candidate("b", 2)]
    assert by_group([*unique(cands), Candidate("d", 1)], GROUP) == {
        0: [Candidate("a", 1), Candidate("d", 1)],
        1: [Candidate("b", 2)],
    }


def test_least_live_first_then_position_counting_its_own_picks() -> None:
    cands = [Candidate("a", 5), Candidate("b", 5), Candidate("c", 5)]
    probe = Probe({"a": 2, "b": 1, "c": 0}, frozenset())
    chosen = plan([(i, cands) for i in range(4)], GROUP, probe, ["h0", "h1", "h2", "h3"])
    # c(0); then b and c tie at 1, b first; then c(1)... as the one-script store would.
    assert chosen == {0: 2, 1: 1, 2: 2, 3: 0}


def test_tier_beats_load_and_full_nodes_are_skipped() -> None:
    cands = [Candidate("a", 4, tier=1), Candidate("b", 2, tier=0), Candidate("c", 9, tier=0)]
    probe = Probe({"a": 0, "b": 2, "c": 5}, frozenset())
    assert plan([(0, cands)], GROUP, probe, ["h"]) == {0: 2}  # b is full: c, tier 0
    none_free = Probe({"a": 4, "b": 2, "c": 9}, frozenset())
    assert plan([(0, cands)], GROUP, none_free, ["h"]) == {0: None}


def test_a_lease_the_holder_has_wins_even_when_full() -> None:
    cands = [Candidate("a", 1), Candidate("b", 1)]
    probe = Probe({"a": 0}, frozenset({(0, "b")}))
    assert plan([(0, cands)], GROUP, probe, ["h"]) == {0: 1}


def test_one_group_goes_unprobed_and_a_repeated_holder_follows_its_first_pick() -> None:
    both = [Candidate("a", 4), Candidate("b", 4)]
    only_a = [Candidate("a", 4), Candidate("d", 4)]  # both in group 0
    probe = Probe({"a": 3, "b": 0}, frozenset())
    chosen = plan([(0, both), (1, both), (2, only_a)], GROUP, probe, ["h", "h", "x"])
    assert chosen == {0: 1, 1: 1, 2: 0}
