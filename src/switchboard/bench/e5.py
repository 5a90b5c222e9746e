"""E5 (issue 14): the scheduler saturated, measured from outside.

Every run has E0's instant nodes (a bare ``job_result`` from the ``job_assign`` handler, 64
slots each: never the limit), its own scheduler process, the nodes in one generator process and
the sessions in ``generators`` others; the design is always ``snapshot`` (the product). Per
store, in this order:

``capacity``     C = completed jobs/s of a closed loop (E0's ``max`` phase), unless given.
``level``        for k in ``e5_levels``: the sessions offer k × C utterances/s on a fixed
                 schedule for ``e5_phase_s``, then the run waits ``e5_wait_s`` for the answers
                 owed and counts what is still owed (``unanswered``: must be 0).
``tenant_solo``  each of two tenants alone, at the offer it makes in the next run.
``tenants``      both at once, equal weights, one offering ``e5_tenant_ratio`` × the other's,
                 ``e5_tenant_load`` × C together: served share against the max-min fair share of
                 C (``fairness.py``), each tenant's p99 against its solo run.
``priority``     two classes (``features.priority``), equal halves of ``e5_priority_load`` × C.

What a client sees is the headline: **accepted latency** = send → the answer of an utterance
the scheduler took on (a ``translation_result``, or an error in the ordered stream other than
``OVERLOADED``); beside it send → the node receives ``job_assign`` (E0's "outside"), and the time
to an ``OVERLOADED`` answer, refused at once or shed after a wait.

``e5_clients`` says how the sessions take ``OVERLOADED``: ``open`` ignores it (the utterance is
shed), ``hint`` backs off on its ``retry_after_ms`` as the SDK does (fakes.py), and an utterance
is shed only once given up after its resends.  Then "send" is the utterance's last send, and
``accepted_first_latency_ms`` counts from when it was first asked for: what a user waits.
"""

from __future__ import annotations

import functools
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from switchboard.bench import fairness, stats
from switchboard.bench.fakes import Tally
from switchboard.bench.loadgen import GenResult, GenSpec, SessionGroup
from switchboard.bench.orchestrate import BenchError, LoadOutcome
from switchboard.bench.scenarios import (
    BenchConfig,
    closed_loop,
    session_pairs,
    split_roles,
    topology,
)
from switchboard.tools.prom import samples as metric_samples

if TYPE_CHECKING:
    from switchboard.bench.runs import Bench

Row = dict[str, Any]

# The code a saturated scheduler answers with (contract §7 "Saturation"); every other code is
# counted on its own.
SHED_CODE = "OVERLOADED"
# ``features.priority`` values of the two classes, as the tenant/priority work names them; the
# one place to change if they are spelled otherwise.
PRIORITY_CLASSES: tuple[str, str] = ("high", "low")
# ``tenant_id`` of the two tenants: the one offering more, then the one offering less.
TENANTS: tuple[str, str] = ("tenant-big", "tenant-small")
EVERYONE = "all"  # the one group of a level run: no tenant_id, no priority, as today


# --- plans ---------------------------------------------------------------------------------


def _calm(config: BenchConfig) -> Any:
    return replace(config.storm, churn_per_s=0, flips_per_s=0)


def capacity_spec(config: BenchConfig, host: str, port: int) -> list[GenSpec]:
    """A closed loop over the instant nodes: E0's throughput phase with E5's sizes."""
    whole = closed_loop(
        config,
        host,
        port,
        sessions=config.e5_capacity_sessions,
        max_concurrency=config.e5_max_concurrency,
        duration=config.e5_capacity_s,
    )
    return split_roles(whole)


def paced_spec(
    config: BenchConfig, host: str, port: int, *, groups: Sequence[SessionGroup]
) -> list[GenSpec]:
    """Every node in process 0; each group's sessions, and its rate with them, dealt over
    ``generators`` session processes."""
    nodes = GenSpec(
        host=host,
        port=port,
        index=0,
        nodes=tuple(topology(config.nodes, max_concurrency=config.e5_max_concurrency)),
        session_pairs=(),
        plan="paced",
        latency_median=0.0,
        latency_p99=0.0,
        seed=config.seed,
        duration=config.e5_phase_s,
        drain_timeout=config.e5_wait_s,
        storm=_calm(config),
        role="nodes",
        clients=config.e5_clients,
    )
    quiet = replace(config.storm, hz_calm=0.0, hz_storm=0.0, churn_per_s=0.0, flips_per_s=0.0)
    count = config.generators
    specs = [nodes]
    for i in range(count):
        share = tuple(
            replace(g, pairs=g.pairs[i::count], rate=g.rate * len(g.pairs[i::count]) / len(g.pairs))
            for g in groups
        )
        specs.append(
            replace(nodes, index=i + 1, nodes=(), storm=quiet, role="sessions", groups=share)
        )
    return specs


