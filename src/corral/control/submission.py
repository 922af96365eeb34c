"""Submission: what a new workload must pass before it is stored, and the dry run.

A submission is refused, with the field and the fix, when it names an unknown queue, gives no
command, or can never run on this pool: the core's own diagnosis of the workload alone on the
whole pool (cordons and health ignored, since they pass) says *unresolvable* (no node large
enough, a GPU model nobody offers, a price cap below every offer, a gang larger than any
allowed domain, more than the queue's limit), or no node meets its capacity kinds, node
selector or least GPU memory (`node_constraints`, which names the field). Accepted submissions
are stored with their `Submitted` event in one transaction, before the caller hears "accepted".

Storing goes through one group-committing writer per `Submissions` (`corral.store.group_commit`):
concurrent submissions share a transaction (one INSERT of all their units, one of all their
events, one commit), and each caller returns only after that commit. Under 16 concurrent clients
this replaces 16 threads racing for SQLite's single write lock (and sleeping in its busy
handler) with one writer that commits batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from corral.control import elastic
from corral.control import lifecycle as L
from corral.control.group_ids import GroupIds
from corral.control.progress import LearnedThroughput
from corral.control.service_auth import problems as token_problems
from corral.control.service_auth import token_secret
from corral.control.snapshot import SpecCache, load_snapshot
from corral.control.webhooks import Allowed, destination_problems, notify_notes
from corral.control.webhooks import secret_names as webhook_secrets
from corral.control.workflow import (
    HELD,
    NeverMet,
    dependency_reason,
    explain,
    initial_holds,
)
from corral.core import reasons as R
from corral.core import schedule
from corral.core.config import SchedulerConfig
from corral.core.constraints import FIELD_OF_CONSTRAINT, unmet_constraint
from corral.core.model import ClusterState, Health, Node, Queue, Workload
from corral.core.plan import Plan
from corral.spec import SpecError, WorkloadSpec
from corral.spec.packaging import packaging_notes
from corral.store import Store
from corral.store import groups as G
from corral.store import pool as P
from corral.store import secrets as SEC
from corral.store import workloads as W
from corral.store.group_commit import GroupCommit
from corral.store.workloads import WorkloadRecord

__all__ = ["DryRun", "PoolView", "Submissions", "node_classes", "stored_form", "unit_ids"]

_ID_ATTEMPTS = 5
#: runs in a submission's transaction with its group id (corral.api: the idempotency key)
OnStore = Callable[[Connection, str], None]
#: whether the submitter may see a queue's work (corral.api: `Principal.may_use`)
Visible = Callable[[str], bool]

#: which spec field an unresolvable reason is about, so the error names it
FIELD_OF_REASON: Final = {
    R.NO_NODE_LARGE_ENOUGH: "gpus",
    R.GPU_MODEL_UNAVAILABLE: "gpu_models",
    R.PRICE_CAP_TOO_LOW: "max_price_per_gpu_hour",
    R.GANG_TOO_LARGE: "workers",
    R.QUEUE_LIMIT_TOO_LOW: "gpus",
    R.UNKNOWN_QUEUE: "queue",
    **FIELD_OF_CONSTRAINT,
}


def unit_ids(group_id: str, spec: WorkloadSpec) -> list[str]:
    """A job's id is its group's; a service's replicas are `<group>-r<i>`, an array's tasks
    `<group>-<index>` (CORRAL_ARRAY_INDEX)."""
    if spec.array is not None:
        return [f"{group_id}-{i}" for i in spec.array.indices()]
    if spec.elastic is not None:  # its core gang, then its extras (corral.control.elastic)
        return elastic.unit_ids(group_id, spec)
    if spec.kind != "service":
        return [group_id]
    return [f"{group_id}-r{i}" for i in range(spec.replicas or 1)]


@dataclass(frozen=True)
class PoolView:
    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    loaded_at: float
    #: the pool's change number when read (corral.store.changes): unchanged means same pool
    version: int = 0
    #: one node per class of identical nodes (`node_classes`), cordons and health cleared
    classes: tuple[Node, ...] = ()
    #: what the nodes that may join later depend on, when read (`Submissions.rentable_key`)
    future: object = None

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)


def node_classes(nodes: Sequence[Node]) -> tuple[Node, ...]:
    """One node for each set of nodes that differ only in id, NVLink domain, cordon and health:
    the per-model, per-size summary of the pool that a single worker's "can this ever fit" is
    answered from. Such a worker fits one node or none, so the nodes it could use are the same
    kinds whether there are one or a thousand of each; a gang's answer also depends on how many
    share a domain, and is asked of the whole pool. A 10,000-node pool is tens of classes."""
    seen: dict[tuple[object, ...], Node] = {}
    for n in nodes:
        key = (n.provider, n.gpu_model, n.gpu_count, n.gpu_memory_mib, n.cpu_milli,
               n.memory_mib, n.price_per_gpu_hour, n.capacity_kind, n.region, n.zone, n.rack,
               n.labels)
        if key not in seen:
            seen[key] = dataclasses.replace(n, cordoned=False, health=Health.HEALTHY)
    return tuple(seen.values())


@dataclass(frozen=True)
class DryRun:
    """What would happen to a candidate if submitted now."""

    outcome: str  # "start" | "pending" | "rejected"
    placements: dict[str, list[dict[str, Any]]]  # unit id -> [{worker, node, devices}]
    evictions: list[dict[str, str]]
    reason: R.Reason | None
    #: what the workflow fields will do (retries, dependencies, array), in sentences
    notes: list[str] = dataclasses.field(default_factory=list)


class Submissions:
    """Validation, diagnosis and storing of submissions. One per API process; thread-safe.

    The pool (nodes, queues) is cached for `pool_ttl_s`, and the diagnosis per workload shape
    for as long as the pool is the same: after the TTL, one indexed read of the pool's change
    number (and of the queues) says whether it changed, and only then is it read again and the
    diagnoses dropped. A new single-worker shape is diagnosed on the pool's node classes
    (`node_classes`), not on every node, so thousands of distinct shapes stay cheap.
    """

    def __init__(self, store: Store, config: SchedulerConfig | None = None,
                 pool_ttl_s: float = 2.0,
                 rentable: Callable[[Connection], Sequence[Node]] | None = None,
                 rentable_key: Callable[[Connection], object] | None = None,
                 webhook_allowed: Allowed = ()) -> None:
        self.store, self.config, self.pool_ttl_s = store, config or SchedulerConfig(), pool_ttl_s
        #: private networks `notify` may post to (CORRAL_WEBHOOK_ALLOW_CIDRS; issue 13)
        self.webhook_allowed = webhook_allowed
        #: nodes renting providers could give (corral.control.pool_providers.rentable_nodes):
        #: work that fits only those is accepted, to wait for the autoscaler
        self.rentable = rentable
        #: what `rentable`'s answer depends on besides the nodes (declared providers, join
        #: tokens: neither moves the nodes' change number); read with it after each TTL
        self.rentable_key = rentable_key
        self._lock = threading.Lock()
        self._pool: PoolView | None = None
        self._diagnoses: dict[str, R.Reason | None] = {}
        self._writes: GroupCommit[_Accepted, list[WorkloadRecord]] = GroupCommit(
            store, _store_accepted, name="submissions-writer")
        #: throughput measured by earlier jobs of a kind, for new ones (corral.control.progress)
        self.learned = LearnedThroughput()
        self._ids = GroupIds()  # no system call per submission on the event loop (group_ids.py)

    def pool(self) -> PoolView:
        with self._lock:
            pool = self._pool
            if pool is None or time.monotonic() - pool.loaded_at > self.pool_ttl_s:
                with self.store.read() as conn:
                    self.learned.refresh(conn)  # as often as the pool: estimates move slowly
                    version, queues = P.nodes_version(conn), tuple(P.list_queues(conn))
                    future = self.rentable_key(conn) if self.rentable_key is not None else None
                    if pool is not None and (version, queues, future) == (
                            pool.version, pool.queues, pool.future):
                        self._pool = dataclasses.replace(pool, loaded_at=time.monotonic())
                    else:
                        nodes = tuple(P.list_nodes(conn))
                        if self.rentable is not None:
                            nodes += tuple(self.rentable(conn))
                        self._pool = PoolView(nodes, queues, time.monotonic(), version,
                                              node_classes(nodes), future)
                        self._diagnoses = {}
            assert self._pool is not None
            return self._pool

    def invalidate(self) -> None:
        with self._lock:
            self._pool = None

    def check(self, spec: WorkloadSpec) -> None:
        """Raise SpecError naming the field when `spec` cannot be accepted."""
        self._check(spec, self.pool())

    def check_cached(self, spec: WorkloadSpec) -> bool:
        """`check` when the pool and this shape's diagnosis are cached (raises the same
        SpecError); False, having checked nothing, when it would need the store or the core.
        Lets an event loop check inline and hand only the slow case to a thread."""
        with self._lock:
            pool = self._pool
            if pool is None or time.monotonic() - pool.loaded_at > self.pool_ttl_s:
                return False
            shape = _shape(spec)  # once per submission: a JSON dump of the spec's fields
            if pool.queue(spec.queue) is not None and shape not in self._diagnoses:
                return False
        self._check(spec, pool, shape)
        return True

    def _check(self, spec: WorkloadSpec, pool: PoolView, shape: str | None = None) -> None:
        if pool.queue(spec.queue) is None:  # never list the queues: that names other teams'
            raise SpecError([("queue", f"queue {spec.queue!r} does not exist or you are not a "
                                       "member; `corral queues` lists yours")])
        if spec.command is None and spec.shell is None:
            raise SpecError([("command", "give the program to run: command (an argv list) or "
                                         "shell (one shell line)")])
        hooks = destination_problems(spec.notify, self.webhook_allowed)  # request forgery
        if hooks:
            raise SpecError(hooks)
        reason = self._diagnose(spec, pool, shape)
        if reason is not None:
            field = str(dict(reason.details).get("field") or "")  # image's own (constraints)
            raise SpecError([(field or FIELD_OF_REASON.get(reason.code, "spec"),
                              f"{reason.message} ({reason.code}): this can never run on the pool")])

    def _diagnose(self, spec: WorkloadSpec, pool: PoolView, shape: str | None = None
                  ) -> R.Reason | None:
        key = shape if shape is not None else _shape(spec)
        with self._lock:
            if key in self._diagnoses:
                return self._diagnoses[key]
        unit = spec.to_core("candidate", 0.0)[0]
        found = unmet_constraint(unit, pool.classes)  # names capacity, node_selector, ...
        if found is None:
            nodes = pool.classes if unit.workers == 1 else tuple(
                dataclasses.replace(n, cordoned=False, health=Health.HEALTHY) for n in pool.nodes)
            plan = schedule(ClusterState(nodes, pool.queues, (unit,)), 0.0, self.config)
            reason = plan.pending.get("candidate")
            found = reason if reason is not None and reason.unresolvable else None
        with self._lock:
            self._diagnoses[key] = found
        return found

    def submit(self, spec: WorkloadSpec, user: str, now: float,
               visible: Visible | None = None) -> list[WorkloadRecord]:
        """Check, then store the workload's units and their Submitted events; return them once
        committed. `visible(queue)`: whether the submitter may see that queue's work (the
        parents `depends_on` may name); None: all."""
        self.check(spec)
        self.check_secrets(spec)
        parents = self.parents(spec, visible)
        for _ in range(_ID_ATTEMPTS):
            try:
                return self._store(spec, user, now, parents=parents).result()
            except IntegrityError:  # the random id is taken: draw another
                continue
        raise RuntimeError("could not find a free workload id; try again")

    async def submit_async(self, spec: WorkloadSpec, user: str, now: float,
                           on_store: OnStore | None = None, visible: Visible | None = None,
                           ) -> list[WorkloadRecord]:
        """`submit` for an event loop: checks inline when cached, else in a thread, and awaits
        the commit without holding a thread. `on_store(conn, group_id)` runs in the
        submission's own transaction (an idempotency key is written there)."""
        if not self.check_cached(spec):
            await asyncio.to_thread(self.check, spec)
        if spec.secret_refs() or any(h.secret for h in spec.notify) or token_secret(spec):
            await asyncio.to_thread(self.check_secrets, spec)
        parents = await asyncio.to_thread(self.parents, spec, visible) if spec.depends_on else {}
        for _ in range(_ID_ATTEMPTS):
            try:
                return await asyncio.wrap_future(self._store(spec, user, now, on_store, parents))
            except IntegrityError:
                continue
        raise RuntimeError("could not find a free workload id; try again")

    def check_secrets(self, spec: WorkloadSpec) -> None:
        """Raise SpecError naming `env.<VAR>` for each secret reference that names no secret
        the spec's queue may use (its own or a global one): refused now, not failed at launch."""
        refs = spec.secret_refs()
        hooks = webhook_secrets(spec.notify)  # notify[i] -> the secret it is signed with
        if not refs and not hooks and not token_secret(spec):
            return
        with self.store.read() as conn:
            gone = SEC.missing(conn, spec.queue, refs)
            gone_hooks = SEC.missing(conn, spec.queue, hooks)
            token = token_problems(conn, spec)  # a service's auth.token_secret
        problems = [(f"env.{m.env}", m.fix) for m in gone]
        problems += [(f"{m.env}.secret", m.fix) for m in gone_hooks]
        problems += token
        if problems:
            raise SpecError(problems)

    def parents(self, spec: WorkloadSpec, visible: Visible | None = None
                ) -> dict[str, dict[str, int]]:
        """The states of the workloads `spec.depends_on` names ({id: {state: rows}}); raise
        SpecError naming `depends_on[i].id` for one that does not exist (or is in a queue the
        submitter cannot see: the same answer), or has already ended in a way that can never
        meet `when`. Parents exist before their dependents, so no submission closes a cycle."""
        if not spec.depends_on:
            return {}
        keys = [d.id for d in spec.depends_on]
        with self.store.read() as conn:
            queues = G.queues_of(conn, keys)
            states = G.states_of(conn, [k for k in keys if k in queues])
        for i, d in enumerate(spec.depends_on):
            if d.id not in queues or (visible is not None and not visible(queues[d.id])):
                raise SpecError([(f"depends_on[{i}].id", f"no workload or group {d.id!r} that "
                                  "you can see; give an id that `corral submit` printed or "
                                  "`corral ls` lists")])
        try:
            dependency_reason(spec.depends_on, states)
        except NeverMet as e:
            raise SpecError([(f"depends_on[{e.index}].id", e.message)]) from None
        return states

    def _store(self, spec: WorkloadSpec, user: str, now: float,
               on_store: OnStore | None = None, parents: dict[str, dict[str, int]] | None = None,
               ) -> Future[list[WorkloadRecord]]:
        group_id = self._ids.group_id(spec.name)
        spec = self.learned.apply(spec)  # in memory: the event loop may be calling
        body = stored_form(spec)
        ids = unit_ids(group_id, spec)
        holds = initial_holds(spec, ids, group_id, parents or {})
        holds |= elastic.initial_holds(spec, ids)  # extras wait for their core gang (elastic.py)
        rows = [_row(uid, group_id, spec, user, body, now, holds.get(uid)) for uid in ids]
        if spec.elastic is not None:  # its extras in a group of their own (elastic.group_of)
            rows = [{**r, "group_id": elastic.group_of(r["id"], group_id)} for r in rows]
        return self._writes.submit(_Accepted(rows, f"submitted by {user} to queue {spec.queue}",
                                             on_store))

    def dry_run(self, spec: WorkloadSpec, now: float, visible: Visible | None = None) -> DryRun:
        """Plan one cycle on the current state plus the candidate; nothing is stored. Work
        held for its dependencies would wait (nothing is planned); of an array, the tasks
        released at once are planned."""
        try:
            self.check(spec)
            self.check_secrets(spec)
            parents = self.parents(spec, visible)
        except SpecError as e:
            return DryRun("rejected", {}, [], R.Reason("Invalid", str(e)))
        notes = explain(spec, parents) + packaging_notes(
            spec.env, spec.setup, spec.workdir, spec.image, spec.volumes, spec.shm_size)
        notes += notify_notes(spec.notify)
        ids = unit_ids("candidate", spec)
        holds = initial_holds(spec, ids, "candidate", parents)
        if ids and ids[0] in holds:  # held for a dependency: the core would not see it
            return DryRun("pending", {}, [], holds[ids[0]], notes)
        with self.store.read() as conn:
            snap = load_snapshot(conn, now, SpecCache(), self.config)  # ordered as the loop orders
        core = spec.to_core("candidate", now)
        if spec.array is not None:
            core = [dataclasses.replace(core[0], id=uid) for uid in ids if uid not in holds]
        if spec.elastic is not None:  # and its extras, one worker each (corral.control.elastic)
            core += [dataclasses.replace(elastic.extra_unit(core[0]), id=u) for u in ids[1:]]
        units = [dataclasses.replace(u, id=f"dry-run/{u.id}") for u in core]
        state = dataclasses.replace(snap.state, workloads=snap.state.workloads + tuple(units))
        plan = schedule(state, now, self.config)
        if spec.elastic is not None and units[0].id not in {p.workload_id for p in plan.placements}:
            units = units[:1]  # its extras are held until the gang is placed: none start alone
        out = _dry_outcome(plan, units)
        if spec.elastic is not None:  # it starts once its core gang is placed
            notes += elastic.dry_run_notes(spec, ids[0], out.placements)
            out = dataclasses.replace(out, outcome="start" if ids[0] in out.placements
                                      else out.outcome)
        return dataclasses.replace(out, notes=notes)


