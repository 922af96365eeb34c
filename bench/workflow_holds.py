"""Workflow holds benchmark: what held work (depends_on, array.parallel) costs the control loop.

In-process, fake backend, manual clock, SQLite. Builds a 2-node pool and one running parent job,
then `--held` dependents of it (one submission each, held: WaitingForDependency) and one array of
`--tasks` tasks with parallel 2 (held: ArrayParallelLimit), and measures:

1. an idle step (median of 20) with the held rows in the store, and the same without any
   (a fresh store): held work must not add per-cycle work;
2. the reads of parents' rows (`corral.store.groups.states_of`) over those idle steps: 0;
3. the step in which the parent ends and releases every dependent (one read of its rows);
4. the step in which an array task ends and the next is released.

Prints one JSON line.   .venv/bin/python bench/workflow_holds.py [--held 5000] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from corral.backends.fake import FakeBackend
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock, Submissions
from corral.core.model import CapacityKind, Node, Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import groups as G
from corral.store import pool as P
from corral.store.database import sqlite_url


def _plane(tmp: Path) -> tuple[Store, FakeBackend, ControlLoop, ManualClock, Submissions]:
    store = Store(sqlite_url(tmp / "corral.db"))
    store.upgrade()
    nodes = [Node(f"n{i}", "local", "H100", 8, 81920, 64_000, 262_144,
                  capacity_kind=CapacityKind.OWNED) for i in range(2)]
    with store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], nodes)
        P.upsert_queue(c, Queue("q", quota_gpus=16))
    backend = FakeBackend(nodes, check_capacity=True)
    clock = ManualClock()
    loop = ControlLoop(store, backend, clock=clock, settings=ControlSettings(),
                       leadership=Leadership(store))
    return store, backend, loop, clock, Submissions(store)


def _spec(**fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": "w", "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["run"], **fields})


def _idle(loop: ControlLoop, clock: ManualClock, n: int = 20) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        loop.step()
        times.append(time.perf_counter() - started)
        clock.advance(1)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--held", type=int, default=5000)
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    reads: list[int] = []
    real = G.states_of
    G.states_of = lambda conn, keys: reads.append(1) or real(conn, keys)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        _, _, bare, bare_clock, _ = _plane(Path(a))
        bare.step()
        idle_without = _idle(bare, bare_clock)
        _store, backend, loop, clock, subs = _plane(Path(b))
        parent = subs.submit(_spec(name="parent"), "ann", clock.now())[0].id
        loop.step()
        for _ in range(args.held):
            subs.submit(_spec(name="child", depends_on=[{"id": parent}]), "ann", clock.now())
        tasks = subs.submit(_spec(name="sweep", array={"range": f"0-{args.tasks - 1}",
                                                       "parallel": 2}), "ann", clock.now())
        started = time.perf_counter()
        loop.step()  # first sight of every held row: each decided once
        first_sight = time.perf_counter() - started
        reads.clear()
        idle_with = _idle(loop, clock)
        idle_reads = len(reads)
        backend.finish(tasks[0].id)
        started = time.perf_counter()
        loop.step()
        array_release = time.perf_counter() - started
        backend.finish(parent)
        reads.clear()
        started = time.perf_counter()
        report = loop.step()
        release_all = time.perf_counter() - started
        print(json.dumps({
            "held_dependents": args.held, "array_tasks": args.tasks,
            "idle_step_s_without_holds": round(idle_without, 4),
            "idle_step_s_with_holds": round(idle_with, 4),
            "parent_reads_over_20_idle_steps": idle_reads,
            "first_sight_step_s": round(first_sight, 3),
            "step_s_array_task_ends_next_released": round(array_release, 4),
            "step_s_parent_ends_all_released": round(release_all, 3),
            "parent_reads_in_that_step": len(reads),
            "that_step_stages_s": {k: round(v, 3) for k, v in report.stages.items()}}))


if __name__ == "__main__":
    main()
