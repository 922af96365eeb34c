"""The cluster in memory between cycles, kept current from the store's change feed.

    start / new leader:  reload()   every active workload, its current placements, every node
    every cycle:         refresh()  only rows whose change_seq is above the last one read
                                    (corral.store.changes), applied as deltas

Why: at 10,000 nodes and 100,000 active workloads, reading and decoding everything every
second costs seconds per cycle; what changes per cycle is usually a handful of rows. The
incremental state is the same as a full reload (`tests/control/test_live_state.py` compares them
after random histories), because every write to a workload or node stamps its row and no row
is ever deleted: a workload that ends is seen once more, in its final state, and dropped.

It also holds the parsed form of each active workload (its spec, and the core `Workload` it
becomes while pending or running), so a cycle decodes only what is new.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterable

from sqlalchemy import Connection, func, select

from corral.control.snapshot import Snapshot, SpecCache
from corral.core.model import (
    ClusterState,
    Node,
    Queue,
    QueueUsage,
    WorkerAssignment,
    Workload,
    WorkloadState,
)
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.changes import RowWrite
from corral.store.schema import NodeRow, WorkloadRow
from corral.store.workloads import WorkloadRecord

__all__ = ["LiveState"]

ACTIVE = frozenset(W.ACTIVE_STATES)
#: noted writes kept for the next refresh at most (beyond: dropped, and read from the store)
MAX_NOTED = 1_000_000
_FIELD_VALUES = operator.attrgetter(*W.WorkloadRecord.__slots__)
_FIELD_AT = {f: i for i, f in enumerate(W.WorkloadRecord.__slots__)}
_ID_AT, _VERSION_AT = _FIELD_AT["id"], _FIELD_AT["version"]
HOLDING = frozenset(W.HOLDING_STATES)
Assignments = tuple[WorkerAssignment, ...]


class LiveState:
    """Active workloads (by id, in submission order), the placements of their current attempts,
    nodes and queues. `generation` grows with every change seen: a cycle whose inputs have the
    same generation as the last one's plans on the same state."""

    def __init__(self, specs: SpecCache | None = None) -> None:
        self.specs = specs or SpecCache()
        self.records: dict[str, WorkloadRecord] = {}
        self.assignments: dict[str, Assignments] = {}  # holding rows' current attempt
        self.nodes: dict[str, Node] = {}  # every node ever known, inactive ones included
        self.active_nodes: dict[str, Node] = {}
        self.queues: tuple[Queue, ...] = ()
        self.generation = 0
        self.loaded = False
        self._workload_seq = 0
        self._node_seq = 0
        self._pending: dict[str, Workload] = {}  # core form of each workload, while pending
        self._running: dict[str, tuple[int, Workload]] = {}  # by id: (version, core form)
        self._wakes: tuple[int, list[float]] | None = None  # (generation, sorted moments)
        #: ids of rows with a stop request, and of scheduled/starting rows: what act looks at
        self.stopping: set[str] = set()
        self.launching: set[str] = set()
        self._deadlines: tuple[int, list[tuple[float, str]]] | None = None
        #: ids of workloads that changed since the reconciler last took them (`take_dirty`);
        #: None: everything (a reload), so the next reconcile looks at every row
        self.dirty: set[str] | None = None
        #: stored spec bodies by text: equal bodies decoded once and shared by their records
        self.bodies = W.SpecBodies()
        #: placements this process just wrote (`placed`), used instead of reading them back
        self._written: dict[str, tuple[int, Assignments]] = {}
        #: workload rows this process committed (`wrote`), used instead of reading them back
        self._noted: list[RowWrite] = []
        #: refreshes that found a noted write not chaining from the held row, and read again
        self.read_back = 0

    # -- reading the store ---------------------------------------------------------------------

    def reload(self, conn: Connection) -> None:
        """Forget everything and read it all (start, new leader, or a store that went back)."""
        self._workload_seq = W.last_change(conn)
        self._node_seq = 0
        self._noted = []  # all of it is read now
        self.records = {r.id: r for r in W.load_active(conn, self.bodies)}
        self._written = {}
        self.stopping = {r.id for r in self.records.values() if r.stop_reason is not None}
        self.launching = {r.id for r in self.records.values()
                          if r.state in ("scheduled", "starting")}
        placed = W.current_assignments(conn)
        self.assignments = {wid: a for (wid, attempt), a in placed.items()
                            if wid in self.records and self.records[wid].attempt == attempt}
        self.nodes, self.active_nodes = {}, {}
        self._read_nodes(conn)
        self.queues = tuple(P.list_queues(conn))
        self._pending, self._running = {}, {}
        self.specs.retain(set(self.records))
        self.generation += 1
        self.loaded = True
        self.dirty = None

    def refresh(self, conn: Connection, *, queues: bool = True) -> set[str]:
        """Apply what was written since the last read; returns the workload ids that changed.
        `queues=False` leaves the queues as last read (they are not in the feed): for a caller
        that reads them again before it next uses them."""
        if not self.loaded:
            self.reload(conn)
            return set(self.records)
        # the feed's heads first (one indexed max per table): a step refreshes after each of
        # its stages, and most stages write nothing, so most refreshes find nothing to read
        workload_head, node_head = _feed_heads(conn)
        changed: set[str] = set()
        if workload_head != self._workload_seq:
            rows, last = self._changed(conn, workload_head)
            if last < self._workload_seq:  # the store was replaced under us
                self.reload(conn)
                return set(self.records)
            self._workload_seq = last
            changed = self._apply(conn, rows)
            if self.dirty is not None:
                self.dirty |= changed
        else:
            self._written = {}  # as `_apply` does: a hint lives until the next refresh only
        nodes_changed = node_head != self._node_seq and self._read_nodes(conn)
        read = tuple(P.list_queues(conn)) if queues else self.queues  # not in the feed
        if changed or nodes_changed or read != self.queues:
            self.queues = read
            self.generation += 1
        return changed

    def wrote(self, writes: list[RowWrite]) -> None:
        """What a committed transaction of this process wrote to workloads (`Store.subscribe`):
        the next refresh rebuilds those rows from it instead of reading them back. Called on
        the committing thread; a write lost here is read from the store instead."""
        if len(self._noted) + len(writes) > MAX_NOTED:  # nobody refreshes (a standby): drop
            self._noted = []
            return
        self._noted.extend(writes)

    def _changed(self, conn: Connection, head: int) -> tuple[list[WorkloadRecord], int]:
        """The rows written since the last read: those this process wrote (noted, up to the
        feed's `head`) rebuilt from what was held and what was written, the rest read.

        Sound because every noted statement committed, its number is its rows' change number
        until another write, and it wrote every row it names guarded by their version: a row
        whose number is a noted one was last written by that statement. A row written since by
        anyone else carries another number and is read; a version that does not chain from the
        held record (a write this process did not note came between) reads all again."""
        after = self._workload_seq
        noted, self._noted = self._noted, []
        self._noted = [n for n in noted if n.stamp > head] + self._noted  # later: next time
        usable = [n for n in noted if after < n.stamp <= head]
        if not usable:
            return W.changed_since(conn, after, self._known_spec, self.bodies)
        stamps = {n.stamp for n in usable}
        rows, last = W.changed_since(conn, after, self._known_spec, self.bodies,
                                     skip_stamps=stamps)
        read = {r.id for r in rows}
        built = _rebuild(self.records, [n for n in usable if n.id not in read])
        if built is None:
            self.read_back += 1
            return W.changed_since(conn, after, self._known_spec, self.bodies)
        return rows + built, max(last, max(stamps))

    def _apply(self, conn: Connection, rows: Iterable[WorkloadRecord]) -> set[str]:
        changed: set[str] = set()
        refetch: list[str] = []
        appended_out_of_order = False
        last_seq = next(reversed(self.records.values())).seq if self.records else 0
        for r in rows:
            old = self.records.get(r.id)
            if old is not None and old == r:
                continue
            changed.add(r.id)
            if r.state not in ACTIVE:
                self._forget(r.id)
                continue
            if old is None:
                appended_out_of_order |= r.seq < last_seq
                last_seq = max(last_seq, r.seq)
            self.records[r.id] = r
            _mark(self.stopping, r.id, r.stop_reason is not None)
            _mark(self.launching, r.id, r.state in ("scheduled", "starting"))
            if r.state not in HOLDING:
                self.assignments.pop(r.id, None)
            elif not _same_attempt_held(old, r) or r.id not in self.assignments:
                # a holding attempt's placements are written once, with its move to
                # scheduled (apply), and every return to pending starts a new attempt: only a
                # newly held attempt has placements to learn
                written = self._written.pop(r.id, None)
                if written is not None and written[0] == r.attempt:
                    self.assignments[r.id] = written[1]
                else:
                    refetch.append(r.id)
        self._written = {}
        if appended_out_of_order:
            self.records = dict(sorted(self.records.items(), key=lambda kv: kv[1].seq))
        if refetch:
            placed = W.current_assignments(conn, refetch)
            for wid in refetch:
                self.assignments[wid] = placed.get((wid, self.records[wid].attempt), ())
        return changed

    def _known_spec(self, workload_id: str) -> dict[str, object] | None:
        held = self.records.get(workload_id)
        return None if held is None else held.spec

    def placed(self, written: Iterable[tuple[str, int, Assignments]]) -> None:
        """Placements this process committed (workload, attempt, assignments): the next
        refresh takes them from here instead of reading them back. Only a hint: a row seen at
        another attempt is read from the store."""
        self._written.update((wid, (attempt, tuple(a))) for wid, attempt, a in written)

    def _forget(self, workload_id: str) -> None:
        self.records.pop(workload_id, None)
        self.stopping.discard(workload_id)
        self.launching.discard(workload_id)
        self.assignments.pop(workload_id, None)
        self._pending.pop(workload_id, None)
        self._running.pop(workload_id, None)
        self.specs.forget(workload_id)

    def _read_nodes(self, conn: Connection) -> bool:
        rows, last = P.nodes_changed_since(conn, self._node_seq)
        self._node_seq = last
        for node, active in rows:
            self.nodes[node.id] = node
            if active:
                self.active_nodes[node.id] = node
            else:
                self.active_nodes.pop(node.id, None)
        if rows:
            self.active_nodes = dict(sorted(self.active_nodes.items()))
        return bool(rows)

    def take_dirty(self) -> set[str] | None:
        """The ids changed since the last call (None: every row, after a reload); resets."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    @property
    def nodes_version(self) -> int:
        """Changes when any node changes (the feed's number of the last node write read)."""
        return self._node_seq

    # -- the core's view -----------------------------------------------------------------------

    def core_pending(self, record: WorkloadRecord) -> Workload:
        w = self._pending.get(record.id)
        if w is None:
            w = self._pending[record.id] = self.specs.core(record)
        return w

    def core_running(self, record: WorkloadRecord, now: float) -> Workload:
        """The record as running on its current attempt's assignments."""
        hit = self._running.get(record.id)
        if hit is not None and hit[0] == record.version:
            return hit[1]
        # straight from the spec's unit: a held row needs no pending form (one copy, and one
        # object fewer per running workload)
        w = self.specs.core(
            record, state=WorkloadState.RUNNING,
            started_at=record.started_at if record.started_at is not None else now,
            assignments=self.assignments.get(record.id, ()))
        self._pending.pop(record.id, None)
        if record.started_at is not None:  # else it depends on `now`: not kept
            self._running[record.id] = (record.version, w)
        return w

    def snapshot(self, now: float, usage: tuple[QueueUsage, ...] = ()) -> Snapshot:
        """What `corral.control.snapshot.load_snapshot` reads at `now`, from memory."""
        workloads: list[Workload] = []
        backoff: set[str] = set()
        for r in self.records.values():
            if r.state == "pending":
                if r.not_before > now:
                    backoff.add(r.id)
                else:
                    workloads.append(self.core_pending(r))
            elif r.stop_reason is None:
                workloads.append(self.core_running(r, now))
        state = ClusterState(nodes=tuple(self.active_nodes.values()), queues=self.queues,
                             workloads=tuple(workloads), usage=usage)
        # the records as planned on (apply re-checks their versions); no separate map of
        # versions: nothing read it, and it was one more 100,000-entry table alive in the plan
        return Snapshot(state, dict(self.records), backoff)

    def next_wake(self, now: float) -> float | None:
        """The earliest moment after `now` at which the same state may plan differently: a
        restart backoff ends, or running work passes its min_runtime (it may then be evicted).
        The candidate moments are collected once per generation."""
        if self._wakes is None or self._wakes[0] != self.generation:
            times = []
            for r in self.records.values():
                if r.state == "pending" and r.not_before > 0:
                    times.append(r.not_before)
                elif r.state in HOLDING and r.started_at is not None:
                    min_runtime = self.specs.unit(r).min_runtime_s
                    if min_runtime > 0:
                        times.append(r.started_at + min_runtime)
            self._wakes = (self.generation, sorted(times))
        times = self._wakes[1]
        i = bisect.bisect_right(times, now)
        return times[i] if i < len(times) else None

    def past_deadline(self, now: float) -> list[WorkloadRecord]:
        """Running rows past their max_runtime (jobs) or ttl (interactive) at `now`, without a
        stop request yet. The deadlines are collected once per generation."""
        if self._deadlines is None or self._deadlines[0] != self.generation:
            times = []
            for r in self.records.values():
                if r.state == "running" and r.started_at is not None:
                    spec = self.specs.spec(r)
                    limit = spec.max_runtime if spec.max_runtime is not None else spec.ttl
                    if limit is not None:
                        times.append((r.started_at + limit, r.id))
            self._deadlines = (self.generation, sorted(times))
        out = []
        for at, wid in self._deadlines[1]:
            if at > now:
                break
            due = self.records.get(wid)
            if due is not None and due.stop_reason is None:
                out.append(due)
        return out

    def view(self) -> tuple[dict[str, WorkloadRecord], dict[str, Assignments], dict[str, Node],
                            tuple[Queue, ...]]:
        """What a full reload would read (for comparing the two)."""
        return dict(self.records), dict(self.assignments), dict(self.active_nodes), self.queues


#: the largest change number of any workload and of any node (each an indexed max), built once
_FEED_HEADS = select(select(func.coalesce(func.max(WorkloadRow.change_seq), 0)).scalar_subquery(),
                     select(func.coalesce(func.max(NodeRow.change_seq), 0)).scalar_subquery())


def _feed_heads(conn: Connection) -> tuple[int, int]:
    """The feed's heads for workloads and nodes, in one statement. Equal to the last numbers
    read means the feed has nothing new: no row has a larger number."""
    workloads, nodes = conn.execute(_FEED_HEADS).one()
    return int(workloads), int(nodes)


def _rebuild(held: dict[str, WorkloadRecord], notes: list[RowWrite]
             ) -> list[WorkloadRecord] | None:
    """Each noted row as its writes left it: the held record with each write's values in
    the order of their numbers, each guarded by the version the one before left (None when
    one is not: a row not held, or a write this process did not note came between)."""
    by_id: dict[str, list[RowWrite]] = {}
    for n in notes:
        by_id.setdefault(n.id, []).append(n)
    out = []
    for wid, writes in by_id.items():
        record = held.get(wid)
        if record is None:
            return None
        if len(writes) > 1:
            writes.sort(key=lambda n: n.stamp)
        values = list(_FIELD_VALUES(record))
        version = record.version
        for n in writes:
            if n.version != version:
                return None
            for key, value in n.values.items():
                at = _FIELD_AT.get(key)
                if at is not None:
                    values[at] = value
            version += n.bump
        values[_ID_AT], values[_VERSION_AT] = wid, version
        out.append(WorkloadRecord(*values))
    return out


def _same_attempt_held(old: WorkloadRecord | None, new: WorkloadRecord) -> bool:
    return old is not None and old.state in HOLDING and old.attempt == new.attempt


def _mark(ids: set[str], workload_id: str, member: bool) -> None:
    if member:
        ids.add(workload_id)
    else:
        ids.discard(workload_id)
