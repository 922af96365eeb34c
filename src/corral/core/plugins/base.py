"""The two pluggable extension points of placement, after the Kubernetes scheduling framework.

- **Score** (`ScorePlugin.score`): rank feasible nodes for one shape. Scores are in [0, 1],
  higher is better; the placer adds them up with the policy's weights.
- **Device pick** (`DevicePicker.pick`): on the chosen node, which devices a worker takes.

Filters (fits, model, price cap, cordon, reservations) are not pluggable: they are the rules, and
a policy must not be able to weaken them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import numpy as np

from corral.core.fit import Shape, device_need
from corral.core.model import MILLI_PER_GPU
from corral.core.snapshot import Capacity, FloatArray, IntArray


class ScorePlugin(Protocol):
    name: ClassVar[str]
    #: Optional `static: ClassVar[bool] = True` when the score reads only a node's fixed
    #: attributes (price, model, topology): the placer then computes it once per shape.
    #: True when a node's score depends only on that node's own state. The placer then caches
    #: scores per shape and re-scores only nodes that changed. A plugin that is not node-local
    #: (say, one that draws random numbers) is re-run over all candidates each time.
    node_local: ClassVar[bool]
    #: Optional `state_local: ClassVar[bool] = True` when the score reads nothing of a node but
    #: its free capacity (CPU, RAM, share and memory per device) and its fixed size (model, GPU
    #: count and memory, CPU, RAM), and nothing of the shape but its per-worker resources: the
    #: placer then memoises scores by node state, shared by shapes with the same resources.

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        """Scores in [0, 1] for `nodes` (all feasible for `shape`). Pure and deterministic."""
        ...


class DevicePicker(Protocol):
    def pick(self, cap: Capacity, shape: Shape, node: int) -> tuple[int, ...] | None:
        """Devices for one worker of `shape` on `node`, or None if it does not fit there.

        A picker may declare `whole_lowest_first: ClassVar[bool] = True` when it always gives
        whole-GPU workers the lowest-index untouched devices.

        Called after `node` was chosen and must honour the same rules as `fit.worker_slots`:
        whole GPUs only on untouched devices, shares only where milli and memory both fit.
        """
        ...


PluginFactory = Callable[..., ScorePlugin]
REGISTRY: dict[str, PluginFactory] = {}


def register(name: str) -> Callable[[PluginFactory], PluginFactory]:
    def deco(factory: PluginFactory) -> PluginFactory:
        if name in REGISTRY:
            raise ValueError(f"score plugin {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return deco


def best_fit_devices(cap: Capacity, shape: Shape, node: int) -> tuple[int, ...] | None:
    """Default device pick: lowest-index untouched devices for whole GPUs; for a share, the
    device with the least free share that still fits (keeps whole devices whole)."""
    r = shape.resources
    if r.gpus:
        free = np.flatnonzero(cap.free_milli[node] == MILLI_PER_GPU)
        return tuple(int(d) for d in free[: r.gpus]) if free.size >= r.gpus else None
    if not r.fractional:
        return ()
    milli, mem = device_need(cap.table, r, np.array([node]))
    fm, fg = cap.free_milli[node], cap.free_mem[node]
    ok = (fm >= milli[0]) & (fg >= mem[0])
    if not ok.any():
        return None
    leftover = np.where(ok, fm - milli[0], MILLI_PER_GPU + 1)
    return (int(np.argmin(leftover)),)


class BestFitPicker:
    state_local: ClassVar[bool] = True  # reads the node's free share and memory per device
    #: whole GPUs: always the lowest-index untouched devices (the placer may then give a gang's
    #: workers on one node their devices in one step)
    whole_lowest_first: ClassVar[bool] = True

    def pick(self, cap: Capacity, shape: Shape, node: int) -> tuple[int, ...] | None:
        return best_fit_devices(cap, shape, node)
