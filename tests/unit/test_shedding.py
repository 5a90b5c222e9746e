"""The dispatch core under saturation (issue 14 items 1–2): new work refused ``OVERLOADED`` at
once, accepted work still answered, and a timed-out wait blamed on whoever caused it.  Driven
synchronously, with no loop, by the property tests' simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.config import Settings, load_settings
from switchboard.dispatch.overload import OverloadBounds
from switchboard.errors import ConfigError
from switchboard.protocol.cuts import MANUAL_CUT
from switchboard.server.scrape import OverloadCollector
from tests.unit.test_core_properties import Sim

BOUNDS = OverloadBounds(loop_lag=0, store_backlog=10, queue_age=0, retry_after=0.2)


def _run_node(sim: Sim) -> None:
    node = sim.nodes["n0"]
    sim.answer(node, next(iter(node.running)), success=True)


def test_an_overloaded_core_refuses_new_utterances_and_answers_accepted_ones() -> None:
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    sim.utter(s, 0)  # running
    sim.utter(s, 1)  # waiting for the slot
    sim.core.overload.store_owed = 50  # the driver's signal: the store is behind
    sim.utter(s, 2)
    assert s.accepted == [0, 1]
    (refusal,) = s.out
    assert refusal["code"] == "OVERLOADED"
    assert refusal["details"] == {
        "utterance_index": 2,
        "retry_after_ms": 200,
        "reason": "store_backlog",
    }
    assert sim.metrics.dispatch.shed == {"loop_lag": 0, "store_backlog": 1, "queue_age": 0}
    _run_node(sim)
    _run_node(sim)
    answers = [(m["type"], m.get("utterance_index")) for m in s.out[1:]]
    assert answers == [("translation_result", 0), ("translation_result", 1)]
    assert sim.core.in_flight == 0


def test_overload_ends_below_half_the_bound() -> None:
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    sim.core.overload.store_owed = 11
    sim.utter(s, 0)
    sim.core.overload.store_owed = 6  # below the bound, above half: still shedding
    sim.utter(s, 1)
    sim.core.overload.store_owed = 4
    sim.utter(s, 2)
    assert [m["code"] for m in s.out if m["type"] == "error"] == ["OVERLOADED", "OVERLOADED"]
    assert s.accepted == [2]


def test_a_wait_through_a_store_backlog_times_out_overloaded_not_no_node() -> None:
    """The nodes were not the reason: the answer says the scheduler fell behind."""
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)  # waits from t=0
    sim.now = 1.0
    sim.core.overload.store_owed = 50
    sim.utter(s, 2)  # refused, and the gauge notes the scheduler behind at t=1
    sim.core.overload.store_owed = 0
    assert sim.fire_next_timer()  # 1's pending timeout (3 s)
    _run_node(sim)  # 0's answer, and 1's behind it (answers leave in order)
    timed_out = [m for m in s.out if m.get("details", {}).get("utterance_index") == 1]
    (answer,) = timed_out
    assert answer["code"] == "OVERLOADED"
    assert answer["details"]["reason"] == "store_backlog"
    assert answer["details"]["job_id"] and answer["details"]["retry_after_ms"] >= 200


def test_a_wait_for_full_nodes_alone_stays_no_available_node() -> None:
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)
    assert sim.fire_next_timer()
    _run_node(sim)
    assert s.out[-1]["code"] == "NO_AVAILABLE_NODE"


def test_a_long_line_sheds_new_work_but_full_nodes_keep_their_code() -> None:
    """Queue age (on when asked) refuses new utterances; the job that waited is still
    NO_AVAILABLE_NODE's, since full nodes, not the scheduler, kept it waiting."""
    sim = Sim([1], overload=OverloadBounds(loop_lag=0, store_backlog=0, queue_age=1.0))
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)
    sim.now = 1.5
    sim.utter(s, 2)
    assert s.out[-1]["code"] == "OVERLOADED"
    assert s.out[-1]["details"]["reason"] == "queue_age"
    assert s.out[-1]["details"]["retry_after_ms"] == 1500
    assert sim.fire_next_timer()
    _run_node(sim)
    assert s.out[-1]["code"] == "NO_AVAILABLE_NODE"


