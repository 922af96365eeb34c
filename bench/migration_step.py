"""What the control loop's migration stage costs a step (issue 17, `corral.control.migration`).

N running, preemptible, checkpointing jobs with a `throughput` map and progress reports fill
K80 nodes; 32 V100s are held by non-preemptible work and 5 more V100 jobs wait (each forces a
plan). Prints, per size and with migration off and on: the median step, its schedule and
migration stages over 5 planning steps on the full pool, then the migration stage of the step
in which 8 V100s free (5 go to the waiting jobs, the rest may take a move) and how many moved.
Wall times on a fake backend and SQLite: compare off/on in one run, and say the load.

    .venv/bin/python bench/migration_step.py --jobs 200 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from corral.backends.fake import FakeBackend, FakeWorld
from corral.backends.progress import Progress
from corral.control import ControlLoop, ControlSettings, Leadership, ManualClock, Submissions
from corral.control.progress import ProgressRecorder
from corral.core.migration import MIGRATED, MigrationRule
from corral.core.model import CapacityKind, Node, Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url


def _spec(name: str, **fields: object) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"name": name, "queue": "q", "gpus": 1, "cpu": 0.1,
                                        "memory": 64, "command": ["run"], **fields})


def run(jobs: int, enabled: bool) -> str:
    store = Store(sqlite_url(Path(tempfile.mkdtemp()) / "corral.db"))
    store.upgrade()
    nodes = [Node(f"k{i}", "local", "K80", 8, 12_000, 64_000, 262_144,
                  capacity_kind=CapacityKind.OWNED) for i in range(jobs // 8)]
    nodes += [Node(f"v{i}", "local", "V100", 8, 16_000, 64_000, 262_144,
                   capacity_kind=CapacityKind.OWNED) for i in range(4)]
    with store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], nodes)
        P.upsert_queue(c, Queue("q", quota_gpus=1e6))
    clock, backend = ManualClock(), FakeBackend(nodes, world=FakeWorld())
    loop = ControlLoop(store, backend, clock=clock, leadership=Leadership(store, ttl_s=15),
                       settings=ControlSettings(stop_grace_s=5,
                                                migration=MigrationRule(enabled=enabled)))
    sub = Submissions(store)

    def step() -> dict[str, float]:
        report = loop.step()
        clock.advance(1)
        return {**report.stages, "step": report.duration_s}

    blockers = [sub.submit(_spec(f"b{i}", gpu_models=["V100"], preemptible=False), "a",
                           clock.now())[0].id for i in range(32)]
    step()
    ids = [sub.submit(_spec("x", throughput={"K80": 1.0, "V100": 3.0}, checkpoint_dir="/c"),
                      "a", clock.now())[0].id for _ in range(jobs)]
    for _ in range(3):
        step()
    with store.write() as c:
        ProgressRecorder(every_s=0).record(
            c, clock.now(), {(w, 0, 0): Progress(0, 1.0, 100_000) for w in ids}, node_id="k0")
    full = []
    for k in range(5):
        sub.submit(_spec(f"t{k}", gpu_models=["V100"], preemptible=False), "a", clock.now())
        full.append(step())
    for b in blockers[:8]:
        backend.finish(b)
    freed = step()
    with store.read() as c:
        moved = sum(1 for w in ids if (r := W.get_workload(c, w)) and r.stop_reason == MIGRATED)

    def ms(stage: str) -> float:
        return 1000 * statistics.median(s.get(stage, 0.0) for s in full)

    return (f"jobs={jobs} migration={'on' if enabled else 'off'} step={ms('step'):.1f}ms "
            f"schedule={ms('schedule'):.1f}ms migration_stage={ms('migration'):.1f}ms | "
            f"8 V100s free: migration_stage={1000 * freed.get('migration', 0.0):.1f}ms "
            f"moved={moved}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    for n in args.jobs:
        for enabled in (False, True):
            print(run(n, enabled), flush=True)


if __name__ == "__main__":
    main()
