"""Ray alone vs corral driving the same Ray: jobs/s, side by side, in one run.

Starts a real multi-node Ray on this host (`corral.testing.raycluster.RayTestCluster`: a head and
`--workers` raylets with `--gpus` declared GPUs each), then, on the same cluster, for each size
in `--jobs` and each of `--repeats` rounds, with the same jobs (one-GPU jobs running `true`):

1. Ray alone, through its own placement groups: one placement group of one ``{"GPU": 1}``
   bundle per job, all created at once, a task in each running `true` (``num_gpus=1``,
   ``num_cpus=0``), each group removed as its task returns; timed until the last task returned
   (Ray queues the groups that do not fit yet, as corral queues its work);
2. corral: the same number of one-GPU workloads stored in a fresh SQLite store, the control loop
   stepped in-process (`RayBackend`: corral's host actor on each node starts each worker,
   `true` under corral's supervisor, and a placement group per attempt holds its GPU) until
   every workload has succeeded; timed from the first step (`engine_loop.run_until_done`,
   shared with `slurm_launch.py`).

Prints one JSON line per (size, round): jobs/s of each, the ratio (the issue's target: corral
>= 0.8x Ray's placement-group rate), corral's seconds per loop stage, and the machine's load.

    .venv/bin/python bench/ray_launch.py [--workers 2] [--gpus 8] [--jobs 100] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from engine_loop import run_until_done  # type: ignore[import-not-found]  # bench/

from corral.backends.ray import RayBackend
from corral.testing.raycluster import RayNodeSpec, RayTestCluster


def run_true() -> int:
    return subprocess.run(["true"], check=False).returncode


def ray_alone(jobs: int) -> float:
    """Row 1: a placement group per job, a task in each, groups removed as tasks return."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    task = ray.remote(run_true)
    started = time.perf_counter()
    groups, refs = {}, []
    for _ in range(jobs):
        pg = placement_group([{"GPU": 1}])
        ref = task.options(num_gpus=1, num_cpus=0, scheduling_strategy=(
            PlacementGroupSchedulingStrategy(pg))).remote()
        groups[ref] = pg
        refs.append(ref)
    pending = refs
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=600)
        if not done:
            raise TimeoutError("Ray did not run the placement-group tasks")
        for ref in done:
            assert ray.get(ref) == 0
            remove_placement_group(groups.pop(ref))
    return time.perf_counter() - started


def corral_on_ray(jobs: int, work: Path, interval: float) -> tuple[float, dict[str, Any]]:
    backend = RayBackend(work / "ray-work", node_root=str(work / "ray-nodes"))
    return run_until_done(backend, work, jobs, cpu=0.1, provider="ray", interval=interval,
                          nodes=lambda n: n.gpu_count > 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="Ray worker nodes")
    ap.add_argument("--gpus", type=int, default=8, help="declared GPUs per worker node")
    ap.add_argument("--jobs", type=int, nargs="+", default=[100])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.0,
                    help="seconds between control-loop step starts (0: as fast as it goes)")
    args = ap.parse_args()
    nodes = [RayNodeSpec(num_gpus=args.gpus, num_cpus=2) for _ in range(args.workers)]
    with RayTestCluster(nodes, connect=True):
        for jobs in args.jobs:
            for round_ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    alone = ray_alone(jobs)
                    corral, detail = corral_on_ray(jobs, Path(tmp), args.interval)
                print(json.dumps({
                    "bench": "ray_launch", "workers": args.workers, "gpus_per_node": args.gpus,
                    "jobs": jobs, "round": round_,
                    "ray_placement_groups_jobs_per_s": round(jobs / alone, 1),
                    "corral_jobs_per_s": round(jobs / corral, 1),
                    "ratio": round(alone / corral, 2), "ray_alone_s": round(alone, 2),
                    "corral_s": round(corral, 2), **detail,
                    "machine": {"nproc": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 1)},
                }), flush=True)


if __name__ == "__main__":
    main()
