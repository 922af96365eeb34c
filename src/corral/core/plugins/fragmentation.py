"""FGD: place each task where it increases the pool's expected GPU fragmentation the least.

After Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
Gradient Descent" (USENIX ATC 2023). Written from the paper's definitions, not from its code.

**Fragmentation of a node for one task type** m (GPUs k x share d each, CPU c, allowed models):
the free GPU capacity of the node that m could not use.

- m cannot run on the node at all (model not allowed, CPU short, fewer than k devices with at
  least d free, or m needs no GPU): *all* free GPU capacity is fragment for m.
- otherwise: the free capacity of devices with less than d free (they are too small for m).

**Expected fragmentation** F(node) = sum over task types m of p_m x frag(node, m), where p_m is
m's share of the workload ("typical tasks": the most frequent types that make up 95% of tasks,
renormalised; see `typical_tasks`).

**Score** of a node for a task t: delta = F(node after t lands) - F(node now), the fragmentation
gradient; the smallest increase wins. It is reported as 1 / (1 + exp(delta / 1000)), in (0, 1)
and decreasing in delta (1000 milli = one GPU of fragmentation halves nothing but shifts the
score by a sigmoid step). For a GPU share the plugin also picks the device (it is a
`DevicePicker`): the one whose use raises F the least; a node's score is that of its best device.

Worked example (one task type, 0.5 GPU, p = 1): a 2-GPU node with devices free 1000 and 300.
F = 300 (the 300 device cannot take 0.5). Placing a 0.5 share on the full device gives free
500/300, F = 300, delta 0; on the 300 device it does not fit. A 0.25 share on the 300 device
gives 1000/50, F = 50, delta = -250: preferred, it *reduces* fragmentation.

Memory (RAM) is not part of F, as in the paper: it rarely binds on GPU nodes and the
feasibility filters still enforce it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np

from corral.core.fit import Shape, device_need, device_need_one
from corral.core.model import MILLI_PER_GPU
from corral.core.plugins import one_node
from corral.core.plugins.base import register
from corral.core.snapshot import BoolArray, Capacity, FloatArray, IntArray, NodeTable

FGD: Final = "fgd"
_DIRECT = 16  # batches of at most this many nodes skip the memos (checking costs as much)
_KEYS = 256  # score memos kept, one per fragmentation key (CPU and GPU request)
_STATES = 1 << 18  # (request, node state) scores kept for small batches
_DECIMALS = 6  # fragmentation is compared to a millionth of a milli-GPU


@dataclass(frozen=True, slots=True)
class TaskType:
    """One kind of task in the workload distribution and its weight (share) in it.

    `gpus` devices of `gpu_milli` each (1000 = whole devices); `gpus` = 0 is a CPU-only task.
    """

    cpu_milli: int
    gpus: int = 0
    gpu_milli: int = 0
    gpu_models: tuple[str, ...] = ()
    weight: float = 1.0

    def key(self) -> tuple[int, int, int, tuple[str, ...]]:
        return (self.cpu_milli, self.gpus, self.gpu_milli if self.gpus else 0, self.gpu_models)


#: Used when no workload distribution is configured: a neutral mix of the usual GPU requests.
DEFAULT_MIX: Final = (
    TaskType(0, 1, 250),
    TaskType(0, 1, 500),
    TaskType(0, 1, 1000),
    TaskType(0, 2, 1000),
    TaskType(0, 4, 1000),
    TaskType(0, 8, 1000),
)


def typical_tasks(tasks: Iterable[TaskType], coverage: float = 0.95) -> tuple[TaskType, ...]:
    """The most frequent task types that together make up `coverage` of all tasks.

    Tasks are counted by type (CPU, GPUs, share, models; their `weight` is a count). Types are
    taken most frequent first (ties: the smaller type first, so the result is deterministic)
    until their count reaches `coverage` of the total; weights are renormalised to sum to 1.

    >>> ts = [TaskType(1000, 1, 500)] * 6 + [TaskType(0)] * 3 + [TaskType(2000, 8, 1000)]
    >>> [(t.gpus, round(t.weight, 3)) for t in typical_tasks(ts, coverage=0.9)]
    [(1, 0.667), (0, 0.333)]
    """
    counts: dict[tuple[int, int, int, tuple[str, ...]], float] = {}
    for t in tasks:
        counts[t.key()] = counts.get(t.key(), 0.0) + t.weight
    total = sum(counts.values())
    if total <= 0:
        return ()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    chosen: list[tuple[tuple[int, int, int, tuple[str, ...]], float]] = []
    cumulative = 0.0
    for key, count in ranked:
        chosen.append((key, count))
        cumulative += count
        if cumulative >= coverage * total - 1e-9:
            break
    return tuple(TaskType(c, g, m, models, n / cumulative) for (c, g, m, models), n in chosen)


def shape_mix(counts: Mapping[Shape, int], device_memory_mib: int) -> tuple[TaskType, ...]:
    """The typical tasks of a scheduling cycle's own work: each worker of a shape is one task
    (a gang of 4 x 8 GPUs counts four 8-GPU tasks), `counts` being workloads per shape. A share
    asked for as GPU memory is counted as the share it takes of a device of
    `device_memory_mib` (the pool's typical device).

    >>> from corral.core.model import WorkerResources
    >>> one, gang = Shape(WorkerResources(gpus=1, cpu_milli=8000)), Shape(
    ...     WorkerResources(gpus=8, cpu_milli=64000), workers=4)
    >>> [(t.gpus, round(t.weight, 3)) for t in shape_mix({one: 12, gang: 1}, 81920)]
    [(1, 0.75), (8, 0.25)]
    """
    tasks = []
    for shape, n in counts.items():
        r = shape.resources
        share = r.gpu_milli if r.gpus == 0 and r.gpu_milli else 0
        if r.gpus == 0 and not r.gpu_milli and r.gpu_memory_mib:
            share = r.nominal_milli(device_memory_mib) if device_memory_mib else MILLI_PER_GPU
        gpus, milli = (r.gpus, MILLI_PER_GPU) if r.gpus else ((1, share) if share else (0, 0))
        tasks.append(TaskType(r.cpu_milli, gpus, milli, shape.gpu_models, float(n * shape.workers)))
    return typical_tasks(tasks)


def _as_task_type(value: object) -> TaskType:
    if isinstance(value, TaskType):
        return value
    if isinstance(value, Mapping):
        return TaskType(**value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return TaskType(*value)
    raise TypeError(f"fgd workload entries must be TaskType, mapping or tuple, not {value!r}")


class _Mix:
    """A workload mix resolved against one node table, as arrays (T types, D distinct shares)."""

    def __init__(self, table: NodeTable, types: Sequence[TaskType], balance: float = 0.0) -> None:
        gpu_types = [t for t in types if t.gpus > 0 and t.gpu_milli > 0]
        weights = np.array([t.weight for t in types], dtype=np.float64)
        norm = float(weights.sum()) or 1.0
        self.cpu_only_weight = sum(t.weight for t in types if t not in gpu_types) / norm
        self.cpu = np.array([t.cpu_milli for t in gpu_types], dtype=np.int64)
        self.need = np.array([t.gpus for t in gpu_types], dtype=np.int64)
        self.weight = np.array([t.weight / norm for t in gpu_types], dtype=np.float64)
        shares = sorted({t.gpu_milli for t in gpu_types})
        self.thresholds = np.array(shares, dtype=np.int64)
        self.share_index = np.array([shares.index(t.gpu_milli) for t in gpu_types], dtype=np.int64)
        access = np.ones((max(len(table.model_names), 1), len(gpu_types)), dtype=np.bool_)
        for j, t in enumerate(gpu_types):
            if t.gpu_models:
                access[:, j] = False
                codes = [c for m in t.gpu_models if (c := table.model_code(m)) is not None]
                access[codes, j] = True
        self.access: BoolArray = access
        # GPU milli that typical GPU tasks ask for per milli-core of CPU (see `stranded`).
        gpu_demand = sum(t.weight * t.gpus * t.gpu_milli for t in gpu_types)
        cpu_demand = sum(t.weight * t.cpu_milli for t in gpu_types)
        self.gpu_per_cpu = gpu_demand / cpu_demand if cpu_demand > 0 else 0.0
        self.balance = balance if self.gpu_per_cpu > 0 else 0.0
        #: the same mix for one node at a time, in plain Python (`frag` of one row, exactly)
        self.plain = one_node.PlainMix(
            self.cpu_only_weight, self.balance, self.gpu_per_cpu, self.thresholds.tolist(),
            self.share_index.tolist(), self.need.tolist(), self.cpu.tolist(),
            self.weight.tolist(), access.tolist())

    def frag(self, free: IntArray, cpu: IntArray, model: IntArray) -> FloatArray:
        """Expected fragmentation (milli-GPU) of node states: free milli per device (B, G),
        free CPU (B,), model code (B,)."""
        f = np.maximum(free, 0)
        total = f.sum(axis=1).astype(np.float64)
        out = total * self.cpu_only_weight
        if self.balance:
            out = out + self.balance * np.maximum(total - np.maximum(cpu, 0) * self.gpu_per_cpu, 0)
        if self.weight.size == 0:
            return np.asarray(out, dtype=np.float64)
        big_enough = f[:, :, None] >= self.thresholds[None, None, :]  # (B, G, D)
        count = big_enough.sum(axis=1)[:, self.share_index]  # (B, T)
        small = np.where(big_enough, 0, f[:, :, None]).sum(axis=1)[:, self.share_index]
        usable = (count >= self.need) & (cpu[:, None] >= self.cpu) & self.access[model]
        per_type = np.where(usable, small, total[:, None])
        # An elementwise product summed per row, not a matrix product: BLAS may round
        # differently for different batch sizes, and a node's score must not depend on which
        # other nodes were scored with it (exact ties are broken by node order).
        return np.asarray(out + (per_type * self.weight).sum(axis=1), dtype=np.float64)


class _NodeMemo:
    """Values per node, each remembered with the node state it was computed for (free milli and
    memory per device, free CPU); a node whose state differs is recomputed.

    Comparing states rather than reading `Capacity.changes` stays right when the placer tries
    devices inside `Capacity.scratch` and undoes them (the change log forgets those)."""

    def __init__(self, cap: Capacity) -> None:
        self.milli = np.full_like(cap.free_milli, -2)
        self.mem = np.full_like(cap.free_mem, -2)
        self.cpu = np.full_like(cap.free_cpu, -1)
        self.values = np.zeros(cap.free_cpu.shape[0], dtype=np.float64)

    def fits(self, cap: Capacity) -> bool:
        return self.milli.shape == cap.free_milli.shape

    def get(self, cap: Capacity, nodes: IntArray, compute: Callable[[IntArray], FloatArray]) -> FloatArray:
        stale = nodes[
            (self.milli[nodes] != cap.free_milli[nodes]).any(axis=1)
            | (self.cpu[nodes] != cap.free_cpu[nodes])
            | (self.mem[nodes] != cap.free_mem[nodes]).any(axis=1)
        ]
        if stale.size:
            self.values[stale] = compute(stale)
            self.milli[stale] = cap.free_milli[stale]
            self.mem[stale] = cap.free_mem[stale]
            self.cpu[stale] = cap.free_cpu[stale]
        return self.values[nodes]


@register(FGD)
class Fragmentation:
    """Score plugin and device picker; see the module docstring.

    Parameters: `workload`, the task mix (`TaskType`s, mappings or tuples; default `DEFAULT_MIX`);
    `scale_milli`, the fragmentation change that moves the score by one sigmoid unit; `levels`:
    0 keeps the exact score, L > 0 rounds it down to L levels as the paper's Kubernetes plugin does
    (L = 100, integer node scores), so that near-equal nodes tie and the placer's tie-break (the
    node order, or another plugin with a weight below 1 / L) decides among them; `balance`: weight
    of the stranded-GPU term (0 in FGD as published; see `BalancedFragmentation`).
    """

    name: ClassVar[str] = FGD
    node_local: ClassVar[bool] = True
    state_local: ClassVar[bool] = True  # free share, CPU, memory; model and device memory
    whole_lowest_first: ClassVar[bool] = True  # see `pick`: all full devices are alike

    def __init__(
        self,
        seed: int = 0,
        workload: Iterable[object] | None = None,
        scale_milli: float = 1000.0,
        levels: int = 0,
        balance: float = 0.0,
    ) -> None:
        del seed  # deterministic: draws no random numbers
        self.types = tuple(_as_task_type(t) for t in workload) if workload else DEFAULT_MIX
        self.scale = float(scale_milli)
        self.levels = int(levels)
        self.balance = float(balance)
        self._mix: tuple[NodeTable, _Mix] | None = None
        # Large batches (a shape's first look, or many changes since its last) reuse what is
        # known: F per node, and scores per *fragmentation key*: the score depends on a shape
        # only through its CPU and GPU request, not its memory or allowed models, so shapes
        # that differ only there share scores. At most _KEYS keys are kept (least recent out).
        self._before: _NodeMemo | None = None
        self._scores: dict[tuple[int, int, int, int], _NodeMemo] = {}
        # Small batches: scores by (request, node state); see `_score_by_state`.
        self._by_state: dict[tuple[object, ...], float] = {}
        self._sigmoids: dict[float, float] = {}  # `score_one`: numpy's sigmoid by gradient

    def mix(self, table: NodeTable) -> _Mix:
        if self._mix is None or self._mix[0] is not table:
            self._mix = (table, _Mix(table, self.types, self.balance))
            self._before, self._scores, self._by_state = None, {}, {}
        return self._mix[1]

    def fragmentation(self, cap: Capacity, nodes: IntArray) -> FloatArray:
        """Expected fragmentation of `nodes` now, in milli-GPU."""
        mix = self.mix(cap.table)

        def compute(stale: IntArray) -> FloatArray:
            return mix.frag(cap.free_milli[stale], cap.free_cpu[stale], cap.table.model[stale])

        if nodes.size <= _DIRECT:  # checking the memo would cost as much as computing
            return compute(nodes)
        if self._before is None or not self._before.fits(cap):
            self._before = _NodeMemo(cap)
        return self._before.get(cap, nodes, compute)

    def gradient(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        """Increase of expected fragmentation if one worker of `shape` lands on each node
        (on its best device for a share); +inf where it does not fit."""
        mix = self.mix(cap.table)
        r = shape.resources
        if r.fractional:
            rows, free, cpu = _share_states(cap, shape, nodes)
        else:
            rows, free = np.arange(nodes.size), cap.free_milli[nodes]
            if r.gpus:
                whole = free == MILLI_PER_GPU
                free = np.where(whole & (np.cumsum(whole, axis=1) <= r.gpus), 0, free)
            cpu = cap.free_cpu[nodes] - r.cpu_milli
        model = cap.table.model[nodes]
        if nodes.size <= _DIRECT:  # one batch for before and after: half the numpy calls
            both = mix.frag(np.concatenate([cap.free_milli[nodes], free]),
                            np.concatenate([cap.free_cpu[nodes], cpu]),
                            np.concatenate([model, model[rows]]))
            before, values = both[: nodes.size], both[nodes.size :]
        else:
            before, values = self.fragmentation(cap, nodes), mix.frag(free, cpu, model[rows])
        if r.fractional:
            after = np.full(nodes.shape, np.inf)
            np.minimum.at(after, rows, values)  # a share: the best device of each node
        else:  # one row per node (`rows` is 0..n-1): the minimum of inf and v is v
            after = values
        # Equal in exact arithmetic must stay equal: F is a weighted sum whose rounding depends
        # on the order of its terms, and ties between nodes go to node order (first fit), which
        # FGD depends on (random tie-breaking costs it 4-5 points of allocation).
        return np.round(after - before, _DECIMALS)

    def score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        self.mix(cap.table)
        if nodes.size <= _DIRECT:
            return self._score_by_state(cap, shape, nodes)
        r = shape.resources
        key = (r.cpu_milli, r.gpus, r.gpu_milli, r.gpu_memory_mib)
        memo = self._scores.pop(key, None)
        if memo is None or not memo.fits(cap):
            memo = _NodeMemo(cap)
        self._scores[key] = memo  # now the most recent
        if len(self._scores) > _KEYS:
            del self._scores[next(iter(self._scores))]
        return memo.get(cap, nodes, lambda stale: self._score(cap, shape, stale))

    def _score_by_state(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        """`_score` for a few nodes (the placer re-scoring the ones that just changed), through
        a memo keyed by everything the score reads of a node: its model and device memory, and
        what is free on it (`Capacity.state_of`). A pool of thousands of nodes passes through
        few distinct states (empty, one GPU used, ...), so most small batches need no numpy at
        all. Exact: a node's score never depends on the other nodes scored with it."""
        r, table = shape.resources, cap.table
        request = (r.cpu_milli, r.gpus, r.gpu_milli, r.gpu_memory_mib)
        memo = self._by_state
        out = np.empty(nodes.size, dtype=np.float64)
        missing: list[int] = []
        keys: list[tuple[object, ...]] = []
        for k, n in enumerate(nodes.tolist()):
            key = (request, int(table.model[n]), int(table.gpu_memory[n]), *cap.state_of(n))
            value = memo.get(key)
            if value is None:
                missing.append(k)
                keys.append(key)
            else:
                out[k] = value
        if missing:
            rows = np.array(missing, dtype=np.int64)
            values = self._score(cap, shape, nodes[rows])
            out[rows] = values
            if len(memo) + len(keys) > _STATES:  # bounded: start over rather than grow
                memo.clear()
            memo.update(zip(keys, values.tolist(), strict=True))
        return out

    def _score(self, cap: Capacity, shape: Shape, nodes: IntArray) -> FloatArray:
        return self._sigmoid(self.gradient(cap, shape, nodes))

    def _sigmoid(self, delta: FloatArray) -> FloatArray:
        with np.errstate(over="ignore"):
            score = 1.0 / (1.0 + np.exp(delta / self.scale))
        if self.levels > 0:
            score = np.floor(score * self.levels) / self.levels
        return np.asarray(score, dtype=np.float64)

    def score_one(self, cap: Capacity, shape: Shape, node: int) -> float:
        """`score` of one node that one worker of `shape` fits on, in plain Python: the same
        float (`plugins.one_node`). The sigmoid is numpy's, once per distinct gradient (its
        `exp` may differ from `math.exp` by an ulp); a pool's nodes have few."""
        return self.sigmoid_one(self.gradient_one(cap, shape, node))

    def sigmoid_one(self, delta: float) -> float:
        """The score of one gradient: numpy's, remembered."""
        score = self._sigmoids.get(delta)
        if score is None:
            if len(self._sigmoids) >= _STATES:  # bounded: start over rather than grow
                self._sigmoids.clear()
            score = self._sigmoids[delta] = float(self._sigmoid(np.array([delta]))[0])
        return score

    def gradient_one(self, cap: Capacity, shape: Shape, node: int) -> float:
        """`gradient` of one node that one worker of `shape` fits on, in plain Python."""
        mix = self.mix(cap.table).plain
        free = cap.free_of(node)
        model = cap.table.model_list[node]
        r = shape.resources
        cpu = free.cpu - r.cpu_milli
        before = mix.frag(free.milli, free.cpu, model)
        if r.fractional:
            milli, mem = device_need_one(r, cap.table.gpu_memory_list[node])
            after, seen = np.inf, set()
            for d, (fm, fg) in enumerate(zip(free.milli, free.mem, strict=True)):
                if fm >= milli and fg >= mem and fm not in seen:  # one device per free value
                    seen.add(fm)
                    state = list(free.milli)
                    state[d] = fm - milli
                    after = min(after, mix.frag(state, cpu, model))
        else:
            state = free.milli
            if r.gpus:  # the first `gpus` untouched devices are taken
                state, left = list(state), r.gpus
                for d, fm in enumerate(state):
                    if fm == MILLI_PER_GPU and left:
                        state[d], left = 0, left - 1
            after = mix.frag(state, cpu, model)
        return one_node.round_like_numpy(after - before, _DECIMALS)

    def pick(self, cap: Capacity, shape: Shape, node: int) -> tuple[int, ...] | None:
        """Whole GPUs: the lowest-index untouched devices (all full ones are alike). A share:
        the device whose use raises fragmentation the least; ties go to the device with the
        least free share (best fit), then the lowest index. One node: plain Python
        (`plugins.one_node`), with numpy's rounding."""
        r = shape.resources
        free = cap.free_of(node)
        if r.gpus:
            whole = [d for d, fm in enumerate(free.milli) if fm == MILLI_PER_GPU]
            return tuple(whole[: r.gpus]) if len(whole) >= r.gpus else None
        if not r.fractional:
            return ()
        milli, mem = device_need_one(r, cap.table.gpu_memory_list[node])
        mix, model = self.mix(cap.table).plain, cap.table.model_list[node]
        cpu = free.cpu - r.cpu_milli
        best: tuple[float, int, int] | None = None
        for d, (fm, fg) in enumerate(zip(free.milli, free.mem, strict=True)):
            if fm >= milli and fg >= mem:
                state = list(free.milli)
                state[d] = fm - milli
                key = (one_node.round_like_numpy(mix.frag(state, cpu, model), _DECIMALS), fm, d)
                if best is None or key < best:
                    best = key
        return None if best is None else (best[2],)