def _shape(spec: WorkloadSpec) -> str:
    """What the never-fits diagnosis depends on: equal shapes share one cached diagnosis."""
    return spec.model_dump_json(include={
        "queue", "kind", "workers", "gpus", "gpu_memory", "cpu", "memory", "gpu_models",
        "topology", "allow_cross_region", "max_price_per_gpu_hour", "preemptible",
        "min_replicas", "capacity", "node_selector", "min_gpu_memory"}) + (
        # an image selects nodes that run containers (to_core), whichever image it is
        " image" if spec.image is not None else "")


@dataclass(frozen=True)
class _Accepted:
    """A checked submission waiting for its batch: its units' rows and its event's message."""

    rows: list[dict[str, Any]]
    message: str
    on_store: OnStore | None = None


def _store_accepted(conn: Connection, batch: Sequence[_Accepted]) -> list[list[WorkloadRecord]]:
    """Insert a batch of submissions' units and Submitted events; their records, per submission."""
    rows = [r for a in batch for r in a.rows]
    seqs = iter(W.insert_workloads(conn, rows))
    for a in batch:
        if a.on_store is not None:
            a.on_store(conn, a.rows[0]["group_id"])
    W.append_events(conn, [
        {"at": r["submitted_at"], "kind": "transition", "reason": L.SUBMITTED,
         "message": a.message, "workload_id": r["id"], "to_state": "pending"}
        for a in batch for r in a.rows])
    return [[WorkloadRecord(
        seq=next(seqs), **r, attempt=0, restart_count=0, version=1, started_at=None,
        finished_at=None, stop_reason=None, stop_message="", exit_code=None)
        for r in a.rows] for a in batch]


