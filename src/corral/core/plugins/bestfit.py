"""BESTFIT: the node with the least normalised CPU and GPU left over after placement.

The classic bin-packing heuristic as used by the fragmentation study (Weng et al., USENIX ATC 2023,
section 6): leftover CPU and leftover GPU are each divided by the largest node's capacity of that
resource, weighted equally, and the node with the smallest sum wins.

    score = 1 - 0.5 * cpu_left_after / max_node_cpu - 0.5 * gpu_left_after / max_node_gpu

Worked example: the largest node has 128 cores and 8 GPUs. A 1-GPU, 8-core task on a node with
16 cores and 2 GPUs free leaves 8 cores and 1 GPU: 1 - 0.5 * 8/128 - 0.5 * 1/8 = 0.90625. On an
empty 96-core, 8-GPU node it leaves 88 cores and 7 GPUs: 1 - 0.34375 - 0.4375 = 0.21875.
"""

from __future__ import annotations

from typing import ClassVar, Final

import numpy as np

from corral.core.fit import Shape, device_need, device_need_one
from corral.core.model import MILLI_PER_GPU
from corral.core.plugins.base import register
from corral.core.snapshot import Capacity, FloatArray, IntArray, NodeTable

BESTFIT: Final = "bestfit"


def gpu_need(cap: Capacity, shape: Shape, nodes: IntArray) -> IntArray:
    """Milli-GPU one worker of `shape` takes on each node."""
    r = shape.resources
    if r.gpus:
        return np.full(nodes.shape, r.gpus * MILLI_PER_GPU, dtype=np.int64)
    if r.fractional:
        return device_need(cap.table, r, nodes)[0]
    return np.zeros(nodes.shape, dtype=np.int64)


@register(BESTFIT)
class BestFit:
    name: ClassVar[str] = BESTFIT
    node_local: ClassVar[bool] = True
    state_local: ClassVar[bool] = True  # reads free capacity and the pool's largest node

    def __init__(self, seed: int = 0) -> None:
        del seed  # deterministic: draws no random numbers
        self._scale: tuple[NodeTable, float, float] | None = None

    def _scales(self, table: NodeTable) -> tuple[float, float]:
        if self._scale is None or self._scale[0] is not table:  # the largest node, once
            max_cpu = max(int(table.cpu.max()), 1) if len(table) else 1
            self._scale = (table, 0.5 / max_cpu, 0.5 / (max(table.max_gpus, 1) * MILLI_PER_GPU))
        return self._scale[1], self._scale[2]

    def score_one(self, cap: Capacity, shape: Shape, node: int) -> float:
        """`score` of one node in plain Python: the same float (`plugins.one_node`)."""
        per_cpu, per_gpu = self._scales(cap.table)
        r, free = shape.resources, cap.free_of(node)
        if r.gpus:
            need = r.gpus * MILLI_PER_GPU
        elif r.fractional:
            need = device_need_one(r, cap.table.gpu_memory_list[node])[0]
        else:
            need = 0
        cpu_left = free.cpu - r.cpu_milli
        gpu_left = sum(m for m in free.milli if m > 0) - need
        score = 1.0 - cpu_left * per_cpu - gpu_left * per_gpu
        score = score if score >= 0.0 else 0.0  # np.maximum, then np.minimum, as `score`
        return score if score <= 1.0 else 1.0

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        per_cpu, per_gpu = self._scales(cap.table)
        cpu_left = cap.free_cpu[nodes] - shape.resources.cpu_milli
        # np.maximum/np.minimum, not np.clip: the same values, without clip's Python-level
        # checks (~20 us a call, and the placer scores a node or two at a time, issue 10)
        gpu_left = np.maximum(cap.free_milli[nodes], 0).sum(axis=1) - gpu_need(cap, shape, nodes)
        score = 1.0 - cpu_left * per_cpu - gpu_left * per_gpu
        return np.asarray(np.minimum(np.maximum(score, 0.0), 1.0), dtype=np.float64)