def test_a_wait_while_the_store_is_down_times_out_dependency_down() -> None:
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    sim.utter(s, 0)
    sim.utter(s, 1)
    sim.core.store_failed()  # the driver's maintenance found the store unreachable
    assert sim.fire_next_timer()
    _run_node(sim)
    assert s.out[-1]["code"] == "SCHEDULER_DEPENDENCY_DOWN"
    assert s.out[-1]["details"]["utterance_index"] == 1


def test_a_streamed_utterance_is_shed_and_its_index_used_up() -> None:
    sim = Sim([1], overload=BOUNDS)
    s = sim.open("s")
    assert s.session is not None
    sim.core.overload.store_owed = 50
    actions = sim.core.admit_streamed(
        s.session,
        "",
        audio_format="pcm16",
        sample_rate=16000,
        cut=MANUAL_CUT,
        received_at=0.0,
        now=sim.now,
    )
    sim.perform(actions)
    assert s.out[-1]["code"] == "OVERLOADED"
    assert s.out[-1]["details"]["utterance_index"] == 0
    assert s.session.next_index == 1 and not s.session.pending


def test_overloaded_is_none_while_every_bound_is_off() -> None:
    sim = Sim([1])
    sim.core.overload.store_owed = 10**6
    assert sim.core.overloaded(0.0) is None


def test_shed_counter_is_exported_with_every_reason_from_the_start() -> None:
    """``switchboard_shed_total{reason}``: every reason has a series at 0 before the first
    shed, so rate() sees the first one; a shed counts under its reason and as a rejection."""
    sim = Sim([1], overload=BOUNDS)
    text = sim.metrics.render().decode()
    for reason in ("loop_lag", "store_backlog", "queue_age"):
        assert f'switchboard_shed_total{{reason="{reason}"}} 0.0' in text
    s = sim.open("s")
    sim.core.overload.store_owed = 50
    sim.utter(s, 0)
    text = sim.metrics.render().decode()
    assert 'switchboard_shed_total{reason="store_backlog"} 1.0' in text
    assert 'switchboard_rejections_total{code="OVERLOADED"} 1.0' in text


def test_the_gauge_signals_are_exported_at_scrape_time() -> None:
    """Loop lag, store calls owed and the verdict, read when scraped (OverloadCollector)."""
    sim = Sim([1], overload=BOUNDS)
    sim.metrics.register(OverloadCollector(sim.core.overload))
    s = sim.open("s")
    sim.core.overload.store_owed = 50
    sim.utter(s, 0)
    text = sim.metrics.render().decode()
    assert "switchboard_store_calls_owed 50.0" in text
    assert "switchboard_overloaded 1.0" in text
    assert "switchboard_loop_lag_seconds 0.0" in text


def test_the_bounds_come_from_flag_environment_and_file_alike(tmp_path: Path) -> None:
    """--overload-* (protocol.md §6): each from any source, 0 turns a signal off, a negative
    or non-number is refused; defaults 0.25 s, 2000, off, 0.25 s."""
    defaults = Settings()
    assert (defaults.overload_loop_lag, defaults.overload_store_backlog) == (0.02, 512)
    assert (defaults.overload_queue_age, defaults.overload_retry_after) == (0.0, 0.25)
    toml = tmp_path / "switchboard.toml"
    toml.write_text("overload_store_backlog = 10\noverload_queue_age = 0.5\n")
    settings = load_settings(
        {"overload_queue_age": "1.5"},
        environ={"SWITCHBOARD_OVERLOAD_LOOP_LAG": "0"},
        config_path=str(toml),
    )
    assert settings.overload_loop_lag == 0.0  # the environment: off
    assert settings.overload_store_backlog == 10  # the file
    assert settings.overload_queue_age == 1.5  # the flag beats the file
    for bad in ({"overload_store_backlog": "-1"}, {"overload_retry_after": "0"}):
        with pytest.raises(ConfigError):
            load_settings(bad, environ={})


