"""What the health monitor's read of agents' GPU reports costs a control-loop step (issue 17).

The monitor reads the `GpuHealthReported` node events newer than the last one it saw, every step
(`corral.control.gpu_reports.ReportedVerdicts`). This fills a SQLite store with `--events` other
events (the history any long-lived pool has) and `--reports` GPU reports spread over `--nodes`,
then times: the first read (a new leader, from event 0) and a step's read with nothing new.

    .venv/bin/python bench/gpu_reports.py --events 200000 --reports 2000 --nodes 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from corral.control.gpu_reports import ReportedVerdicts, record_gpu_health
from corral.store import Store
from corral.store import workloads as W
from corral.store.database import sqlite_url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--reports", type=int, default=2_000)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(sqlite_url(Path(tmp) / "corral.db"))
        store.upgrade()
        with store.write() as c:
            W.append_events(c, [{"at": float(i), "kind": "transition", "reason": "Started",
                                 "workload_id": f"w{i}"} for i in range(args.events)])
            for i in range(args.reports):
                record_gpu_health(c, node_id=f"n{i % args.nodes}", at=float(i),
                                  health="unhealthy" if i % 7 == 0 else "healthy",
                                  reason="gpu 1: GPU has fallen off the bus", checked=True,
                                  checks=[{"name": "gpu-lost", "severity": "drain",
                                           "reason": "GPU has fallen off the bus", "device": 1}])
        reader = ReportedVerdicts()
        t0 = time.perf_counter()
        with store.read() as c:
            seen = reader.read(c)
        first = time.perf_counter() - t0
        with store.read() as c:  # the monitor reads inside the step's own read transaction
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                reader.read(c)
            step = (time.perf_counter() - t0) / args.repeat
        store.close()
    print(f"events {args.events} + reports {args.reports} over {len(seen)} nodes: "
          f"first read {first * 1000:.1f} ms, a step's read with nothing new "
          f"{step * 1000:.3f} ms (mean of {args.repeat}, inside an open read)")


if __name__ == "__main__":
    main()
