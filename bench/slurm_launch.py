"""Slurm alone vs corral driving the same Slurm: jobs/s, side by side, in one run.

Starts a real Slurm on this host (`corral.testing.slurm.SlurmCluster`: slurmctld and `--nodes`
slurmd with fake GPUs), then, on the same cluster and with the same jobs (`--jobs` one-GPU jobs
running `true`):

1. Slurm alone: one `sbatch --array` of them (Slurm's fastest submission path), timed from the
   submission until the queue is empty again;
2. corral: the same number of one-GPU workloads stored in a fresh SQLite store, the control loop
   stepped as fast as it goes (in-process, `SlurmBackend`, no accounting) until every workload
   has succeeded; timed from the first step.

Prints one JSON line: jobs/s of each and their ratio (the issue's target: corral >= 0.8x).

    .venv/bin/python bench/slurm_launch.py [--nodes 4] [--jobs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corral.backends.slurm import SlurmBackend
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control.submission import _Accepted, _row, _store_accepted, stored_form
from corral.core.model import Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.database import sqlite_url
from corral.testing.slurm import SlurmCluster
from corral.testing.slurmconf import SlurmSettings


def slurm_alone(cluster: SlurmCluster, jobs: int, out: Path) -> float:
    started = time.perf_counter()
    cluster.run("sbatch", "--parsable", f"--array=0-{jobs - 1}", "--gres=gpu:1", "--ntasks=1",
                f"--output={out}/alone-%A_%a.out", "--wrap=true")
    _drain(cluster)
    return time.perf_counter() - started


def _drain(cluster: SlurmCluster, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.run("squeue", "-h", "-o", "%i").stdout.strip():
            return
        time.sleep(0.05)
    raise TimeoutError("Slurm did not drain its queue")


def corral_on_slurm(cluster: SlurmCluster, jobs: int, work: Path) -> tuple[float, dict[str, Any]]:
    backend = SlurmBackend(work / "slurm-work", env=cluster.env)
    store = Store(sqlite_url(work / "corral.db"))
    store.upgrade()
    with store.write() as c:
        P.sync_nodes(c, [{"name": "slurm"}], backend.inventory())
        P.upsert_queue(c, Queue("default", quota_gpus=10_000))
    spec = WorkloadSpec.model_validate({"name": "j", "queue": "default", "gpus": 1,
                                        "cpu": 1, "memory": "64MiB", "command": ["true"],
                                        "checkpoint_dir": str(work / "ckpt")})
    body = stored_form(spec)
    with store.write() as c:
        _store_accepted(c, [_Accepted([_row(f"j{i:05d}", f"j{i:05d}", spec, "bench", body,
                                            time.time())], "bench") for i in range(jobs)])
    loop = ControlLoop(store, backend, settings=ControlSettings(
        checkpoint_root=work / "ckpt"), leadership=Leadership(store, holder="bench"))
    steps, launched = 0, 0
    stages: dict[str, float] = {}
    started = time.perf_counter()
    while True:
        report = loop.step()
        steps, launched = steps + 1, launched + report.launched
        for k, v in report.stages.items():
            stages[k] = stages.get(k, 0.0) + v
        with store.read() as c:
            counts = W.count_by_state(c)
        if counts.get("succeeded", 0) + counts.get("failed", 0) >= jobs:
            break
        if time.perf_counter() - started > 900:
            raise TimeoutError(f"corral did not finish: {counts}")
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, {"steps": steps, "launched": launched, "states": counts,
                     "corral_stage_s": {k: round(v, 2) for k, v in sorted(stages.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--gpus", type=int, default=8, help="GPUs per slurmd")
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    settings = SlurmSettings(gpus_per_node=args.gpus, shards_per_gpu=0,
                             cpus_per_node=args.gpus, memory_mb=args.gpus * 1024)
    with tempfile.TemporaryDirectory() as tmp, SlurmCluster(args.nodes, settings) as cluster:
        work = Path(tmp)
        alone = slurm_alone(cluster, args.jobs, work)
        corral, detail = corral_on_slurm(cluster, args.jobs, work)
    result = {
        "bench": "slurm_launch", "nodes": args.nodes, "gpus_per_node": args.gpus,
        "jobs": args.jobs, "slurm_alone_s": round(alone, 2),
        "slurm_alone_jobs_per_s": round(args.jobs / alone, 1), "corral_s": round(corral, 2),
        "corral_jobs_per_s": round(args.jobs / corral, 1),
        "ratio": round(alone / corral, 2), **detail,
        "machine": {"nproc": os.cpu_count(), "load": os.getloadavg()[0]},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