def test_a_saturated_core_sheds_the_tenant_above_its_share_not_the_one_below() -> None:
    """Issue 14: a burst of one tenant cannot crowd another out of a saturated scheduler.
    While overloaded, a tenant holding less than its weighted share of the held jobs is still
    admitted; the one above its share is refused; alone (or level), everyone is refused."""
    sim = Sim([1], overload=BOUNDS)
    big, small = sim.open("big", tenant="big"), sim.open("small", tenant="small")
    for index in range(4):
        sim.utter(big, index)  # one runs, three wait: big holds 4 jobs
    sim.core.overload.store_owed = 50  # the store is behind: saturated
    sim.utter(big, 4)
    sim.utter(small, 0)  # holds none of the 4: below its half
    sim.utter(small, 1)  # holds 1 of 5: still below
    assert big.accepted == [0, 1, 2, 3] and small.accepted == [0, 1]
    assert [(m["code"], m["details"]["utterance_index"]) for m in big.out] == [("OVERLOADED", 4)]
    assert small.out == []
    alone = Sim([1], overload=BOUNDS)
    only = alone.open("only", tenant="only")
    alone.utter(only, 0)
    alone.core.overload.store_owed = 50
    alone.utter(only, 1)  # one tenant holds everything: at its share, not below it
    assert only.accepted == [0] and [m["code"] for m in only.out] == ["OVERLOADED"]


def test_a_saturated_core_sheds_the_lowest_class_first() -> None:
    """Higher classes go first when the scheduler is scarce too: while a lower class holds
    jobs, a higher class's new utterance is accepted and the lowest class's is refused."""
    sim = Sim([1], overload=BOUNDS)
    low, high = sim.open("low", priority=-1), sim.open("high", priority=1)
    sim.utter(low, 0)
    sim.utter(low, 1)
    sim.core.overload.store_owed = 50  # saturated
    sim.utter(low, 2)
    sim.utter(high, 0)
    sim.utter(high, 1)
    assert low.accepted == [0, 1] and high.accepted == [0, 1]
    assert [m["code"] for m in low.out] == ["OVERLOADED"] and high.out == []
    only = Sim([1], overload=BOUNDS)
    alone = only.open("alone", priority=1)
    only.utter(alone, 0)
    only.core.overload.store_owed = 50
    only.utter(alone, 1)  # no lower class holds anything: shed like anyone
    assert alone.accepted == [0] and [m["code"] for m in alone.out] == ["OVERLOADED"]


def test_a_lagging_loop_admits_a_share_of_new_utterances_evenly() -> None:
    """Loop lag is controlled, not switched (overload.py): after probes that fired late the
    core admits the admitted share of new utterances, spread among the refused, and answers
    every one it admitted."""
    bounds = OverloadBounds(loop_lag=0.05, store_backlog=0, queue_age=0, retry_after=0.2)
    sim = Sim([64], overload=bounds)
    gauge = sim.core.overload
    for at in (1.0, 2.0):  # two probes, each 0.1 s late: the share is cut twice
        gauge.probe_started(at)
        gauge.probe_fired(at + 0.1)
    share = gauge.admitted_share
    assert 0.4 < share < 0.5
    s = sim.open("s")
    sim.now = 3.0
    node = sim.nodes["n0"]
    for index in range(40):
        sim.utter(s, index)
        while node.running:  # answered at once: the session's pending limit never binds
            sim.answer(node, next(iter(node.running)), success=True)
    assert abs(len(s.accepted) - share * 40) <= 1
    refused = [m["details"]["utterance_index"] for m in s.out if m.get("code") == "OVERLOADED"]
    assert sorted(refused + s.accepted) == list(range(40))
    assert all(b - a <= 3 for a, b in zip(s.accepted, s.accepted[1:], strict=False))  # even
    assert {m["details"]["reason"] for m in s.out if m.get("code") == "OVERLOADED"} == {"loop_lag"}
    results = [m["utterance_index"] for m in s.out if m["type"] == "translation_result"]
    assert results == s.accepted
