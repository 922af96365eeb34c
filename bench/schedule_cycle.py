"""One full scheduling cycle on a large synthetic pool.

    python bench/schedule_cycle.py --nodes 10000 --pending 100000 --seed 1 [--json OUT]

Pool: N nodes x 8 GPUs, 3 GPU models, 3 providers with different prices, regions, zones, racks
(NVLink domain = node). 50 queues (10 parents x 4 children), quotas summing to the pool.
Pending: ~70% 1-GPU, 15% fractional, 10% 8-GPU, 5% gangs of 2-32 workers x 8 GPUs.
Prints the figures; the last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import time
from pathlib import Path

from corral.core import (
    ClusterState,
    Node,
    Queue,
    SchedulerConfig,
    WorkerResources,
    Workload,
    schedule,
)
from corral.core.model import CapacityKind, TopologyLevel

MODELS = ("H100", "A100", "L40S")
PROVIDERS = (
    ("aws", 4.1, CapacityKind.ON_DEMAND),
    ("gcp", 2.3, CapacityKind.SPOT),
    ("onprem", 0.9, CapacityKind.OWNED),
)


def make_pool(n: int, rng: random.Random) -> list[Node]:
    nodes = []
    for i in range(n):
        provider, price, kind = PROVIDERS[i % 3]
        model = MODELS[(i // 3) % 3]
        region = f"{provider}-r{(i // 9) % 2}"
        nodes.append(
            Node(
                id=f"n{i:05d}",
                provider=provider,
                gpu_model=model,
                gpu_count=8,
                gpu_memory_mib=81920,
                cpu_milli=128_000,
                memory_mib=1_048_576,
                price_per_gpu_hour=price * (1 + 0.1 * (i % 3)),
                capacity_kind=kind,
                region=region,
                zone=f"{region}-z{(i // 18) % 3}",
                rack=f"rack{i // 32}",
            )
        )
    return nodes


def make_queues() -> list[Queue]:
    queues = []
    for p in range(10):
        queues.append(Queue(f"team{p}", quota_gpus=0, weight=1 + p % 3))
        for c in range(4):
            queues.append(
                Queue(
                    f"team{p}-q{c}",
                    parent=f"team{p}",
                    quota_gpus=1600 * (1 + c % 2) / 1.5,
                    weight=1 + c,
                )
            )
    return queues


def make_pending(m: int, queues: list[Queue], rng: random.Random) -> list[Workload]:
    leaves = [q.name for q in queues if q.parent]
    out = []
    for i in range(m):
        roll = rng.random()
        workers, topo = 1, TopologyLevel.ANY
        if roll < 0.70:
            res = WorkerResources(gpus=1, cpu_milli=8000, memory_mib=65536)
        elif roll < 0.85:
            res = WorkerResources(
                gpu_milli=rng.choice((250, 500)), cpu_milli=2000, memory_mib=16384
            )
        elif roll < 0.95:
            res = WorkerResources(gpus=8, cpu_milli=64000, memory_mib=524288)
        else:
            res = WorkerResources(gpus=8, cpu_milli=64000, memory_mib=524288)
            workers, topo = rng.randint(2, 32), rng.choice((TopologyLevel.ANY, TopologyLevel.ZONE))
        models = (rng.choice(MODELS),) if rng.random() < 0.3 else ()
        out.append(
            Workload(
                id=f"w{i:06d}",
                queue=rng.choice(leaves),
                resources=res,
                workers=workers,
                priority=rng.choice((0, 0, 0, 10, 50)),
                gpu_models=models,
                topology=topo,
                submitted_at=float(i),
            )
        )
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--pending", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    nodes, queues = make_pool(args.nodes, rng), make_queues()
    pending = make_pending(args.pending, queues, rng)
    state = ClusterState(tuple(nodes), tuple(queues), tuple(pending))
    build = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    plan = schedule(state, now=1e6, config=SchedulerConfig(), seed=args.seed)
    cycle, cycle_cpu = time.perf_counter() - t1, time.process_time() - c1
    placed = len(plan.placements)
    result = {
        "nodes": args.nodes,
        "gpus": args.nodes * 8,
        "pending": args.pending,
        "placed": placed,
        "placed_gpus": round(
            sum(a.milli_per_device * len(a.devices) for p in plan.placements for a in p.assignments)
            / 1000,
            3,
        ),
        "still_pending": len(plan.pending),
        "input_build_seconds": round(build, 3),
        "cycle_seconds": round(cycle, 3), "cycle_cpu_seconds": round(cycle_cpu, 3),
        "placements_per_second": round(placed / cycle, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": args.seed,
    }
    print(
        f"placed {placed} of {args.pending} pending workloads on {args.nodes} nodes in {cycle:.3f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
