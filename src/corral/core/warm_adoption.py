"""The running work a cycle adopts, kept between cycles (`KeptAdoption`, held by `WarmStart`)
and brought up to date from the running work that started or stopped since, so that adopting
costs what changed, not everything that runs.

Why: at 10,000 nodes about 21,000 workloads run. Adopting them all (`Statement.adopt_all`: the
capacity each holds, the use it adds to its queue) was ~12% of a live-loop cycle, although
between two cycles a few hundred start or end.

What is kept is what adoption leaves behind before any action runs: the free-capacity arrays,
how many adopted assignments sit on each node, each queue's adopted use (GPU, CPU and RAM sums,
GPU share per model), and the adopted workloads in id order. All are integers, so applying the
changes gives exactly the sums of adopting everything again; the cycle receives copies (its
actions change them). Kept only while the pool's nodes (ids, order, hardware) are the ones it
was made on and queue use is counted in integers (no `share_units`); otherwise the cycle adopts
everything and the kept copy is made again. `tests/core/test_warm_start.py` compares the whole
opening and the plan, warm against cold.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from corral.core.model import Workload
from corral.core.snapshot import IntArray, NodeTable
from corral.core.statement import QueueUse, Statement

_ID = attrgetter("id")


@dataclass
class KeptAdoption:
    """Adoption's outcome on one pool, kept from the last cycle (see the module docstring)."""

    node_ids: list[str]
    model_names: tuple[str, ...]
    columns: tuple[IntArray, ...]  # the pool's hardware the free arrays were made from
    free: tuple[IntArray, IntArray, IntArray, IntArray]  # milli, memory, CPU, RAM
    on_node: IntArray  # adopted assignments per node (a node with any was touched)
    use: dict[str, QueueUse]
    adopted: list[Workload]  # in id order

    @classmethod
    def of(cls, stmt: Statement, adopted: list[Workload]) -> KeptAdoption | None:
        """What `stmt` holds right after `adopt_all` adopted `adopted` (in id order); None
        when queue use is not integer sums."""
        if stmt.adopted_use is None:
            return None
        cap, table = stmt.cap, stmt.cap.table
        on_node = np.bincount(np.asarray(stmt.adopted_nodes, dtype=np.int64),
                              minlength=len(table)).astype(np.int64)
        return cls(list(table.index), table.model_names, _columns(table),
                   (cap.free_milli.copy(), cap.free_mem.copy(), cap.free_cpu.copy(),
                    cap.free_ram.copy()),
                   on_node, stmt.adopted_use, list(adopted))

    def fits(self, table: NodeTable) -> bool:
        """Made on this pool: the same node ids in the same order, the same hardware."""
        return (len(table) == len(self.node_ids) and list(table.index) == self.node_ids
                and table.model_names == self.model_names and all(np.array_equal(a, b)
                        for a, b in zip(_columns(table), self.columns, strict=True)))

    def advance(self, stopped: Iterable[Workload], started: Iterable[Workload],
                table: NodeTable) -> None:
        """Running work that stopped (objects of the last state) no longer holds anything;
        running work that started (objects new in this state) does."""
        index = table.index
        gone = [w for w in stopped if _on_pool(w, index)]
        new = [w for w in started if _on_pool(w, index)]
        self._count(gone, table, -1)
        self._count(new, table, +1)
        if len(gone) > 64:
            ids = {w.id for w in gone}
            self.adopted = [w for w in self.adopted if w.id not in ids]
        else:
            for w in gone:
                del self.adopted[bisect_left(self.adopted, w.id, key=_ID)]
        for w in sorted(new, key=_ID):
            insort(self.adopted, w, key=_ID)

    def _count(self, workloads: Sequence[Workload], table: NodeTable, sign: int) -> None:
        if not workloads:
            return
        index, model_names = table.index, table.model_names
        models = table.model_list
        nodes: list[int] = []
        dev_node: list[int] = []
        devices: list[int] = []
        milli: list[int] = []
        mem: list[int] = []
        cpus: list[int] = []
        rams: list[int] = []
        for w in workloads:
            r = w.resources
            use = self.use.get(w.queue)
            if use is None:
                use = self.use[w.queue] = ([0, 0, 0], {})
            totals, per_model = use
            for a in w.assignments:
                node = index[a.node_id]
                nodes.append(node)
                cpus.append(r.cpu_milli)
                rams.append(r.memory_mib)
                share = a.milli_per_device * len(a.devices)
                totals[0] += sign * share
                model = model_names[models[node]]
                per_model[model] = per_model.get(model, 0) + sign * share
                for d in a.devices:
                    dev_node.append(node)
                    devices.append(d)
                    milli.append(a.milli_per_device)
                    mem.append(a.gpu_memory_mib_per_device)
            totals[1] += sign * r.cpu_milli * w.workers
            totals[2] += sign * r.memory_mib * w.workers
        free_milli, free_mem, free_cpu, free_ram = self.free
        at = (np.array(dev_node, dtype=np.int64), np.array(devices, dtype=np.int64))
        # adopting takes (subtracts), so work that stopped gives back (adds)
        np.add.at(free_milli, at, -sign * np.array(milli, dtype=np.int64))
        np.add.at(free_mem, at, -sign * np.array(mem, dtype=np.int64))
        where = np.array(nodes, dtype=np.int64)
        np.add.at(free_cpu, where, -sign * np.array(cpus, dtype=np.int64))
        np.add.at(free_ram, where, -sign * np.array(rams, dtype=np.int64))
        np.add.at(self.on_node, where, sign)

    def give(self, stmt: Statement) -> list[Workload] | None:
        """Into a new statement (fresh capacity and book, nothing adopted yet) what adopting
        `self.adopted` would leave; returns them. None, and nothing given, when the book
        counts use in float share units (`QueueBook.add_totals` refuses every queue alike)."""
        for queue, (totals, per_model) in self.use.items():
            if not stmt.book.add_totals(queue, totals[0], totals[1], totals[2],
                                        per_model.items()):
                return None
        milli, mem, cpu, ram = (a.copy() for a in self.free)
        stmt.cap.restore(milli, mem, cpu, ram, np.flatnonzero(self.on_node).tolist())
        stmt.adopted_from(self.adopted)
        return list(self.adopted)


def _columns(table: NodeTable) -> tuple[IntArray, ...]:
    return (table.gpu_count, table.gpu_memory, table.cpu, table.ram, table.model)


def _on_pool(w: Workload, index: dict[str, int]) -> bool:
    return all(a.node_id in index for a in w.assignments)