def split_sessions(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` sessions dealt in proportion to ``weights``, at least one each."""
    counts = [max(1, round(total * w / sum(weights))) for w in weights]
    counts[0] = max(1, counts[0] + total - sum(counts))
    return counts


def groups_for(
    config: BenchConfig, offers: Sequence[tuple[str, float]], *, kind: str
) -> tuple[SessionGroup, ...]:
    """One group per ``(name, rate)``, sessions in proportion to the rates (so every session
    speaks at the same pace); ``kind``: "tenant", "priority" or "plain"."""
    counts = split_sessions(config.e5_sessions, [max(rate, 1e-9) for _, rate in offers])
    pairs = tuple(session_pairs(sum(counts), seed=config.seed))
    out: list[SessionGroup] = []
    at = 0
    for (name, rate), n in zip(offers, counts, strict=True):
        out.append(
            SessionGroup(
                name,
                pairs[at : at + n],
                rate,
                tenant_id=name if kind == "tenant" else None,
                priority=name if kind == "priority" else None,
            )
        )
        at += n
    return tuple(out)


# --- figures -------------------------------------------------------------------------------


def merge(tallies: Iterable[Tally]) -> Tally:
    """One tally of several processes' (arrays concatenated, counts added)."""
    total = Tally()
    for t in tallies:
        total.ext.extend(t.ext)
        total.rtt.extend(t.rtt)
        total.failed.extend(t.failed)
        for mine, theirs in ((total.error_rtt, t.error_rtt), (total.reject_rtt, t.reject_rtt)):
            for code, pairs in theirs.items():
                mine.setdefault(code, array("d")).extend(pairs)
        total.errors.update(t.errors)
        total.rejected.update(t.rejected)
        total.first_rtt.extend(t.first_rtt)
        for name in _COUNTS:
            setattr(total, name, getattr(total, name) + getattr(t, name))
    return total


# The tally's plain counts, added up across processes by ``merge``.
_COUNTS = (
    "sent",
    "results",
    "out_of_order",
    "assigns",
    "dropped_unanswered",
    "unsent",
    "stray",
    "asked",
    "deferred",
    "resends",
    "refusals",
    "given_up",
    "sent_while_held",
)


def _latencies(pairs: Iterable[array[float]]) -> stats.Summary | None:
    values: list[float] = []
    for p in pairs:
        values += p[1::2]
    return stats.summary_ms(values)


def figures(t: Tally, start: float, end: float, *, offered: float) -> Row:
    """What one group (or a whole run) offered, got and waited, over the load ``[start, end)``.

    Goodput counts the results that arrived while the load was on; results that came in the
    wait after it are ``late_results``.  Sessions close right after the wait, so what they
    still owed then is ``unanswered``."""
    seconds = max(end - start, 1e-9)
    shed = t.errors.get(SHED_CODE, 0) + t.rejected.get(SHED_CODE, 0)
    on_time = stats.completions_between(t.rtt, start, end)
    accepted = [t.rtt, *(pairs for code, pairs in t.error_rtt.items() if code != SHED_CODE)]
    refused = [t.error_rtt.get(SHED_CODE, array("d")), t.reject_rtt.get(SHED_CODE, array("d"))]
    return {
        "offered_per_s": round(offered, 1),
        "sent": t.sent,
        "sent_per_s": round(t.sent / seconds, 1),
        "unsent": t.unsent,
        "results": t.results,
        "goodput_per_s": round(on_time / seconds, 1),
        "late_results": t.results - on_time,
        "accepted_latency_ms": _latencies(accepted),
        "result_latency_ms": _latencies([t.rtt]),
        "overloaded_latency_ms": _latencies(refused),
        "overloaded": shed,
        "shed_fraction": round(shed / t.sent, 4) if t.sent else None,
        "errors": dict(t.errors),
        "rejected": dict(t.rejected),
        "error_p99_ms": {
            code: (_latencies([pairs]) or {}).get("p99")
            for code, pairs in sorted({**t.reject_rtt, **t.error_rtt}.items())
            if code != SHED_CODE
        },
        "unanswered": t.dropped_unanswered,
        "out_of_order": t.out_of_order,
        "stray_answers": t.stray,
        **(_backoff_figures(t) if t.asked else {}),
    }


def _backoff_figures(t: Tally) -> Row:
    """Sessions that followed the hint: what the plan asked for against what went on the
    wire, and the wait counted from the first ask as well as from the last send."""
    return {
        "asked": t.asked,
        "deferred": t.deferred,
        "on_wire": t.sent + t.resends,
        "resends": t.resends,
        "refusals": t.refusals,
        "given_up": t.given_up,
        "sent_while_held": t.sent_while_held,
        "accepted_first_latency_ms": _latencies([t.first_rtt]),
    }


def load_window(results: Sequence[GenResult]) -> tuple[float, float]:
    """From the first session process's start of its load to the last one's end."""
    loads = [(s, e) for r in results for name, s, e in r.phases if name == "load"]
    if not loads:
        raise BenchError("no session process ran its load (did every session fail to connect?)")
    return min(s for s, _ in loads), max(e for _, e in loads)


def shed_by_reason(metrics_text: str) -> dict[str, float] | None:
    """``switchboard_shed_total`` by ``reason`` (None while the scheduler has no such series)."""
    found: dict[str, float] = {}
    for sample in metric_samples(metrics_text):
        if sample.name == "switchboard_shed_total":
            reason = sample.labels.get("reason", "")
            found[reason] = found.get(reason, 0.0) + float(sample.value)
    return found or None


# --- runs ----------------------------------------------------------------------------------


class E5:
    """The E5 runs of one benchmark, on the :class:`~switchboard.bench.runs.Bench` given."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        for store in self.config.stores:
            capacity = self.config.e5_capacity
            source = "given"
            if capacity is None:
                capacity, source = self.capacity(store), "measured"
            for level in self.config.e5_levels:
                everyone = (SessionGroup(EVERYONE, (), level * capacity),)
                self.paced(store, "level", everyone, capacity, source, level=level)
            self.tenants(store, capacity, source)
            total = self.config.e5_priority_load * capacity
            offers = [(name, total / 2) for name in PRIORITY_CLASSES]
            classes = groups_for(self.config, offers, kind="priority")
            self.paced(store, "priority", classes, capacity, source)

    def _rows(self) -> list[Row]:
        return self.bench.result.rows

    def capacity(self, store: str) -> float:
        c = self.config
        flags = self.bench._flags("snapshot", store, max_concurrency=c.e5_max_concurrency)
        outcome, samples, _ = self.bench._load(
            f"E5 capacity {store}", flags, functools.partial(capacity_spec, c), c.e5_capacity_s
        )
        start = min(r.started for r in outcome.results) + c.warmup
        end = min(max(r.ended for r in outcome.results), start - c.warmup + c.e5_capacity_s)
        seen = merge(r.tally for r in outcome.results)  # nodes' and sessions' processes
        done = stats.completions_between(seen.rtt, start, end)
        if end <= start or done == 0:
            raise BenchError(f"E5 capacity on {store}: no job completed in the measured window")
        capacity = round(done / (end - start), 1)
        row = self.bench._row(
            "E5", "snapshot", store, c.e5_capacity_sessions, c.storm.hz_calm, outcome
        )
        row.update(
            phase="capacity",
            jobs_per_s=capacity,
            capacity_per_s=capacity,
            concurrency=c.e5_capacity_sessions * c.hot_max_window,
            latency_ms=stats.summary_ms(stats.values_between(samples, start, end)),
            external_latency_ms=stats.summary_ms(stats.values_between(seen.ext, start, end)),
        )
        self._rows().append(row)
        return capacity

    def paced(
        self,
        store: str,
        phase: str,
        groups: tuple[SessionGroup, ...],
        capacity: float,
        source: str,
        *,
        level: float | None = None,
        label: str | None = None,
    ) -> Row:
        c = self.config
        if len(groups) == 1 and not groups[0].pairs:  # everyone: every session, one group
            groups = (replace(groups[0], pairs=tuple(session_pairs(c.e5_sessions, seed=c.seed))),)
        flags = self.bench._flags(
            "snapshot", store, max_concurrency=c.e5_max_concurrency, shedding=True
        )
        offered = sum(g.rate for g in groups)
        name = label or (f"{level:g}×C" if level is not None else phase)
        outcome, samples, metrics = self.bench._load(
            f"E5 {name} {store} ({offered:,.0f}/s)",
            flags,
            functools.partial(paced_spec, c, groups=groups),
            c.e5_phase_s + c.e5_wait_s,
        )
        row = self._paced_row(store, phase, groups, outcome, samples, metrics)
        row.update(
            capacity_per_s=capacity,
            capacity_source=source,
            level=level if level is not None else round(offered / capacity, 3),
        )
        self._rows().append(row)
        return row

    def _paced_row(
        self,
        store: str,
        phase: str,
        groups: tuple[SessionGroup, ...],
        outcome: LoadOutcome,
        samples: Any,
        metrics: str,
    ) -> Row:
        c = self.config
        start, end = load_window(outcome.results)
        by_group = {
            g.name: merge(r.groups[g.name] for r in outcome.results if g.name in r.groups)
            for g in groups
        }
        whole = merge(by_group.values())
        sessions = sum(len(g.pairs) for g in groups)
        row = self.bench._row("E5", "snapshot", store, sessions, c.storm.hz_calm, outcome)
        row.update(figures(whole, start, end, offered=sum(g.rate for g in groups)))
        ext = merge(r.tally for r in outcome.results).ext
        row.update(
            phase=phase,
            jobs_per_s=row["goodput_per_s"],
            latency_ms=stats.summary_ms(stats.values_between(samples, start, end)),
            external_latency_ms=stats.summary_ms(stats.values_between(ext, start, end)),
            measured_s=round(end - start, 2),
            wait_s=c.e5_wait_s,
            shed_by_reason=shed_by_reason(metrics),
            metrics_read=bool(metrics),  # False: /metrics did not answer after the run
            clients=c.e5_clients,
        )
        if len(groups) > 1 or groups[0].name != EVERYONE:
            row["groups"] = {
                g.name: {
                    "sessions": len(g.pairs),
                    "tenant_id": g.tenant_id,
                    "priority": g.priority,
                    **figures(by_group[g.name], start, end, offered=g.rate),
                }
                for g in groups
            }
        return row

    def tenants(self, store: str, capacity: float, source: str) -> None:
        c = self.config
        total = c.e5_tenant_load * capacity
        big, small = TENANTS
        offers = [(big, total * c.e5_tenant_ratio / (c.e5_tenant_ratio + 1)), (small, 0.0)]
        offers[1] = (small, total - offers[0][1])
        groups = groups_for(c, offers, kind="tenant")
        solo: dict[str, Row] = {}
        for group in groups:
            solo[group.name] = self.paced(
                store, "tenant_solo", (group,), capacity, source, label=f"{group.name} alone"
            )
            solo[group.name]["tenant"] = group.name
        row = self.paced(store, "tenants", groups, capacity, source)
        for name, _ in offers:
            entry = row["groups"][name]
            entry["solo_accepted_latency_ms"] = solo[name]["accepted_latency_ms"]
            entry["p99_vs_solo"] = _ratio(
                (entry["accepted_latency_ms"] or {}).get("p99"),
                (solo[name]["accepted_latency_ms"] or {}).get("p99"),
            )
        tenant_fairness(row, capacity)


def tenant_fairness(row: Row, capacity: float) -> None:
    """Each tenant's fair share and Jain's index, from the run's offers and goodputs.

    The capacity shared out is C, or what the run served when that was more (C was measured
    low: the machine is shared), so that serving more than C is never counted as unfair.
    ``jain_index_of_served`` shares out what the run served instead: fairness alone, with any
    throughput lost to overload taken out."""
    groups = row["groups"]
    offers = {name: float(g["offered_per_s"]) for name, g in groups.items()}
    served = {name: float(g["goodput_per_s"]) for name, g in groups.items()}
    shared = max(capacity, sum(served.values()))
    fair = fairness.max_min_fair(shared, offers)
    for name, share in fair.items():
        groups[name]["fair_share_per_s"] = round(share, 1)
    row["weights"] = dict.fromkeys(offers, 1.0)
    row["fair_capacity_per_s"] = round(shared, 1)
    row["jain_index"] = _round(fairness.served_vs_fair(served, fair))
    row["jain_index_of_served"] = _round(
        fairness.served_vs_fair(served, fairness.max_min_fair(sum(served.values()), offers))
    )


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or not bottom:
        return None
    return round(top / bottom, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def error_codes(row: Row) -> Counter[str]:
    """Every error code a row's sessions received, refusals included."""
    codes: Counter[str] = Counter(row.get("errors") or {})
    codes.update(row.get("rejected") or {})
    return codes
