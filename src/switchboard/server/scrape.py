"""Series read from the live scheduler when ``/metrics`` is scraped (docs/metrics.md).

Nothing here is updated as things happen: each scrape asks the management registry and the
dispatcher for their state now, so a node that has left simply is not in the next scrape
(its ``node_id`` label goes with it), and no hot path pays for these series.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.dispatch.overload import Overload
from switchboard.management.nodes import NodeState
from switchboard.metrics import NodeFamily
from switchboard.runtime.values import NodeStatus, Pair


class ClusterCollector(Collector):
    def __init__(
        self,
        *,
        nodes: Callable[[], list[NodeState]],
        in_flight: Callable[[], int],
        store_up: Callable[[], bool],
    ) -> None:
        self._nodes = nodes
        self._in_flight = in_flight
        self._store_up = store_up

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "switchboard_jobs_in_flight",
            "Accepted utterances not yet answered",
            value=self._in_flight(),
        )
        yield GaugeMetricFamily(
            "switchboard_store_up",
            "1 while the reservation store answers, 0 while it cannot be reached",
            value=1 if self._store_up() else 0,
        )
        nodes = self._nodes()
        by_status = GaugeMetricFamily(
            "switchboard_nodes_by_status", "Connected nodes by status", labels=["status"]
        )
        counts = Counter(node.status for node in nodes)
        for status in NodeStatus:
            if status is not NodeStatus.OFFLINE:  # an offline node is no longer connected
                by_status.add_metric([status.value], counts[status])
        yield by_status
        yield _pairs(nodes)


def gpu_family(nodes: Callable[[], list[NodeState]]) -> NodeFamily:
    """GPU use per node: a per-node family, written as text (``metrics.NodeFamily``)."""

    def rows() -> list[tuple[str, tuple[float]]]:
        return [
            (node.node_id, (node.usage.gpu_percent,))
            for node in nodes()
            if node.usage is not None and node.usage.gpu_percent is not None
        ]

    return NodeFamily(
        "switchboard_node_gpu_percent",
        "GPU use each node last reported in its heartbeat (absent: the node reports none)",
        "gauge",
        rows,
    )


def _pairs(nodes: list[NodeState]) -> GaugeMetricFamily:
    """Per language pair some connected node serves, how many of those nodes are ready: the
    alert for a pair with no ready node reads it (deploy/prometheus/alerts.yml)."""
    ready: dict[Pair, int] = {}
    for node in nodes:
        up = 1 if node.status is NodeStatus.READY else 0
        for pair in node.pairs:
            ready[pair] = ready.get(pair, 0) + up
    family = GaugeMetricFamily(
        "switchboard_pair_ready_nodes",
        "Ready nodes per language pair served by any connected node",
        labels=["src", "tgt"],
    )
    for (src, tgt), count in sorted(ready.items()):
        family.add_metric([src, tgt], count)
    return family


class OverloadCollector(Collector):
    """The saturation gauge's signals at scrape time (dispatch/overload.py), so an operator
    sees how close each is to its bound before anything is shed."""

    def __init__(self, overload: Overload) -> None:
        self._overload = overload

    def collect(self) -> Iterator[Metric]:
        overload = self._overload
        yield GaugeMetricFamily(
            "switchboard_loop_lag_seconds",
            "How late the event loop runs (the probe's moving average, or more while late now)",
            value=overload.loop_lag(time.monotonic()),
        )
        yield GaugeMetricFamily(
            "switchboard_store_calls_owed",
            "Reservation-store calls (reservations and releases) sent and not yet answered",
            value=overload.store_owed,
        )
        yield GaugeMetricFamily(
            "switchboard_overloaded",
            "1 while new utterances are refused OVERLOADED (as of the last check), else 0",
            value=0 if overload.state is None else 1,
        )