def _share_states(cap: Capacity, shape: Shape, nodes: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Node states after a share lands on each device where it fits: (row in `nodes`, free
    milli per device, free CPU) per candidate.

    Devices with the same free share give the same node state up to order, so only the first of
    each distinct free value per node is a candidate.
    """
    r = shape.resources
    milli, mem = device_need(cap.table, r, nodes)
    free = cap.free_milli[nodes]
    fits = (free >= milli[:, None]) & (cap.free_mem[nodes] >= mem[:, None])
    row, dev = np.nonzero(fits)
    _, first = np.unique(row * (MILLI_PER_GPU + 1) + free[row, dev], return_index=True)
    row, dev = row[first], dev[first]
    states = free[row].copy()
    states[np.arange(row.size), dev] -= milli[row]
    return row, states, cap.free_cpu[nodes][row] - r.cpu_milli


BALANCED_FGD: Final = "balanced-fgd"


@register(BALANCED_FGD)
class BalancedFragmentation(Fragmentation):
    """corral's fragmentation score: FGD plus GPUs *stranded* by a shortage of CPU.

    FGD sees CPU only as a threshold: a task type counts a node's free GPUs as fragment once the
    node's free CPU drops below that type's request. Until then, taking CPU from a node costs
    nothing, so CPU-heavy tasks (CPU-only ones, or shares with 12 cores) drain the CPU of nodes
    with few cores per GPU, and those GPUs are lost later, all at once. The stranded term makes
    that cost continuous:

        stranded(node) = max(0, free GPU milli - free CPU milli x r)

    where r is the GPU milli typical GPU tasks ask for per milli-core. A node keeps enough CPU for
    its free GPUs when free CPU x r covers them; every GPU milli beyond that is counted as
    fragment. The gradient then steers CPU-heavy work to CPU-rich nodes before any threshold is
    crossed.

    Worked example: typical GPU tasks ask for 1000 milli-GPU per 8000 milli-CPU (r = 0.125). A
    node with 4 free GPUs and 16 free cores strands 4000 - 16000 x 0.125 = 2000 milli; one with
    4 free GPUs and 64 free cores strands nothing. A CPU-only task of 8 cores adds 1000 milli of
    stranding on the first node and none on the second, so it goes to the second.
    """

    name: ClassVar[str] = BALANCED_FGD

    def __init__(
        self,
        seed: int = 0,
        workload: Iterable[object] | None = None,
        scale_milli: float = 1000.0,
        levels: int = 0,
        balance: float = 1.0,
    ) -> None:
        super().__init__(seed, workload, scale_milli, levels, balance)


#: The plugins that score by expected fragmentation and take a `workload` mix.
FRAGMENTATION_PLUGINS: Final = (FGD, BALANCED_FGD)
