"""The cluster as arrays: a static node table and the free capacity a cycle works on.

A cycle at 10,000 nodes cannot afford a Python object per GPU, so nodes are columns:
`NodeTable` holds what does not change during a cycle (model, price, topology codes, sizes),
`Capacity` what does (free milli-GPU and GPU memory per device, free CPU and RAM per node).

`Capacity` keeps a change log of node indices. Score caches in `placement` read it to
re-score only the nodes that changed since they last looked, instead of all nodes per workload.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from corral.core.model import MILLI_PER_GPU, Node, TopologyLevel, WorkerAssignment

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _codes(values: Sequence[str]) -> tuple[IntArray, tuple[str, ...]]:
    names = tuple(sorted(set(values)))
    lookup = {n: i for i, n in enumerate(names)}
    return np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values)), names


@dataclass(frozen=True)
class NodeTable:
    """Static columns of the pool, nodes sorted by id (the order breaks every tie)."""

    nodes: tuple[Node, ...]
    index: dict[str, int]
    gpu_count: IntArray
    gpu_memory: IntArray
    cpu: IntArray
    ram: IntArray
    price: FloatArray
    schedulable: BoolArray
    model: IntArray
    model_names: tuple[str, ...]
    provider: IntArray
    provider_names: tuple[str, ...]
    kind: IntArray
    kind_names: tuple[str, ...]
    # Topology domains, each code qualified by its parents so "rack-1" in two zones differ.
    domains: tuple[IntArray, ...]  # indexed by TopologyLevel (NVLINK..REGION); ANY is all zeros
    max_gpus: int

    @classmethod
    def build(cls, nodes: Sequence[Node]) -> NodeTable:
        ordered = tuple(sorted(nodes, key=lambda n: n.id))
        model, model_names = _codes([n.gpu_model for n in ordered])
        provider, provider_names = _codes([n.provider for n in ordered])
        kind, kind_names = _codes([str(n.capacity_kind) for n in ordered])
        region = [f"{n.provider}/{n.region}" for n in ordered]
        zone = [f"{r}/{n.zone}" for r, n in zip(region, ordered, strict=True)]
        # A node without an NVLink domain is a domain of its own.
        # A node without a rack sits in the rack of its NVLink domain (an NVLink domain never
        # spans racks), or alone.
        rack = [f"{z}/{n.rack or ('#nvl:' + n.nvlink_domain if n.nvlink_domain else '#' + n.id)}"
                for z, n in zip(zone, ordered, strict=True)]
        nvl = [f"{r}/{n.nvlink_domain or '#' + n.id}" for r, n in zip(rack, ordered, strict=True)]
        domains = (
            *tuple(_codes(v)[0] for v in (nvl, rack, zone, region)),
            np.zeros(len(ordered), dtype=np.int64),
        )

        def col(f: str) -> IntArray:
            return np.array([getattr(n, f) for n in ordered], dtype=np.int64)

        return cls(
            nodes=ordered,
            index={n.id: i for i, n in enumerate(ordered)},
            gpu_count=col("gpu_count"),
            gpu_memory=col("gpu_memory_mib"),
            cpu=col("cpu_milli"),
            ram=col("memory_mib"),
            price=np.array([n.price_per_gpu_hour for n in ordered], dtype=np.float64),
            schedulable=np.array([n.schedulable for n in ordered], dtype=np.bool_),
            model=model,
            model_names=model_names,
            provider=provider,
            provider_names=provider_names,
            kind=kind,
            kind_names=kind_names,
            domains=domains,
            max_gpus=int(max((n.gpu_count for n in ordered), default=0)),
        )

    def __len__(self) -> int:
        return len(self.nodes)

    def domain(self, level: TopologyLevel) -> IntArray:
        return self.domains[int(level)]

    @cached_property
    def model_list(self) -> list[int]:
        """`model` as Python ints, for code that reads one node at a time."""
        return list(self.model.tolist())

    @cached_property
    def gpu_memory_list(self) -> list[int]:
        """`gpu_memory` as Python ints, for code that reads one node at a time."""
        return list(self.gpu_memory.tolist())

    def model_code(self, name: str) -> int | None:
        try:
            return self.model_names.index(name)
        except ValueError:
            return None


class NodeFree(NamedTuple):
    """What is free on one node (`Capacity.free_of`): CPU, RAM, untouched devices, and share
    and memory per device (-1 past the node's GPU count). Read it, never change it."""

    cpu: int
    ram: int
    whole: int
    milli: list[int]
    mem: list[int]


class Capacity:
    """Free resources per device and node; mutated only through `take` and `give`.

    Devices past a node's `gpu_count` hold -1 so that no request ever fits there.
    """

    def __init__(self, table: NodeTable) -> None:
        n, g = len(table), max(table.max_gpus, 1)
        valid = np.arange(g)[None, :] < table.gpu_count[:, None]
        self.table = table
        self.free_milli: IntArray = np.where(valid, MILLI_PER_GPU, -1).astype(np.int64)
        self.free_mem: IntArray = np.where(valid, table.gpu_memory[:, None], -1).astype(np.int64)
        self.free_cpu: IntArray = table.cpu.copy()
        self.free_ram: IntArray = table.ram.copy()
        self.whole_free: IntArray = table.gpu_count.copy()
        #: free milli-GPU per node (the row sum of free_milli over its devices), kept current
        self.free_sum: IntArray = table.gpu_count * MILLI_PER_GPU
        self.changes: list[int] = []  # node indices, in the order they changed
        self.freed = 0  # how many times capacity was returned (a failed fit may now succeed)
        self.reserved: BoolArray = np.zeros(n, dtype=np.bool_)
        self.reservations: dict[str, list[int]] = {}  # owner workload -> its reserved nodes
        # `state_of` per node, computed when first asked after the node last changed: the score
        # caches of every shape ask for the same few changed nodes, so each is built once
        self._states: list[tuple[int, int, bytes, bytes] | None] = [None] * n
        # `free_of` per node, built and dropped like `_states`
        self._free: list[NodeFree | None] = [None] * n

    # -- mutation ---------------------------------------------------------------------------
    def take(self, node: int, a: WorkerAssignment, cpu: int, ram: int) -> None:
        self._apply(node, a, cpu, ram, -1)

    def give(self, node: int, a: WorkerAssignment, cpu: int, ram: int) -> None:
        self._apply(node, a, cpu, ram, +1)
        self.freed += 1

    def _apply(self, node: int, a: WorkerAssignment, cpu: int, ram: int, sign: int) -> None:
        # Element by element with `.item` and a Python int stored back: numpy's scalar
        # arithmetic (`x[i] += d`) costs ~4x as much, and a cycle applies thousands of these
        # (issue 10). An assignment's devices are distinct.
        fm, fg = self.free_milli, self.free_mem
        delta, mem = sign * a.milli_per_device, sign * a.gpu_memory_mib_per_device
        whole = 0
        for d in a.devices:
            before = fm.item(node, d)
            fm[node, d] = before + delta
            fg[node, d] = fg.item(node, d) + mem
            whole += (before + delta == MILLI_PER_GPU) - (before == MILLI_PER_GPU)
        if whole:
            self.whole_free[node] = self.whole_free.item(node) + whole
        if delta and a.devices:
            self.free_sum[node] = self.free_sum.item(node) + delta * len(a.devices)
        if cpu:
            self.free_cpu[node] = self.free_cpu.item(node) + sign * cpu
        if ram:
            self.free_ram[node] = self.free_ram.item(node) + sign * ram
        self.changes.append(node)
        self._states[node] = self._free[node] = None

    def take_all(self, items: Sequence[tuple[int, WorkerAssignment, int, int]]) -> None:
        """`take` for many (node, assignment, cpu, ram) at once: what adopting a snapshot's
        running work costs is then a few numpy calls, not a few per assignment. Exactly the
        same result (sums commute; the per-node totals are recounted)."""
        if not items:
            return
        dev_node: list[int] = []
        devices: list[int] = []
        milli: list[int] = []
        mem: list[int] = []
        for node, a, _, _ in items:
            for d in a.devices:
                dev_node.append(node)
                devices.append(d)
                milli.append(a.milli_per_device)
                mem.append(a.gpu_memory_mib_per_device)
        nodes = np.fromiter((i[0] for i in items), dtype=np.int64, count=len(items))
        if devices:
            at = (np.array(dev_node, dtype=np.int64), np.array(devices, dtype=np.int64))
            np.subtract.at(self.free_milli, at, np.array(milli, dtype=np.int64))
            np.subtract.at(self.free_mem, at, np.array(mem, dtype=np.int64))
        np.subtract.at(self.free_cpu, nodes,
                       np.fromiter((i[2] for i in items), dtype=np.int64, count=len(items)))
        np.subtract.at(self.free_ram, nodes,
                       np.fromiter((i[3] for i in items), dtype=np.int64, count=len(items)))
        self._recount()
        touched = sorted(set(nodes.tolist()))
        self.changes.extend(touched)
        for node in touched:
            self._states[node] = self._free[node] = None

    def restore(self, free_milli: IntArray, free_mem: IntArray, free_cpu: IntArray,
                free_ram: IntArray, touched: list[int]) -> None:
        """Fresh capacity set to what `take_all` left on this pool before (`warm_adoption`):
        the free arrays it left, the per-node totals recounted, `touched` (the nodes it took
        from, in order) logged as changed."""
        self.free_milli, self.free_mem = free_milli, free_mem
        self.free_cpu, self.free_ram = free_cpu, free_ram
        self._recount()
        self.changes.extend(touched)
        for node in touched:
            self._states[node] = self._free[node] = None

    def _recount(self) -> None:
        """The per-node totals (`whole_free`, `free_sum`) from the free arrays."""
        valid = np.arange(self.free_milli.shape[1])[None, :] < self.table.gpu_count[:, None]
        self.whole_free = np.asarray((self.free_milli == MILLI_PER_GPU).sum(axis=1), dtype=np.int64)
        self.free_sum = np.asarray(np.where(valid, self.free_milli, 0).sum(axis=1), dtype=np.int64)

    def reserve(self, owner: str, nodes: Sequence[int]) -> None:
        """Hold `nodes` for `owner`: nobody else may be placed there until released."""
        self.reservations[owner] = list(nodes)
        self.reserved[list(nodes)] = True
        self.changes.extend(nodes)

    def release(self, owner: str) -> None:
        nodes = self.reservations.pop(owner, [])
        self.reserved[nodes] = False
        self.changes.extend(nodes)
        self.freed += 1

    def blocked_for(self, owner: str) -> BoolArray:
        """Nodes reserved for somebody other than `owner`."""
        if owner not in self.reservations:
            return self.reserved
        mask = self.reserved.copy()
        mask[self.reservations[owner]] = False
        return mask

    @contextmanager
    def scratch(self, nodes: Sequence[int]) -> Iterator[None]:
        """Try changes on `nodes` and undo them on exit, leaving no trace in the change log."""
        idx = sorted(set(nodes))
        saved = [a[idx].copy() for a in self._columns()]
        n_changes, freed = len(self.changes), self.freed
        try:
            yield
        finally:
            for column, values in zip(self._columns(), saved, strict=True):
                column[idx] = values
            for node in idx:
                self._states[node] = self._free[node] = None
            del self.changes[n_changes:]
            self.freed = freed

    def _columns(self) -> tuple[IntArray, ...]:
        return (self.free_milli, self.free_mem, self.free_cpu, self.free_ram, self.whole_free,
                self.free_sum)

    # -- queries ----------------------------------------------------------------------------
    def state_of(self, node: int) -> tuple[int, int, bytes, bytes]:
        """What is free on `node`, as a hashable key: CPU, RAM, and share and memory per device
        (the scores that are memoised by node state add the node's fixed attributes)."""
        state = self._states[node]
        if state is None:
            state = self._states[node] = (
                int(self.free_cpu[node]), int(self.free_ram[node]),
                self.free_milli[node].tobytes(), self.free_mem[node].tobytes())
        return state

    def free_of(self, node: int) -> NodeFree:
        """What is free on `node` as Python ints and lists, for code that scores one node at a
        time (`plugins.one_node`): indexing numpy arrays element by element costs more than
        the arithmetic it feeds."""
        free = self._free[node]
        if free is None:
            free = self._free[node] = NodeFree(
                int(self.free_cpu[node]), int(self.free_ram[node]), int(self.whole_free[node]),
                self.free_milli[node].tolist(), self.free_mem[node].tolist())
        return free

    def total_free_milli(self) -> int:
        return int(np.clip(self.free_milli, 0, None).sum())

    def consistent(self) -> bool:
        """No device, node CPU or RAM below zero (used by tests and assertions)."""
        valid = np.arange(self.free_milli.shape[1])[None, :] < self.table.gpu_count[:, None]
        ok_dev = bool(
            (self.free_milli[valid] >= 0).all() and (self.free_milli[valid] <= MILLI_PER_GPU).all()
        )
        ok_mem = bool((self.free_mem[valid] >= 0).all())
        ok_sum = bool((self.free_sum == np.where(valid, self.free_milli, 0).sum(axis=1)).all())
        ok_whole = bool((self.whole_free == (self.free_milli == MILLI_PER_GPU).sum(axis=1)).all())
        return (ok_dev and ok_mem and ok_sum and ok_whole
                and bool((self.free_cpu >= 0).all() and (self.free_ram >= 0).all()))
