"""Pools, membership and the PoolLanguageIndex (contract §5), as pure functions."""

from __future__ import annotations

from switchboard.management.pools import GeneratedPoolIds
from switchboard.runtime.values import Pool
from tests.unit.helpers import node, snapshot


def test_generated_pools_one_per_language_set_named_by_sorted_codes() -> None:
    """Each distinct language set is one generated pool named 'a-b'."""
    snap = snapshot(
        node("a", ("zh", "en")), node("b", ("en", "zh")), node("c", ("en", "ja"), ("ja", "en"))
    )
    names = {p.name: snap.pool_members[p.pool_id] for p in snap.pools}
    assert names == {"en-zh": ("a", "b"), "en-ja": ("c",)}


def test_generated_pool_ids_are_stable_while_the_set_exists() -> None:
    """Pool ids survive rebuilds; a vanished set's id is not reused."""
    ids = GeneratedPoolIds()
    first = snapshot(node("a", ("zh", "en")), node("b", ("en", "ja")), ids=ids)
    by_name = {p.name: p.pool_id for p in first.pools}
    second = snapshot(node("b", ("en", "ja")), node("c", ("fr", "en")), ids=ids)
    again = {p.name: p.pool_id for p in second.pools}
    assert again["en-ja"] == by_name["en-ja"]
    assert again["en-fr"] not in by_name.values()


def test_index_prefers_smaller_generated_sets_and_honours_auto() -> None:
    """A pair goes to specialised pools first; 'auto' needs only the target."""
    snap = snapshot(
        node("wide", ("zh", "en"), ("ja", "en"), ("en", "fr")), node("narrow", ("zh", "en"))
    )
    narrow = next(p.pool_id for p in snap.pools if p.name == "en-zh")
    wide = next(p.pool_id for p in snap.pools if p.name == "en-fr-ja-zh")
    assert snap.lang_index.lookup("zh", "en") == (narrow, wide)
    assert snap.lang_index.lookup("auto", "fr") == (wide,)
    assert snap.lang_index.lookup("de", "en") == ()


def test_index_serves_regional_codes_through_their_primary_subtag() -> None:
    """A pool listing zh serves zh-cn (contract §2 "Binding")."""
    snap = snapshot(node("a", ("zh", "en")))
    assert snap.lang_index.lookup("zh-cn", "en") == (snap.pools[0].pool_id,)
    assert snap.lang_index.lookup("zh", "en-us") == (snap.pools[0].pool_id,)


def test_configured_pools_membership_needs_languages_and_ready_services() -> None:
    """A node joins every configured pool whose languages and services it has."""
    pools = (
        Pool(10, "asia", frozenset({"zh", "ja"}), frozenset()),
        Pool(20, "zh-en-tts", frozenset({"zh", "en"}), frozenset({"tts"})),
    )
    snap = snapshot(
        node("both", ("zh", "ja"), ("zh", "en")),
        node("no-tts", ("zh", "en"), services=frozenset({"asr", "nmt"})),
        node("ja-only", ("ja", "en")),
        pools=pools,
    )
    assert snap.pool_members[10] == ("both",)
    assert snap.pool_members[20] == ("both",)
    assert snap.pools_of("both") == [10, 20]
    # configured pools keep the operator's order
    assert snap.lang_index.lookup("zh", "ja") == (10,)


def test_snapshot_is_frozen() -> None:
    """The snapshot and its maps cannot be changed in place (seed §4: copy-on-write)."""
    snap = snapshot(node("a", ("zh", "en")))
    try:
        snap.nodes["b"] = snap.nodes["a"]  # type: ignore[index]
    except TypeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("snapshot.nodes accepted a write")
    try:
        snap.version = 5  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("snapshot accepted an attribute write")
