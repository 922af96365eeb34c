"""The **full** regime of `bench/schedule_cycle.py` (the previous benchmark of record, kept byte
for byte so its figures stay comparable): nothing runs, `pending` workloads fill the empty pool of
`nodes` 8-GPU nodes to the last GPU; no queue stays below its quota and nothing is evicted.
Imported by schedule_cycle.py from this folder (a script's folder is first on its path)."""

from __future__ import annotations

import random

from corral.core import ClusterState, Node, Queue, WorkerResources, Workload
from corral.core.model import CapacityKind, TopologyLevel

__all__ = ["full_state"]


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


def full_state(nodes: int, pending: int, seed: int) -> ClusterState:
    rng = random.Random(seed)
    pool, queues = make_pool(nodes, rng), make_queues()
    return ClusterState(tuple(pool), tuple(queues), tuple(make_pending(pending, queues, rng)))
