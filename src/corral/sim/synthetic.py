"""A seeded synthetic trace: a heterogeneous pool and a stream of ML jobs at a chosen load.

The same `SyntheticSpec` (seed included) gives the same trace, byte for byte.

Pool: 8 x H100 (96 cores, 1 TiB), 8 x A100 (128 cores, 1 TiB) and 4 x L40S (64 cores,
512 GiB) nodes in equal numbers, in racks of 8, priced 4.0, 2.0 and 1.0 per GPU-hour;
`spot_fraction` of them spot capacity.

Jobs (fractions of all tasks): CPU-only `cpu_only_fraction`; GPU shares (0.25 or 0.5 of one
GPU) `share_fraction`; gangs of 2-4 workers x 8 GPUs `gang_fraction`; the rest 1, 2, 4 or 8
whole GPUs (weights 8:3:2:1). 4, 6, 8 or 10 cores and 32, 64 or 96 GiB per GPU (round sizes, so
every task fits some node and tasks share a few hundred shapes); 10% restricted to one model. Durations are log-normal (median `median_duration_s`,
sigma 1.2, 1 minute to 2 days). QoS:
LS 30%, Burstable 10%, BE 60%.

Arrivals are a Poisson process whose rate makes the offered load (requested GPU-seconds over
capacity x arrival span) equal `load`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corral.core.model import MILLI_PER_GPU, CapacityKind, Node
from corral.sim.trace import Trace, TraceTask

_NODE_TYPES = (("H100", 8, 96_000, 1_048_576, 81_920, 4.0),
               ("A100", 8, 128_000, 1_048_576, 81_920, 2.0),
               ("L40S", 4, 64_000, 524_288, 49_152, 1.0))
_WHOLE = np.array([1, 2, 4, 8])
_WHOLE_P = np.array([8, 3, 2, 1]) / 14
_QOS = ("LS", "Burstable", "BE")
_QOS_P = (0.3, 0.1, 0.6)


@dataclass(frozen=True)
class SyntheticSpec:
    tasks: int = 10_000
    nodes: int = 96
    load: float = 0.9
    seed: int = 0
    cpu_only_fraction: float = 0.1
    share_fraction: float = 0.25
    gang_fraction: float = 0.03
    median_duration_s: float = 1800.0
    spot_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.nodes < 1:
            raise ValueError(f"need at least one task and one node, got {self.tasks} and {self.nodes}")
        if self.load <= 0:
            raise ValueError(f"load must be positive, got {self.load}")
        total = self.cpu_only_fraction + self.share_fraction + self.gang_fraction
        if min(self.cpu_only_fraction, self.share_fraction, self.gang_fraction) < 0 or total > 1:
            raise ValueError("cpu_only, share and gang fractions must be >= 0 and sum to <= 1")


def synthetic_trace(spec: SyntheticSpec) -> Trace:
    rng = np.random.default_rng(spec.seed)
    nodes = _pool(spec, rng)
    n = spec.tasks
    kind = rng.choice(4, size=n, p=_kind_p(spec))  # 0 cpu, 1 share, 2 whole, 3 gang
    gpus = np.where(kind == 2, rng.choice(_WHOLE, size=n, p=_WHOLE_P), 0)
    gpus = np.where(kind == 3, 8, np.where(kind == 1, 1, gpus))
    milli = np.where(kind == 1, rng.choice([250, 500], size=n), np.where(gpus > 0, MILLI_PER_GPU, 0))
    workers = np.where(kind == 3, rng.integers(2, 5, size=n), 1)
    gpu_share = np.where(kind == 1, milli / MILLI_PER_GPU, gpus)
    # Requests come in round sizes (as people write them), so that tasks share a few hundred
    # shapes, as real traces do: cores and GiB per GPU from short menus.
    cpu = np.round(np.maximum(gpu_share, 0.5) * rng.choice([4, 6, 8, 10], size=n)) * 1000
    memory = np.maximum(gpu_share, 0.25) * rng.choice([32, 64, 96], size=n) * 1024
    cpu, memory = cpu.astype(np.int64), memory.astype(np.int64)
    duration = np.clip(rng.lognormal(np.log(spec.median_duration_s), 1.2, size=n), 60, 2 * 86400)
    requested = float((gpu_share * workers * duration).sum())
    capacity = sum(node.gpu_count for node in nodes)
    span = requested / (spec.load * capacity) if requested > 0 else float(n)
    gaps = rng.exponential(1.0, size=n)
    submitted = np.round(np.cumsum(gaps) / gaps.sum() * span, 3)
    models = [node_type[0] for node_type in _NODE_TYPES]
    pinned = rng.random(n) < 0.1
    # An 8-GPU worker only fits the 8-GPU models.
    model_of = np.where(gpus > 4, rng.integers(2, size=n), rng.integers(len(models), size=n))
    qos = rng.choice(len(_QOS), size=n, p=_QOS_P)
    tasks = tuple(
        TraceTask(name=f"job-{i:06d}", cpu_milli=int(cpu[i]), memory_mib=int(memory[i]),
                  gpus=int(gpus[i]), gpu_milli=int(milli[i]),
                  gpu_models=(models[model_of[i]],) if pinned[i] and gpus[i] else (),
                  qos=_QOS[qos[i]], workers=int(workers[i]), submitted=float(submitted[i]),
                  duration=round(float(duration[i]), 3))
        for i in range(n)
    )
    return Trace(f"synthetic-{spec.tasks}-s{spec.seed}", nodes, tasks,
                 (f"synthetic: {spec}",))


def _kind_p(spec: SyntheticSpec) -> list[float]:
    whole = 1.0 - spec.cpu_only_fraction - spec.share_fraction - spec.gang_fraction
    return [spec.cpu_only_fraction, spec.share_fraction, whole, spec.gang_fraction]


def _pool(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[Node, ...]:
    spot = rng.random(spec.nodes) < spec.spot_fraction
    nodes = []
    for i in range(spec.nodes):
        model, gpus, cpu, ram, gmem, price = _NODE_TYPES[i % len(_NODE_TYPES)]
        nodes.append(Node(id=f"node-{i:05d}", provider="synthetic", gpu_model=model,
                          gpu_count=gpus, gpu_memory_mib=gmem, cpu_milli=cpu, memory_mib=ram,
                          price_per_gpu_hour=price,
                          capacity_kind=CapacityKind.SPOT if spot[i] else CapacityKind.ON_DEMAND,
                          zone=f"zone-{(i // 64) % 2}", rack=f"rack-{i // 8}"))
    return tuple(nodes)
