"""Percentiles of each hop of a reservation's path, from ``sitecustomize.py``'s files.

.venv/bin/python benchmarks/micro/inside/breakdown.py /tmp/inside/out.*
"""

from __future__ import annotations

import sys
from array import array

HOPS = {
    "read → reservation call": (0, 1),
    "call → reply's bytes read": (1, 4),
    "bytes read → callback": (4, 2),
    "callback → job_assign written": (2, 3),
    "inside (read → written)": (0, 3),
}


def main(paths: list[str]) -> None:
    for path in paths:
        values = array("d")
        with open(path, "rb") as f:
            values.frombytes(f.read())
        rows = [values[i : i + 5] for i in range(0, len(values) - 4, 5)]
        if not rows:
            continue
        print(f"{path}: {len(rows)} jobs")
        for name, (a, b) in HOPS.items():
            got = sorted(r[b] - r[a] for r in rows)
            p50, p90, p99 = (got[int(q * (len(got) - 1))] * 1e6 for q in (0.5, 0.9, 0.99))
            print(f"  {name:30} p50 {p50:8.1f}  p90 {p90:8.1f}  p99 {p99:9.1f} µs")


if __name__ == "__main__":
    main(sys.argv[1:])
