"""Offer more utterances than one scheduler places, from separate processes, and count answers.

Issue 14's reproduction: ``--sessions`` sessions and ``--nodes`` nodes that answer at once with
slots to spare (E0's topology), an open load of ``--rate`` utterances/s in all for
``--seconds``, then ``--linger`` seconds to see what is still unanswered.  Prints one line per
store: results, errors by code, refusals by code, unanswered, dispatched p50/p99 (the
scheduler's own latency tap) and the outside p50/p99 of results.

    .venv/bin/python benchmarks/saturation/drive.py --stores redis,memory --rate 8000
    .venv/bin/python benchmarks/saturation/drive.py --stores redis --profile   # cProfile

``--profile`` runs the scheduler under ``cProfile`` (py-spy is not in the lock) and prints its
top functions by cumulative and own time.  Before the scheduler stops, its ``/metrics`` are
read: reservations by outcome, answers and refusals by code, sheds by reason, and how many
jobs went through the waiting line.  Run it with another checkout's interpreter to measure that
checkout (``/path/to/checkout/.venv/bin/python benchmarks/saturation/drive.py``).
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from switchboard.bench.loadgen import GenSpec, merged_samples
from switchboard.bench.orchestrate import NoProgress, RedisProc, ServerProc, run_load
from switchboard.bench.scenarios import session_pairs, split_roles, topology
from switchboard.bench.storm import StormSpec


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(store: str, args: argparse.Namespace, workdir: Path) -> None:
    flags: dict[str, object] = {
        "pending-timeout": args.pending_timeout,
        "max-pending-per-session": 256,
        "max-frames-per-second": 0,
        "log-level": "warning",
        "heartbeat-interval": 30,
        "max-connections-per-address": 0,  # every peer is 127.0.0.1
    }
    flags.update(dict(item.split("=", 1) for item in args.flag))
    redis = None
    if store == "redis":
        redis = RedisProc(workdir)
        redis.start()
        flags["redis-url"] = redis.url
    server = ServerProc(flags, workdir, f"sat-{store}")
    profile = workdir / f"sat-{store}.prof"
    if args.profile:
        server.head = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", server.head[2]]
    server.start()
    try:
        whole = GenSpec(
            host="127.0.0.1",
            port=server.port,
            index=0,
            nodes=tuple(topology(args.nodes, max_concurrency=64)),
            session_pairs=tuple(session_pairs(args.sessions, seed=1)),
            plan="open",
            latency_median=0.0,
            latency_p99=0.0,
            rate=args.rate / args.sessions,
            phases=(("calm", args.seconds),),
            storm=StormSpec(hz_calm=1.0, hz_storm=1.0, churn_per_s=0.0, flips_per_s=0.0),
            drain_timeout=args.linger,
        )
        specs = [replace(s) for s in split_roles(whole)]
        outcome = run_load(server, specs, progress=NoProgress())
        metrics = server.get("/metrics")
    finally:
        samples = server.stop()
        if redis is not None:
            redis.stop()
    results = outcome.results
    errors: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    sent = answered = unanswered = 0
    for r in results:
        errors.update(r.tally.errors)
        rejected.update(r.tally.rejected)
        sent += r.tally.sent
        answered += r.tally.results
        unanswered += r.unanswered
    rtt = list(merged_samples(results, "rtt")[1::2])
    dispatched = list(samples[1::2])
    d50, d99 = _pct(dispatched, 0.5) * 1e3, _pct(dispatched, 0.99) * 1e3
    print(
        f"{store}: sent {sent}, results {answered}, errors {dict(errors)}, "
        f"refused {dict(rejected)}, unanswered {args.linger:g} s after {unanswered}; "
        f"dispatched p50/p99 {d50:.1f}/{d99:.1f} ms; "
        f"results outside p50/p99 {_pct(rtt, 0.5) * 1e3:.1f}/{_pct(rtt, 0.99) * 1e3:.1f} ms; "
        f"server cpu {outcome.server_cpu_s:.1f} s over {outcome.wall_s:.1f} s",
        flush=True,
    )
    wanted = (
        "switchboard_reservations_total",
        "switchboard_answers_total",
        "switchboard_rejections_total",
        "switchboard_shed_total",
        "switchboard_queue_wait_seconds_count",
        "switchboard_queue_wait_seconds_sum",
    )
    for line in metrics.splitlines():
        if line.startswith(wanted) and not line.endswith(" 0.0"):
            print("   ", line)
    if args.profile and profile.exists():
        stats = pstats.Stats(str(profile))
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="redis,memory")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=8000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--linger", type=float, default=3.0)
    parser.add_argument("--pending-timeout", type=float, default=5.0)
    parser.add_argument("--flag", action="append", default=[], help="extra serve flag k=v")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--profile", action="store_true", help="the scheduler under cProfile")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="saturation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for store in args.stores.split(","):
        run(store, args, workdir)


if __name__ == "__main__":
    main()
