"""Built-in score plugins: bin-pack, spread, price, GPU model preference."""

from __future__ import annotations

from typing import ClassVar, Final

import numpy as np

from corral.core.fit import Shape, device_need
from corral.core.model import MILLI_PER_GPU
from corral.core.plugins.base import register
from corral.core.snapshot import Capacity, FloatArray, IntArray

BINPACK: Final = "binpack"
SPREAD: Final = "spread"
PRICE: Final = "price"
GPU_MODEL: Final = "gpu-model"
CAPACITY: Final = "capacity"


def _used_fraction_after(cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
    """Share of each node's GPUs in use once one more worker lands there."""
    total = np.maximum(cap.table.gpu_count[nodes], 1) * MILLI_PER_GPU
    free = cap.free_sum[nodes]
    r = shape.resources
    if r.gpus:
        need = np.full(nodes.shape, r.gpus * MILLI_PER_GPU)
    elif r.fractional:
        need = device_need(cap.table, r, nodes)[0]
    else:
        need = np.zeros(nodes.shape, dtype=np.int64)
    return np.asarray(np.clip((total - free + need) / total, 0.0, 1.0), dtype=np.float64)


class _Plugin:
    def __init__(self, seed: int = 0) -> None:
        del seed  # deterministic plugins draw no random numbers


@register(BINPACK)
class BinPack(_Plugin):
    """Fill partly used nodes before empty ones; for GPU shares, prefer nodes whose partly used
    devices can take the share (so whole devices stay whole for whole-GPU work).

    Score = 0.8 x node GPU use after placement + 0.2 x (1 if the share fits on an already
    partly used device). Fragmentation-aware in the simple sense; the simulator measures it
    against Fragmentation Gradient Descent (Weng et al., ATC 2023).
    """

    name: ClassVar[str] = BINPACK
    node_local: ClassVar[bool] = True
    state_local: ClassVar[bool] = True

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        used = _used_fraction_after(cap, shape, nodes)
        if not shape.resources.fractional:
            return used
        milli, mem = device_need(cap.table, shape.resources, nodes)
        fm, fg = cap.free_milli[nodes], cap.free_mem[nodes]
        partial = (fm > 0) & (fm < MILLI_PER_GPU) & (fm >= milli[:, None]) & (fg >= mem[:, None])
        return np.asarray(0.8 * used + 0.2 * partial.any(axis=1), dtype=np.float64)


@register(SPREAD)
class Spread(_Plugin):
    """Prefer the emptiest nodes (lower blast radius, more headroom per workload)."""

    name: ClassVar[str] = SPREAD
    node_local: ClassVar[bool] = True
    state_local: ClassVar[bool] = True

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        return 1.0 - _used_fraction_after(cap, shape, nodes)


@register(PRICE)
class Price(_Plugin):
    """Cheaper capacity scores higher: 1 for the cheapest node in the pool, 0 for the dearest."""

    name: ClassVar[str] = PRICE
    node_local: ClassVar[bool] = True
    static: ClassVar[bool] = True  # reads only the node's price

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        prices = cap.table.price
        lo, hi = (float(prices.min()), float(prices.max())) if prices.size else (0.0, 0.0)
        if hi - lo < 1e-12:
            return np.ones(nodes.shape, dtype=np.float64)
        return np.asarray(1.0 - (prices[nodes] - lo) / (hi - lo), dtype=np.float64)


@register(GPU_MODEL)
class GpuModelPreference(_Plugin):
    """A workload lists allowed models most preferred first: the first scores 1, the last 0."""

    name: ClassVar[str] = GPU_MODEL
    node_local: ClassVar[bool] = True
    static: ClassVar[bool] = True  # reads only the node's model

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        if len(shape.gpu_models) < 2:
            return np.ones(nodes.shape, dtype=np.float64)
        rank = np.full(len(cap.table.model_names), len(shape.gpu_models) - 1, dtype=np.float64)
        for i, m in enumerate(shape.gpu_models):
            code = cap.table.model_code(m)
            if code is not None:
                rank[code] = min(rank[code], i)
        return np.asarray(
            1.0 - rank[cap.table.model[nodes]] / (len(shape.gpu_models) - 1), dtype=np.float64
        )


@register(CAPACITY)
class CapacityPreference(_Plugin):
    """Which kind of capacity suits the work: work that may run on spot (preemptible, or asked
    for it) prefers spot, then owned, then on-demand, leaving stable capacity to work that must
    not be interrupted; work kept off spot prefers owned capacity (already paid for) to
    on-demand. Constant over a pool of one kind, so it changes nothing there."""

    name: ClassVar[str] = CAPACITY
    node_local: ClassVar[bool] = True
    static: ClassVar[bool] = True  # reads only the node's capacity kind

    _SPOT_FIRST: ClassVar[dict[str, float]] = {"spot": 1.0, "owned": 0.5, "on-demand": 0.0}
    _STABLE_FIRST: ClassVar[dict[str, float]] = {"owned": 1.0, "on-demand": 0.0, "spot": 0.0}

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        prefs = self._SPOT_FIRST if shape.allows_spot else self._STABLE_FIRST
        by_code = np.array([prefs.get(k, 0.0) for k in cap.table.kind_names], dtype=np.float64)
        return np.asarray(by_code[cap.table.kind[nodes]], dtype=np.float64)
