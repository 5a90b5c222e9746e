"""The metrics collector: per-job counters kept as plain attributes and exported at scrape time
(issue 9), with the series names and label sets the dashboard and benchmarks read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from switchboard.metrics import DispatchStats, FastHistogram, Metrics
from switchboard.tools.prom import samples
from tests.unit.fakes import Rig

BOUNDS = (0.001, 0.01, 0.1)
VALUES = (0.0, 0.0005, 0.001, 0.005, 0.01, 0.0100001, 0.05, 0.1, 5.0)


def _families(metrics: Metrics) -> dict[str, str]:
    """Family name → type, as a scraper sees them."""
    text = metrics.render().decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    for sample in samples(metrics.render().decode()):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


def test_fast_histogram_exports_what_prometheus_client_would() -> None:
    """Same values, same buckets: the same _bucket, _count and _sum samples as
    prometheus_client's own Histogram (a value equal to a bound falls in that bucket)."""
    registry = CollectorRegistry()
    reference = Histogram("h_seconds", "h", buckets=BOUNDS, registry=registry)
    fast = FastHistogram(BOUNDS)
    for value in VALUES:
        reference.observe(value)
        fast.observe(value)

    def wanted(text: str) -> list[tuple[str, list[tuple[str, str]], float]]:
        return sorted(
            (s.name, sorted(s.labels.items()), float(s.value))
            for s in samples(text)
            if not s.name.endswith("_created")
        )

    family = HistogramMetricFamily("h_seconds", "h")
    fast.add_to(family)
    mine = CollectorRegistry()
    mine.register(_Fixed([family]))
    assert wanted(generate_latest(mine).decode()) == wanted(generate_latest(registry).decode())
    assert fast.count == len(VALUES)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def test_existing_series_keep_their_names_types_and_labels() -> None:
    """The series the dashboard, benches and alerts read by name are all still there."""
    metrics = Metrics()
    families = _families(metrics)
    for name, kind in {
        "switchboard_dispatch_latency_seconds": "histogram",
        "switchboard_queue_wait_seconds": "histogram",
        "switchboard_reservations": "counter",
        "switchboard_failovers": "counter",
        "switchboard_answers": "counter",
        "switchboard_management_lock_hold_seconds": "histogram",
        "switchboard_snapshot_build_seconds": "histogram",
        "switchboard_snapshot_rebuilds": "counter",
        "switchboard_nodes": "gauge",
        "switchboard_sessions": "gauge",
        "switchboard_utterance_latency_seconds": "histogram",
        "switchboard_node_job_seconds": "summary",
        "switchboard_job_time_seconds": "histogram",
        "switchboard_rejections": "counter",
        "switchboard_build_info": "gauge",  # an Info is a gauge of 1 on the page
        "process_cpu_seconds": "counter",
    }.items():
        assert families.get(name) == kind, name
    for outcome in ("reserved", "full", "store_down"):
        assert _value(metrics, "switchboard_reservations_total", outcome=outcome) == 0


def test_stats_are_exported_at_scrape_time() -> None:
    """Plain attribute updates show up on the next scrape, under their labels."""
    metrics = Metrics()
    stats: DispatchStats = metrics.dispatch
    stats.reserved += 2
    stats.full += 1
    stats.failover("timeout")
    stats.rejected("TOO_MANY_PENDING")
    stats.rejected("TOO_MANY_PENDING")
    stats.answered("result", 0.0)
    stats.answered("JOB_TIMEOUT", 0.0)
    stats.node_job("node-a", 0.2)
    stats.queue_wait.observe(0.3)
    assert _value(metrics, "switchboard_reservations_total", outcome="reserved") == 2
    assert _value(metrics, "switchboard_reservations_total", outcome="full") == 1
    assert _value(metrics, "switchboard_failovers_total", reason="timeout") == 1
    assert _value(metrics, "switchboard_rejections_total", code="TOO_MANY_PENDING") == 2
    assert _value(metrics, "switchboard_answers_total", kind="result") == 1
    assert _value(metrics, "switchboard_answers_total", kind="JOB_TIMEOUT") == 1
    for outcome in ("result", "error"):
        count = "switchboard_utterance_latency_seconds_count"
        assert _value(metrics, count, outcome=outcome) == 1
    assert _value(metrics, "switchboard_node_job_seconds_count", node_id="node-a") == 1
    assert _value(metrics, "switchboard_node_job_seconds_sum", node_id="node-a") == 0.2
    assert _value(metrics, "switchboard_job_time_seconds_count") == 1
    assert _value(metrics, "switchboard_queue_wait_seconds_count") == 1


def test_a_node_that_leaves_takes_its_series_with_it() -> None:
    """The node_id label set is bounded by the nodes connected now."""
    metrics = Metrics()
    for n in range(50):
        metrics.dispatch.node_job(f"node-{n}", 0.1)
        metrics.dispatch.node_left(f"node-{n}")
    metrics.dispatch.node_job("stays", 0.1)
    nodes = {
        s.labels["node_id"]
        for s in samples(metrics.render().decode())
        if s.name.startswith("switchboard_node_job_seconds")
    }
    assert nodes == {"stays"}


