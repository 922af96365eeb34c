"""What fits where: vectorised feasibility of one worker shape over many nodes.

A *shape* is everything about a workload that decides where it may go (per-worker resources,
gang size, allowed models, price cap, topology), and nothing that does not (id, queue). Thousands
of pending workloads share a handful of shapes, so feasibility and scores are computed per shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from corral.core.model import MILLI_PER_GPU, TopologyLevel, WorkerResources, Workload
from corral.core.snapshot import BoolArray, Capacity, IntArray, NodeTable

_BIG = np.iinfo(np.int64).max // 4


@dataclass(frozen=True, slots=True)
class Shape:
    resources: WorkerResources
    workers: int = 1
    gpu_models: tuple[str, ...] = ()
    max_price: float | None = None
    topology: TopologyLevel = TopologyLevel.ANY
    allow_cross_region: bool = False
    #: capacity kinds allowed (resolved: `Workload.allowed_capacity`); () = any
    capacity: tuple[str, ...] = ()
    selector: tuple[tuple[str, str], ...] = ()
    min_gpu_memory: int = 0
    #: relative throughput per model (`Workload.throughput`); () = every model alike
    throughput: tuple[tuple[str, float], ...] = ()
    # Shapes key every cache of a cycle and are hashed hundreds of thousands of times.
    _hash: int = field(init=False, repr=False, compare=False)
    #: GPU share of the whole workload as requested (`Workload.total_milli` while it waits)
    milli: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "milli", self.resources.nominal_milli() * self.workers)
        object.__setattr__(
            self,
            "_hash",
            hash(
                (
                    self.resources,
                    self.workers,
                    self.gpu_models,
                    self.max_price,
                    self.topology,
                    self.allow_cross_region,
                    self.capacity,
                    self.selector,
                    self.min_gpu_memory,
                    self.throughput,
                )
            ),
        )

    def __hash__(self) -> int:
        return self._hash

    @property
    def single(self) -> Shape:
        """The same worker, alone and unconstrained by topology (static filters depend only on it)."""
        if self.workers == 1 and self.topology == TopologyLevel.ANY and not self.allow_cross_region:
            return self
        return Shape(self.resources, 1, self.gpu_models, self.max_price, capacity=self.capacity,
                     selector=self.selector, min_gpu_memory=self.min_gpu_memory,
                     throughput=self.throughput)

    @classmethod
    def of(cls, w: Workload) -> Shape:
        return cls(
            w.resources,
            w.workers,
            w.gpu_models,
            w.max_price_per_gpu_hour,
            w.topology,
            w.allow_cross_region,
            tuple(str(k) for k in w.allowed_capacity),
            w.node_selector,
            w.min_gpu_memory_mib if w.resources.gpus else 0,
            w.throughput,
        )

    @property
    def allows_spot(self) -> bool:
        return not self.capacity or "spot" in self.capacity

    def restricted_to(self, capacity: tuple[str, ...]) -> Shape:
        """The same shape on fewer capacity kinds (a moved workload keeps what it had)."""
        kinds = tuple(k for k in (self.capacity or capacity) if k in capacity)
        return Shape(self.resources, self.workers, self.gpu_models, self.max_price,
                     self.topology, self.allow_cross_region, kinds, self.selector,
                     self.min_gpu_memory, self.throughput)

    @property
    def required_level(self) -> TopologyLevel:
        """The loosest domain the gang may span: never across regions unless allowed."""
        if self.topology == TopologyLevel.ANY and not self.allow_cross_region:
            return TopologyLevel.REGION
        return self.topology

    def describe(self) -> str:
        r = self.resources
        if r.gpus:
            per = f"{r.gpus} GPU" + ("s" if r.gpus > 1 else "")
        elif r.gpu_milli:
            per = f"{r.gpu_milli / MILLI_PER_GPU:g} GPU"
        else:
            per = f"{r.gpu_memory_mib} MiB of a GPU"
        models = f" {'/'.join(self.gpu_models)}" if self.gpu_models else ""
        per = per.replace(" GPU", f"{models} GPU", 1) if models else per
        extras = []
        if r.gpus and self.min_gpu_memory:
            extras.append(f"at least {_mib(self.min_gpu_memory)} each")
        if r.gpu_milli and r.gpu_memory_mib:
            extras.append(f"with {_mib(r.gpu_memory_mib)} of its memory")
        if r.cpu_milli:
            extras.append(f"{r.cpu_milli / 1000:g} CPU")
        if r.memory_mib:
            extras.append(f"{_mib(r.memory_mib)} RAM")
        if extras:
            per = f"{per} ({', '.join(extras)})"
        return f"{self.workers} workers x {per}" if self.workers > 1 else per


def _mib(mib: int) -> str:
    return f"{mib / 1024:g} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"


def static_mask(table: NodeTable, shape: Shape) -> BoolArray:
    """Nodes this shape may ever use: schedulable, allowed model, within the price cap, of an
    allowed capacity kind, carrying the selected labels, with enough memory per device."""
    mask = table.schedulable.copy()
    mask &= capacity_mask(table, shape)
    mask &= selector_mask(table, shape)
    if shape.min_gpu_memory:
        mask &= table.gpu_memory >= shape.min_gpu_memory
    if shape.gpu_models:
        codes = [c for m in shape.gpu_models if (c := table.model_code(m)) is not None]
        mask &= np.isin(table.model, np.array(codes, dtype=np.int64))
    if shape.max_price is not None and (shape.resources.gpus or shape.resources.fractional):
        mask &= table.price <= shape.max_price + 1e-12
    return mask


def capacity_mask(table: NodeTable, shape: Shape) -> BoolArray:
    if not shape.capacity or set(table.kind_names) <= set(shape.capacity):
        return np.ones(len(table), dtype=np.bool_)
    codes = [i for i, k in enumerate(table.kind_names) if k in shape.capacity]
    return np.isin(table.kind, np.array(codes, dtype=np.int64))


def selector_mask(table: NodeTable, shape: Shape) -> BoolArray:
    mask = np.ones(len(table), dtype=np.bool_)
    for key, value in shape.selector:
        mask &= np.fromiter((n.label(key) == value for n in table.nodes), dtype=np.bool_,
                            count=len(table))
    return mask


def device_need(table: NodeTable, r: WorkerResources, nodes: IntArray) -> tuple[IntArray, IntArray]:
    """Milli and GPU memory one fractional worker takes on a device of each node."""
    dev_mem = table.gpu_memory[nodes]
    if r.gpu_milli:
        milli = np.full(nodes.shape, r.gpu_milli, dtype=np.int64)
        mem = np.maximum(r.gpu_memory_mib, dev_mem * r.gpu_milli // MILLI_PER_GPU)
    else:
        mem = np.full(nodes.shape, r.gpu_memory_mib, dtype=np.int64)
        milli = np.minimum(MILLI_PER_GPU, -(-mem * MILLI_PER_GPU // np.maximum(dev_mem, 1)))
    return milli, mem


def worker_slots(cap: Capacity, r: WorkerResources, nodes: IntArray) -> IntArray:
    """How many workers of these resources fit on each node now (reservations aside)."""
    by_cpu = cap.free_cpu[nodes] // r.cpu_milli if r.cpu_milli else np.full(nodes.shape, _BIG)
    by_ram = cap.free_ram[nodes] // r.memory_mib if r.memory_mib else np.full(nodes.shape, _BIG)
    if r.gpus:
        by_gpu = cap.whole_free[nodes] // r.gpus
    elif r.fractional:
        milli, mem = device_need(cap.table, r, nodes)
        fm, fg = cap.free_milli[nodes], cap.free_mem[nodes]
        per_dev = np.minimum(fm // milli[:, None], fg // np.maximum(mem[:, None], 1))
        by_gpu = np.where(fm >= 0, np.maximum(per_dev, 0), 0).sum(axis=1)
    else:
        by_gpu = np.full(nodes.shape, _BIG)
    return np.minimum(np.minimum(by_cpu, by_ram), by_gpu).astype(np.int64)


def worker_slots_one(cap: Capacity, r: WorkerResources, node: int) -> int:
    """`worker_slots` of one node, in plain Python (`plugins.one_node`): the same count."""
    free = cap.free_of(node)
    slots = _BIG
    if r.cpu_milli:
        slots = min(slots, free.cpu // r.cpu_milli)
    if r.memory_mib:
        slots = min(slots, free.ram // r.memory_mib)
    if r.gpus:
        slots = min(slots, free.whole // r.gpus)
    elif r.fractional:
        milli, mem = device_need_one(r, cap.table.gpu_memory_list[node])
        per_mem = max(mem, 1)
        slots = min(slots, sum(
            max(min(fm // milli, fg // per_mem), 0)
            for fm, fg in zip(free.milli, free.mem, strict=True) if fm >= 0))
    return slots


def device_need_one(r: WorkerResources, device_memory: int) -> tuple[int, int]:
    """`device_need` for one node whose devices have `device_memory` MiB each."""
    if r.gpu_milli:
        return r.gpu_milli, max(r.gpu_memory_mib, device_memory * r.gpu_milli // MILLI_PER_GPU)
    mem = r.gpu_memory_mib
    return min(MILLI_PER_GPU, -(-mem * MILLI_PER_GPU // max(device_memory, 1))), mem


def empty_slots(table: NodeTable, r: WorkerResources, nodes: IntArray) -> IntArray:
    """Workers of these resources that each node could hold if it were empty."""
    by_cpu = table.cpu[nodes] // r.cpu_milli if r.cpu_milli else np.full(nodes.shape, _BIG)
    by_ram = table.ram[nodes] // r.memory_mib if r.memory_mib else np.full(nodes.shape, _BIG)
    if r.gpus:
        by_gpu = table.gpu_count[nodes] // r.gpus
    elif r.fractional:
        milli, mem = device_need(table, r, nodes)
        per_dev = np.minimum(MILLI_PER_GPU // milli, table.gpu_memory[nodes] // np.maximum(mem, 1))
        by_gpu = per_dev * table.gpu_count[nodes]
    else:
        by_gpu = np.full(nodes.shape, _BIG)
    return np.minimum(np.minimum(by_cpu, by_ram), by_gpu).astype(np.int64)
