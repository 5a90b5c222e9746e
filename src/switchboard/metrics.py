"""Prometheus metrics, one registry per scheduler (so tests can run several in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Dispatch latencies are sub-millisecond: buckets from 25 µs up.
_FAST = (25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.25, 1.0)
_WAIT = (1e-3, 5e-3, 25e-3, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.dispatch_latency = Histogram(
            "switchboard_dispatch_latency_seconds",
            "Utterance read off the session socket to job_assign written to the node",
            buckets=_FAST,
            registry=r,
        )
        self.lock_hold = Histogram(
            "switchboard_management_lock_hold_seconds",
            "Time the management lock was held per change",
            buckets=_FAST,
            registry=r,
        )
        self.snapshot_rebuilds = Counter(
            "switchboard_snapshot_rebuilds", "Runtime snapshots published", registry=r
        )
        self.snapshot_build = Histogram(
            "switchboard_snapshot_build_seconds",
            "Time to build one snapshot (outside the lock)",
            buckets=_FAST,
            registry=r,
        )
        self.reservations = Counter(
            "switchboard_reservations",
            "Reservation attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "switchboard_queue_wait_seconds",
            "Time utterances waited for a free slot",
            buckets=_WAIT,
            registry=r,
        )
        self.failovers = Counter(
            "switchboard_failovers",
            "Jobs retried on another attempt, by reason",
            ["reason"],
            registry=r,
        )
        self.answers = Counter(
            "switchboard_answers",
            "Answers sent to clients, by kind (result or error code)",
            ["kind"],
            registry=r,
        )
        # The children every job touches, looked up once: ``labels()`` costs more than ``inc()``.
        self.reserved = self.reservations.labels("reserved")
        self.results = self.answers.labels("result")
        self.nodes = Gauge("switchboard_nodes", "Connected nodes", registry=r)
        self.sessions = Gauge("switchboard_sessions", "Open sessions", registry=r)
        self.jobs_in_flight = Gauge(
            "switchboard_jobs_in_flight", "Accepted utterances not yet answered", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