def test_build_info_names_version_and_python() -> None:
    metrics = Metrics()
    text = metrics.render().decode()
    (build,) = [s for s in samples(text) if s.name == "switchboard_build_info"]
    assert build.labels["version"] and build.labels["python"].count(".") == 2


async def test_dispatch_updates_the_stats_through_a_job_and_a_node_leaving() -> None:
    """The real core and driver: an answered job counts one reservation, one dispatch, one
    result with its latency and the node's job time; the node's series goes when it leaves."""
    rig = Rig()
    await rig.start()
    node = await rig.add_node("a", [("zh", "en")], 1)
    session = rig.open_session("s")
    await rig.utter(session, 0)
    assign = await asyncio.wait_for(node.assigned.get(), 1)
    assert rig.answer(node, assign)
    metrics = rig.metrics
    assert _value(metrics, "switchboard_dispatch_latency_seconds_count") == 1
    assert _value(metrics, "switchboard_reservations_total", outcome="reserved") == 1
    assert _value(metrics, "switchboard_utterance_latency_seconds_count", outcome="result") == 1
    assert _value(metrics, "switchboard_node_job_seconds_count", node_id="a") == 1
    rig.dispatcher.detach_node("a")
    assert _value(metrics, "switchboard_node_job_seconds_count", node_id="a") is None
    await rig.stop()


async def test_job_steps_make_no_log_record_at_the_default_level() -> None:
    """Off (INFO), the per-job step lines cost no record at all: not one LogRecord is made
    for ``switchboard.jobs`` while a job runs from acceptance to its answer."""
    made: list[str] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        made.append(record.name)
        return record

    jobs = logging.getLogger("switchboard.jobs")
    level = jobs.level
    jobs.setLevel(logging.INFO)
    logging.setLogRecordFactory(counting)
    try:
        rig = Rig()
        await rig.start()
        node = await rig.add_node("a", [("zh", "en")], 1)
        session = rig.open_session("s")
        await rig.utter(session, 0)
        assert rig.answer(node, await asyncio.wait_for(node.assigned.get(), 1))
        await rig.stop()
    finally:
        logging.setLogRecordFactory(factory)
        jobs.setLevel(level)
    assert "switchboard.jobs" not in made


def test_per_node_families_parse_as_prometheus_clients_own() -> None:
    """``NodeFamily`` writes its text by hand (a scrape at 10,000 nodes must not hold the loop
    for 100 ms): the same families, parsed, give the same samples as ``generate_latest``,
    awkward node ids and special values included."""
    from prometheus_client.metrics_core import GaugeMetricFamily, SummaryMetricFamily

    from switchboard.metrics import NodeFamily

    ids = ["node-a", 'quo"te', "back\\slash", "new\nline", "ünï"]
    values = [0, 3, 0.25, 1e-7, float("inf"), float("-inf")]
    jobs = {node_id: [values[i], values[-i - 1] * 2] for i, node_id in enumerate(ids)}
    gpu = [(node_id, (values[i + 1],)) for i, node_id in enumerate(ids)]
    gpu.append(("nan", (float("nan"),)))
    doc = 'help with a \\ and a "quote"\nand a new line'
    mine = NodeFamily("t_job_seconds", doc, "summary", lambda: list(jobs.items())).render()
    mine += NodeFamily("t_gpu_percent", doc, "gauge", lambda: gpu).render()

    summary = SummaryMetricFamily("t_job_seconds", doc, labels=["node_id"])
    for node_id, (count, total) in jobs.items():
        summary.add_metric([node_id], count, total)  # type: ignore[arg-type]  # a float count
    gauge = GaugeMetricFamily("t_gpu_percent", doc, labels=["node_id"])
    for node_id, (value,) in gpu:
        gauge.add_metric([node_id], value)
    registry = CollectorRegistry()
    registry.register(_Fixed([summary, gauge]))
    theirs = generate_latest(registry).decode()

    def parsed(text: str) -> list[tuple[str, str, str, list[tuple[str, str, str]]]]:
        return [
            (
                f.name,
                f.type,
                f.documentation,
                [(s.name, repr(sorted(s.labels.items())), repr(s.value)) for s in f.samples],
            )
            for f in text_string_to_metric_families(text)
        ]

    assert parsed(mine) == parsed(theirs)
    assert len(parsed(mine)[0][3]) == 2 * len(ids) and len(parsed(mine)[1][3]) == len(gpu)


async def test_a_scrape_gives_the_loop_back_between_slices_of_nodes() -> None:
    """``/metrics`` renders per-node families in slices: the page is the same as ``render``'s,
    and other work on the loop runs before a scrape of many nodes is through."""
    metrics = Metrics()
    for i in range(1_200):
        metrics.dispatch.node_jobs[f"node-{i:05d}"] = [i, i / 8]
    order: list[str] = []

    async def scrape() -> bytes:
        page = await metrics.render_in_slices()
        order.append("scrape")
        return page

    async def dispatch() -> None:
        order.append("dispatch")

    page, _ = await asyncio.gather(scrape(), dispatch())
    assert order == ["dispatch", "scrape"]
    family = "switchboard_node_job_seconds"
    head = b"# HELP " + family.encode()
    again = metrics.render()
    assert page[page.index(head) :] == again[again.index(head) :]  # per-node part, written last
    assert page.decode().count(family + "_count{") == 1_200