def _row(uid: str, group_id: str, spec: WorkloadSpec, user: str, body: dict[str, Any],
         now: float, hold: R.Reason | None = None) -> dict[str, Any]:
    """A new unit's row; a `hold` (corral.control.workflow) keeps it out of scheduling."""
    return {"id": uid, "group_id": group_id, "name": spec.name, "queue": spec.queue,
            "user": user, "kind": str(spec.kind), "spec": body, "state": "pending",
            "reason_code": hold.code if hold else L.SUBMITTED,
            "reason_message": hold.message if hold else "waiting for the next scheduling cycle",
            "not_before": HELD if hold else 0.0, "submitted_at": now}


def stored_form(spec: WorkloadSpec) -> dict[str, Any]:
    """The spec as JSON that validates back to an equal spec. Quantities dump in their base
    units; CPU is the one whose plain number means something else on input (cores, not milli)."""
    body = spec.model_dump(mode="json", exclude_defaults=True)
    if "cpu" in body:
        body["cpu"] = f"{spec.cpu}m"
    return body


def _dry_outcome(plan: Plan, units: Sequence[Workload]) -> DryRun:
    ids = {u.id for u in units}
    placements = {
        p.workload_id.removeprefix("dry-run/"): [
            {"worker": a.worker, "node": a.node_id, "devices": list(a.devices)}
            for a in p.assignments]
        for p in plan.placements if p.workload_id in ids
    }
    evictions = [{"workload": e.workload_id, "rule": e.rule, "message": e.message}
                 for e in plan.evictions if e.for_workload in ids]
    # told which reservations it waits behind (the words the API adds to a stored sentence)
    held = [(r.workload_id, r.until) for r in plan.reservations]
    reason = next((R.reason_with_reservations(plan.pending[u.id], u.id, held)
                   for u in units if u.id in plan.pending), None)
    outcome = "start" if len(placements) == len(units) else "pending"
    return DryRun(outcome, placements, evictions, reason)
