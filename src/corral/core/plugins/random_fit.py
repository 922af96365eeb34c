"""RANDOM: a uniformly random feasible node, and a random device for GPU shares.

The baseline of the fragmentation experiment (Weng et al., "Beware of Fragmentation: Scheduling
GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023, section 6): it shows
how much any placement policy gains over no policy at all.

Deterministic given the seed: the plugin owns one generator, seeded at construction, and draws
from it in call order. The same seed and the same sequence of calls give the same placements.
"""

from __future__ import annotations

from typing import ClassVar, Final

import numpy as np

from corral.core.fit import Shape, device_need
from corral.core.model import MILLI_PER_GPU
from corral.core.plugins.base import register
from corral.core.snapshot import Capacity, FloatArray, IntArray

RANDOM: Final = "random"


@register(RANDOM)
class RandomFit:
    """Score: an independent uniform draw per feasible node, so the argmax is a uniformly random
    feasible node. Not node-local (a node's score changes on every call), so the placer draws
    afresh over all candidates for every workload."""

    name: ClassVar[str] = RANDOM
    node_local: ClassVar[bool] = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        return np.asarray(self._rng.random(nodes.shape[0]), dtype=np.float64)

    def pick(self, cap: Capacity, shape: Shape, node: int) -> tuple[int, ...] | None:
        """Whole GPUs: the lowest-index untouched devices (which ones does not matter, all are
        full). A share: a uniformly random device where both its milli and memory fit."""
        r = shape.resources
        free = cap.free_milli[node]
        if r.gpus:
            whole = np.flatnonzero(free == MILLI_PER_GPU)
            return tuple(int(d) for d in whole[: r.gpus]) if whole.size >= r.gpus else None
        if not r.fractional:
            return ()
        milli, mem = device_need(cap.table, r, np.array([node]))
        fits = np.flatnonzero((free >= milli[0]) & (cap.free_mem[node] >= mem[0]))
        if fits.size == 0:
            return None
        return (int(fits[self._rng.integers(fits.size)]),)
