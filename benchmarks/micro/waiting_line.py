"""Micro-benchmark: the waiting line's cost per job with tenants and classes, no core.

A backlog of B waiting jobs spread over T tenants (and C priority classes); each step adds one
job (round robin over the tenants' sessions) and serves one, as a saturated scheduler does on
every release: ``add``, the first job of ``in_order()``, ``remove(served=True)``.  Mean wall
time per step over N steps, the best of five runs (the machine is shared: the minimum is the
least disturbed).

    PYTHONPATH=. .venv/bin/python benchmarks/micro/waiting_line.py 20000
"""

import itertools
import sys
import time

from switchboard.dispatch.jobs import Job, Session
from switchboard.dispatch.tenants import Tenants
from switchboard.dispatch.waiting import WaitingLine
from switchboard.protocol.profile import SessionProfile
from switchboard.sessions.manager import SessionManager

SERVICES = frozenset({"asr", "nmt", "tts"})


class Peer:
    def push(self, frame):
        pass


def run(tenant_count, classes, backlog, steps):
    tenants = Tenants()
    profile = SessionProfile(trace_id="t", src_lang="en", tgt_lang="de")
    manager = SessionManager()
    sessions = [
        Session(
            f"s{n}", manager.create(f"s{n}"), Peer(), profile, tenants.join(f"t{n}"), n % classes
        )
        for n in range(tenant_count)
    ]
    seq = itertools.count()
    owners = itertools.cycle(sessions)

    def job():
        n = next(seq)
        return Job(
            job_id=str(n),
            session=next(owners),
            utterance_index=n,
            src_lang="en",
            tgt_lang="de",
            services=SERVICES,
            pipeline={},
            raw={},
            trace_id="t",
            received_at=0.0,
            seq=n,
            wait_since=n * 1e-4,
        )

    line = WaitingLine(aging=1.0)
    for _ in range(backlog):
        line.add(job())
    start = time.perf_counter()
    for _ in range(steps):
        line.add(job())
        first = next(line.in_order())
        line.remove(first, served=True)
    return (time.perf_counter() - start) / steps * 1e6


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print("| tenants | classes | backlog | µs per job (add + pick + serve) |")
    print("|---:|---:|---:|---:|")
    for tenant_count, classes, backlog in [
        (1, 1, 1000),
        (2, 1, 1000),
        (10, 1, 1000),
        (100, 1, 1000),
        (1000, 1, 5000),
        (2, 3, 1000),
    ]:
        cost = min(run(tenant_count, classes, backlog, steps) for _ in range(5))
        print(f"| {tenant_count} | {classes} | {backlog} | {cost:.2f} |")


if __name__ == "__main__":
    main()
