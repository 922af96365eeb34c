"""Statements: speculative allocations and evictions that can be rolled back.

After KAI-Scheduler's statement: an action tries something (evict two workloads, place a gang),
and if the whole thing does not work out it rolls back to a checkpoint, leaving capacity and
queue usage exactly as they were. Nothing leaves the cycle until the plan is built from the
operations that survived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from corral.core.model import WorkerAssignment, Workload
from corral.core.queues import QueueBook
from corral.core.snapshot import Capacity

#: a queue's adopted use: [GPU milli, CPU milli, RAM MiB] and GPU milli per model
QueueUse = tuple[list[int], dict[str, int]]


@dataclass(frozen=True, slots=True)
class Op:
    #: "place"; "evict" (stop work that was running when the cycle began); or "unplace" (take
    #: back a placement made earlier in this cycle: nothing has started, so nothing is lost)
    kind: str
    workload: Workload
    assignments: tuple[WorkerAssignment, ...]
    rule: str = ""
    for_workload: str = ""
    #: "place": the nodes that were reserved for the workload, released by placing it (a
    #: rollback reserves them again)
    released: tuple[int, ...] = ()


class Statement:
    def __init__(self, cap: Capacity, book: QueueBook) -> None:
        self.cap, self.book = cap, book
        self.ops: list[Op] = []
        #: where each workload holds capacity now, in this cycle's view
        self.where: dict[str, tuple[WorkerAssignment, ...]] = {}
        #: the workloads holding capacity now (running since before the cycle, or placed in it)
        self.live: dict[str, Workload] = {}
        self.started: set[str] = set()  # running when the cycle began
        self.applied = 0  # capacity changes so far (who holds what changed when this grew)
        #: told of every change of who holds what: (workload, assignments, +1 or -1)
        self.listeners: list[Callable[[Workload, tuple[WorkerAssignment, ...], int], None]] = []
        #: what `adopt_all` added to each queue (None: added one by one, float share units)
        #: and the node of each adopted assignment: `warm_adoption` keeps them for the next cycle
        self.adopted_use: dict[str, QueueUse] | None = None
        self.adopted_nodes: list[int] = []

    def adopt(self, w: Workload) -> bool:
        """Count an already running workload (from the snapshot). False if its nodes are gone."""
        if any(a.node_id not in self.cap.table.index for a in w.assignments):
            return False
        self._apply(w, w.assignments, +1)
        self.started.add(w.id)
        return True

    def adopt_all(self, workloads: Iterable[Workload]) -> list[Workload]:
        """`adopt` for every running workload of a snapshot, capacity taken in one batch and
        queue use added once per queue (`QueueBook.add_totals`). Returns those adopted; a
        workload whose nodes are gone is left out (orphaned)."""
        index, table, book = self.cap.table.index, self.cap.table, self.book
        model_of = [n.gpu_model for n in table.nodes]
        adopted: list[Workload] = []
        items: list[tuple[int, WorkerAssignment, int, int]] = []
        # queue -> [GPU milli, CPU, RAM, {model: milli}] of its running work
        per_queue: dict[str, QueueUse] = {}
        for w in workloads:
            try:
                nodes = [index[a.node_id] for a in w.assignments]
            except KeyError:
                continue
            r = w.resources
            cpu, ram = r.cpu_milli, r.memory_mib
            sums = per_queue.get(w.queue)
            if sums is None:
                sums = per_queue[w.queue] = ([0, 0, 0], {})
            totals, models = sums
            for node, a in zip(nodes, w.assignments, strict=True):
                items.append((node, a, cpu, ram))
                share = a.milli_per_device * len(a.devices)
                totals[0] += share
                model = model_of[node]
                models[model] = models.get(model, 0) + share
            totals[1] += cpu * w.workers
            totals[2] += ram * w.workers
            self.where[w.id] = w.assignments
            self.live[w.id] = w
            self.started.add(w.id)
            adopted.append(w)
        if all(book.add_totals(q, t[0], t[1], t[2], m.items())
               for q, (t, m) in per_queue.items()):
            self.adopted_use = per_queue
        else:
            for w in adopted:  # float sums (share units): added one by one, in order
                self._book_add(w, w.assignments, +1)
        self.cap.take_all(items)
        self.adopted_nodes = [i[0] for i in items]
        self.applied += len(adopted)
        return adopted

    def adopted_from(self, adopted: Iterable[Workload]) -> None:
        """Record `adopted` (in id order) as `adopt_all` does, their capacity and queue use
        already counted (`warm_adoption.KeptAdoption.give`)."""
        self.where = {w.id: w.assignments for w in adopted}
        self.live = {w.id: w for w in adopted}
        self.started = set(self.live)
        self.applied += len(self.live)

    def _book_add(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int
                  ) -> None:
        table = self.cap.table
        models: dict[str, int] = {}
        milli = 0
        for a in assignments:
            share = a.milli_per_device * len(a.devices)
            milli += share
            model = table.nodes[table.index[a.node_id]].gpu_model
            models[model] = models.get(model, 0) + share
        self.book.add(w, milli, models.items(), sign)

    def place(self, w: Workload, assignments: tuple[WorkerAssignment, ...]) -> None:
        """Place `w`; whatever was reserved for it is released, whichever action placed it."""
        if w.id in self.where:  # a bug in an action, never an expected outcome
            raise ValueError(f"{w.id} is placed already")
        released = tuple(self.cap.reservations.get(w.id, ()))
        if released:
            self.cap.release(w.id)
        self._apply(w, assignments, +1)
        self.ops.append(Op("place", w, assignments, released=released))

    def remove(self, w: Workload, rule: str, for_workload: str) -> None:
        """Free what `w` holds: an eviction if it was running, else an undone placement."""
        assignments = self.where[w.id]
        self._apply(w, assignments, -1)
        kind = "evict" if w.id in self.started else "unplace"
        self.ops.append(Op(kind, w, assignments, rule, for_workload))

    def unremove(self, workload_id: str, since: int) -> None:
        """Cancel the removal of `workload_id` recorded after checkpoint `since`; it keeps its
        place. Capacity effects commute, so an op may leave from the middle of the list."""
        index = next(i for i in range(since, len(self.ops))
                     if self.ops[i].kind != "place" and self.ops[i].workload.id == workload_id)
        op = self.ops.pop(index)
        self._apply(op.workload, op.assignments, +1)

    def retag(self, index: int, rule: str, for_workload: str) -> None:
        """Charge the removal at `index` to another rule and requester; capacity unchanged."""
        op = self.ops[index]
        self.ops[index] = Op(op.kind, op.workload, op.assignments, rule, for_workload,
                             op.released)

    def removed_since(self, checkpoint: int) -> list[Op]:
        return [op for op in self.ops[checkpoint:] if op.kind != "place"]

    def outcome(self) -> tuple[dict[str, Op], list[Op]]:
        """Final placements (last place op per workload still standing) and evictions."""
        placed: dict[str, Op] = {}
        evicted: dict[str, Op] = {}
        for op in self.ops:
            if op.kind == "place":
                placed[op.workload.id] = op
            elif op.kind == "unplace":
                placed.pop(op.workload.id, None)
            else:
                # A running workload moved and then evicted again in the same cycle ends
                # evicted, by the last rule: the re-placement is not standing, so the move
                # is not what stopped it (its position in the plan stays the first one's).
                placed.pop(op.workload.id, None)
                evicted[op.workload.id] = op
        return placed, list(evicted.values())

    def checkpoint(self) -> int:
        return len(self.ops)

    def rollback(self, checkpoint: int) -> None:
        while len(self.ops) > checkpoint:
            op = self.ops.pop()
            self._apply(op.workload, op.assignments, -1 if op.kind == "place" else +1)
            if op.released:
                self.cap.reserve(op.workload.id, op.released)

    def fits(self, assignments: tuple[WorkerAssignment, ...], w: Workload) -> bool:
        """Would these exact devices take `w` again now (used to undo needless evictions)?"""
        cap, r = self.cap, w.resources
        need: dict[tuple[int, int], tuple[int, int]] = {}
        host: dict[int, int] = {}
        for a in assignments:
            node = cap.table.index[a.node_id]
            host[node] = host.get(node, 0) + 1
            for d in a.devices:
                m, g = need.get((node, d), (0, 0))
                need[(node, d)] = (m + a.milli_per_device, g + a.gpu_memory_mib_per_device)
        for (node, d), (m, g) in need.items():
            if cap.free_milli[node, d] < m or cap.free_mem[node, d] < g:
                return False
            if m == 1000 and cap.free_milli[node, d] != 1000:
                return False
        return (
            all(
                cap.free_cpu[n] >= k * r.cpu_milli and cap.free_ram[n] >= k * r.memory_mib
                for n, k in host.items()
            )
            and not cap.blocked_for(w.id)[list(host)].any()
        )

    def _apply(self, w: Workload, assignments: tuple[WorkerAssignment, ...], sign: int) -> None:
        self.applied += 1
        table, r = self.cap.table, w.resources
        models: dict[str, int] = {}
        milli = 0
        for a in assignments:
            node = table.index[a.node_id]
            if sign > 0:
                self.cap.take(node, a, r.cpu_milli, r.memory_mib)
            else:
                self.cap.give(node, a, r.cpu_milli, r.memory_mib)
            share = a.milli_per_device * len(a.devices)
            milli += share
            model = table.nodes[node].gpu_model
            models[model] = models.get(model, 0) + share
        self.book.add(w, milli, models.items(), sign)
        for listener in self.listeners:
            listener(w, assignments, sign)
        if sign > 0:
            self.where[w.id] = assignments
            self.live[w.id] = w
        else:
            self.where.pop(w.id, None)
            self.live.pop(w.id, None)
