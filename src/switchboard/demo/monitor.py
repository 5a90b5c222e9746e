"""What the demo reads from the scheduler: ``/api/v1/nodes``, ``/api/v1/stats``, ``/metrics``."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from switchboard.demo.stats import QUANTILES
from switchboard.tools.prom import histogram_buckets, histogram_quantile

DISPATCH_HISTOGRAM = "switchboard_dispatch_latency_seconds"
SHED_COUNTER = re.compile(
    r'^switchboard_shed_total\{reason="(?P<reason>\w+)"\} (?P<n>[\d.e+]+)$', re.M
)


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    status: str
    reserved: int | None
    max_concurrency: int
    pairs: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of the scheduler (all fields empty when it could not be read)."""

    at: float = field(default_factory=time.monotonic)
    nodes: tuple[NodeRow, ...] = ()
    dispatched_total: int = 0
    jobs_in_flight: int = 0
    scheduling: tuple[float | None, ...] = (None,) * len(QUANTILES)
    shed: dict[str, int] = field(default_factory=dict)  # utterances refused OVERLOADED, by why
    ok: bool = False

    def rate_since(self, earlier: Reading | None) -> float | None:
        """Dispatches per second between two readings."""
        if earlier is None or not (self.ok and earlier.ok) or self.at <= earlier.at:
            return None
        return (self.dispatched_total - earlier.dispatched_total) / (self.at - earlier.at)


class Monitor:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Monitor:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def _get(self, path: str) -> Any:
        assert self._http is not None
        async with self._http.get(self.base_url + path) as resp:
            resp.raise_for_status()
            if path == "/metrics":
                return await resp.text()
            return await resp.json()

    async def read(self) -> Reading:
        try:
            nodes, stats, metrics = await asyncio.gather(
                self._get("/api/v1/nodes"), self._get("/api/v1/stats"), self._get("/metrics")
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return Reading()
        buckets = histogram_buckets(metrics, DISPATCH_HISTOGRAM)
        return Reading(
            nodes=tuple(_row(node) for node in nodes),
            dispatched_total=int(stats.get("dispatched_total", 0)),
            jobs_in_flight=int(stats.get("jobs_in_flight", 0)),
            scheduling=tuple(histogram_quantile(q, buckets) for q in QUANTILES),
            shed=shed_counts(metrics),
            ok=True,
        )

    async def store_up(self) -> bool:
        """``GET /health``: False while the scheduler cannot reach its reservation store."""
        assert self._http is not None
        try:
            async with self._http.get(self.base_url + "/health") as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def wait_nodes_ready(self, node_ids: set[str], *, limit: float) -> bool:
        """Poll until every node in ``node_ids`` is listed as ``ready``."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            reading = await self.read()
            ready = {row.node_id for row in reading.nodes if row.status == "ready"}
            if node_ids <= ready:
                return True
            await asyncio.sleep(0.1)
        return False


def shed_counts(metrics: str) -> dict[str, int]:
    """``switchboard_shed_total`` by reason, from a ``/metrics`` text."""
    return {m["reason"]: int(float(m["n"])) for m in SHED_COUNTER.finditer(metrics)}


def _row(node: dict[str, Any]) -> NodeRow:
    pairs = ", ".join(f"{p['src']}→{p['tgt']}" for p in node.get("language_pairs", []))
    reserved = node.get("reserved")
    return NodeRow(
        node_id=str(node.get("node_id")),
        status=str(node.get("status")),
        reserved=reserved if isinstance(reserved, int) else None,
        max_concurrency=int(node.get("max_concurrency", 0)),
        pairs=pairs,
    )
