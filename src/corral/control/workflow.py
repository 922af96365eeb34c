"""Workflow holds: work that waits for other work (`depends_on`) or for room in its array
(`array.parallel`), kept out of scheduling until released.

    submitted ──> pending, held (not_before = HELD, reason WaitingForDependency | ArrayParallelLimit)
                     │   the core never sees it (a pending row not yet eligible, like a backoff)
                     ├── every parent ended as stated ──> released (not_before 0): schedulable
                     │                                    (an array task: only while fewer than
                     │                                    `parallel` of its group are active)
                     └── a parent can never meet it  ───> cancelled, DependencyNeverMet, naming it

Cost grows with what changed, never with what is stored or held: the loop hands `observe` the
ids its change feed returned (`LiveState.refresh`); a held row is indexed once, under each
parent it waits for; a parent is looked at again only when one of its rows ends (one indexed
GROUP BY per parent, `corral.store.groups.states_of`), and an array's room only when one of its
tasks leaves the active states. Nothing scans the held rows each cycle.

Like Slurm's `--dependency=afterok|afterany|afternotok` (succeeded | ended | failed) with
`--kill-on-invalid-dep=yes` (a dependency that can never be met cancels the dependent), and
`--array=0-99%8` (at most 8 tasks of the array run at once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from sqlalchemy import Connection

from corral.control import lifecycle as L
from corral.control.lifecycle import State
from corral.control.live_state import LiveState
from corral.core.reasons import Reason
from corral.spec import WorkloadSpec
from corral.spec.workflow import Dependency
from corral.store import Store
from corral.store import groups as G
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = [
    "ARRAY_LIMIT",
    "DEPENDENCY_NEVER_MET",
    "HELD",
    "RELEASED",
    "WAITING_FOR_DEPENDENCY",
    "NeverMet",
    "Workflow",
    "array_reason",
    "dependency_reason",
    "explain",
    "initial_holds",
    "is_held",
    "verdict",
]

log = logging.getLogger(__name__)

#: the not_before of a held row: never eligible until released (finite: every database and
#: JSON can hold it); LiveState and load_snapshot leave it out as they leave out a backoff
HELD: Final = 1e18
# reason codes (stable): pending while held, the release, the cancellation
WAITING_FOR_DEPENDENCY: Final = "WaitingForDependency"
ARRAY_LIMIT: Final = "ArrayParallelLimit"
RELEASED: Final = "Released"
DEPENDENCY_NEVER_MET: Final = "DependencyNeverMet"

Verdict = Literal["met", "never", "wait"]
_ACTIVE: Final = frozenset({*W.ACTIVE_STATES, "preempted"})
_VERB: Final = {"succeeded": "succeed", "failed": "fail", "ended": "end"}


def is_held(rec: WorkloadRecord) -> bool:
    return rec.state == "pending" and rec.not_before >= HELD


def verdict(when: str, states: Mapping[str, int]) -> Verdict:
    """Whether a parent whose rows are in `states` ({state: count}) meets `when`.

    succeeded: every row succeeded (never once one failed or was cancelled: decided early, so
    a sweep's dependents are cancelled at its first failure); failed: it has ended and a row
    failed; ended: every row ended, however. A parent without rows can never meet anything."""
    total = sum(states.values())
    if total == 0:
        return "never"
    active = sum(n for s, n in states.items() if s in _ACTIVE)
    bad = states.get("failed", 0) + states.get("cancelled", 0)
    if when == "succeeded":
        return "never" if bad else ("met" if active == 0 else "wait")
    if active:
        return "wait"
    if when == "failed":
        return "met" if states.get("failed", 0) else "never"
    return "met"


def _ended_as(states: Mapping[str, int]) -> str:
    ended = {s: n for s, n in sorted(states.items()) if s not in _ACTIVE and n}
    if not ended:
        return "has no rows"
    return "ended " + ", ".join(f"{n} {s}" for s, n in ended.items())


def dependency_reason(deps: Sequence[Dependency], states: Mapping[str, Mapping[str, int]]
                      ) -> Reason | None:
    """Why a dependent with `deps` waits (the first unmet dependency, named), None when every
    one is met. Raises `NeverMet` when one cannot be met any more."""
    waiting: list[str] = []
    for i, d in enumerate(deps):
        got = verdict(d.when, states.get(d.id, {}))
        if got == "never":
            raise NeverMet(i, d, f"{d.id} {_ended_as(states.get(d.id, {}))}: "
                                 f"when: {d.when} can never be met")
        if got == "wait":
            waiting.append(f"{d.id} to {_VERB[d.when]}")
    if not waiting:
        return None
    more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
    return Reason(WAITING_FOR_DEPENDENCY, f"waits for {waiting[0]}{more} (depends_on)")


def array_reason(group_id: str, parallel: int) -> Reason:
    return Reason(ARRAY_LIMIT, f"waits for room in its array {group_id}: at most {parallel} of "
                               "its tasks run at once (array.parallel)")


class NeverMet(Exception):
    """Dependency `index` can never be met; `message` says why (the parent, how it ended)."""

    def __init__(self, index: int, dep: Dependency, message: str) -> None:
        super().__init__(message)
        self.index, self.dep, self.message = index, dep, message


@dataclass
class Workflow:
    """The loop's side of the holds: indices kept from the change feed, and `step`, which
    releases or cancels what the last changes decided. One per ControlLoop."""

    #: parent key (workload or group id) -> groups of held dependents waiting for it
    waiting: dict[str, set[str]] = field(default_factory=dict)
    #: dependent group -> its dependencies (while any row of it is held for them)
    deps: dict[str, tuple[Dependency, ...]] = field(default_factory=dict)
    #: group -> its active rows' ids, for groups that hold (arrays with parallel, dependents)
    members: dict[str, set[str]] = field(default_factory=dict)
    #: array group -> parallel
    parallel: dict[str, int] = field(default_factory=dict)
    group_of: dict[str, str] = field(default_factory=dict)  # active row id -> its group
    _children: set[str] = field(default_factory=set)  # dependent groups to decide now
    _parents: set[str] = field(default_factory=set)  # parents with a row that just ended
    _arrays: set[str] = field(default_factory=set)  # arrays that may have room now

    def observe(self, changed: Iterable[str], live: LiveState) -> None:
        """Note what the change feed returned (`LiveState.refresh`): O(len(changed))."""
        for wid in changed:
            rec = live.records.get(wid)
            if rec is None:  # it ended (active rows leave LiveState in their final state)
                self._ended(wid)
                continue
            group = rec.group_id
            self.group_of[wid] = group
            spec = live.specs.spec(rec)
            if spec.array is not None and spec.array.parallel is not None:
                if group not in self.members:  # first sight (or a reload): is there room?
                    self._arrays.add(group)
                self.parallel[group] = spec.array.parallel
                self.members.setdefault(group, set()).add(wid)
            if spec.depends_on and is_held(rec) and rec.reason_code == WAITING_FOR_DEPENDENCY:
                self.members.setdefault(group, set()).add(wid)
                if group not in self.deps:  # new, or seen again after a reload: decide it
                    self.deps[group] = tuple(spec.depends_on)
                    for d in spec.depends_on:
                        self.waiting.setdefault(d.id, set()).add(group)
                    self._children.add(group)

    def _ended(self, wid: str) -> None:
        group = self.group_of.pop(wid, None)
        for key in (wid, group):
            if key is not None and key in self.waiting:
                self._parents.add(key)
        if group is not None and group in self.members:
            self.members[group].discard(wid)
            if group in self.parallel:
                self._arrays.add(group)
            if not self.members[group]:
                del self.members[group]
                self.parallel.pop(group, None)

    def step(self, store: Store, live: LiveState, now: float) -> int:
        """Release, re-reason or cancel what the observed changes decided; rows written."""
        children = set(self._children)
        for key in self._parents:
            children |= self.waiting.get(key, set())
        arrays, self._children, self._parents, self._arrays = self._arrays, set(), set(), set()
        if not children and not arrays:
            return 0
        states: dict[str, dict[str, int]] = {}
        if children:
            keys = {d.id for c in children for d in self.deps.get(c, ())}
            with store.read() as conn:
                states = G.states_of(conn, keys)
        out = _Writes()
        for child in sorted(children):
            self._decide(child, states, live, arrays, out)
        for group in sorted(arrays):
            self._fill(group, live, out)
        return out.write(store, now)

    def _decide(self, child: str, states: Mapping[str, Mapping[str, int]], live: LiveState,
                arrays: set[str], out: _Writes) -> None:
        deps = self.deps.get(child, ())
        rows = self._held_rows(child, live)
        try:
            reason = dependency_reason(deps, states)
        except NeverMet as e:
            self._forget_child(child)
            out.cancel += [(r, f"depends_on[{e.index}]: {e.message}", e.dep.id) for r in rows]
            return
        if reason is not None:  # still waiting: say for what, where that changed
            out.reason += [(r, reason) for r in rows
                           if (r.reason_code, r.reason_message) != (reason.code, reason.message)]
            return
        self._forget_child(child)
        met = ", ".join(f"{d.id} {d.when}" if d.when != "ended" else f"{d.id} ended"
                        for d in deps)
        why = f"its dependencies are met ({met})"
        if child not in self.parallel:
            out.release += [(r, why) for r in rows]
            return
        # an array: release as many as it may run, the others wait for room
        arrays.discard(child)
        room = max(self.parallel[child] - self._active(child, live), 0)
        out.release += [(r, why) for r in rows[:room]]
        out.reason += [(r, array_reason(child, self.parallel[child])) for r in rows[room:]]

    def _fill(self, group: str, live: LiveState, out: _Writes) -> None:
        """Release held tasks of array `group` (lowest index first) while fewer than its
        `parallel` are active; tasks still waiting for dependencies are not touched."""
        room = max(self.parallel.get(group, 0) - self._active(group, live), 0)
        ready = [r for r in self._held_rows(group, live)
                 if r.reason_code != WAITING_FOR_DEPENDENCY]
        out.release += [(r, "room in its array (array.parallel)") for r in ready[:room]]

    def _active(self, group: str, live: LiveState) -> int:
        """Rows of `group` that are active and not held (the ones `parallel` counts)."""
        rows = (live.records.get(i) for i in self.members.get(group, ()))
        return sum(1 for r in rows if r is not None and not is_held(r))

    def _held_rows(self, group: str, live: LiveState) -> list[WorkloadRecord]:
        rows = (live.records.get(i) for i in self.members.get(group, ()))
        return sorted((r for r in rows if r is not None and is_held(r)), key=lambda r: r.seq)

    def _forget_child(self, child: str) -> None:
        for d in self.deps.pop(child, ()):
            waiting = self.waiting.get(d.id)
            if waiting is not None:
                waiting.discard(child)
                if not waiting:
                    del self.waiting[d.id]


class _Missed(Exception):
    """A bulk write found a row changed since it was read: roll back, write row by row."""


@dataclass
class _Writes:
    """What one step decided, written in one transaction: in bulk (one statement per kind, as
    `corral.control.apply` writes a plan), or, when a row changed meanwhile (a cancel racing),
    row by row, each guarded by its version (a row that moved on is left to its next change)."""

    release: list[tuple[WorkloadRecord, str]] = field(default_factory=list)
    reason: list[tuple[WorkloadRecord, Reason]] = field(default_factory=list)
    cancel: list[tuple[WorkloadRecord, str, str]] = field(default_factory=list)  # msg, parent

    def write(self, store: Store, now: float) -> int:
        n = len(self.release) + len(self.reason) + len(self.cancel)
        if not n:
            return 0
        try:
            with store.write() as conn:
                self._bulk(conn, now)
            return n
        except _Missed:
            with store.write() as conn:
                return self._one_by_one(conn, now)

    def _bulk(self, conn: Connection, now: float) -> None:
        released = [{"id": r.id, "version": r.version, "not_before": 0.0,
                     "reason_code": RELEASED, "reason_message": _released(why)}
                    for r, why in self.release]
        reasons = [{"id": r.id, "version": r.version, "reason_code": why.code,
                    "reason_message": why.message} for r, why in self.reason]
        for rows in (released, reasons):
            if W.update_many_versioned(conn, rows) != len(rows):
                raise _Missed
        W.append_events(conn, [
            {"at": now, "kind": "info", "reason": RELEASED, "message": f"released: {why}",
             "workload_id": r.id, "attempt": r.attempt} for r, why in self.release])
        if not L.transition_many(conn, [(r, msg, {"parent": parent})
                                        for r, msg, parent in self.cancel],
                                 State.CANCELLED, reason=DEPENDENCY_NEVER_MET, now=now):
            raise _Missed

    def _one_by_one(self, conn: Connection, now: float) -> int:
        n = 0
        for r, why in self.release:
            if W.update_versioned(conn, r.id, r.version, not_before=0.0, reason_code=RELEASED,
                                  reason_message=_released(why)):
                W.append_event(conn, at=now, kind="info", reason=RELEASED,
                               message=f"released: {why}", workload_id=r.id, attempt=r.attempt)
                n += 1
        n += sum(W.update_versioned(conn, r.id, r.version, reason_code=why.code,
                                    reason_message=why.message) for r, why in self.reason)
        return n + sum(L.transition(conn, r, State.CANCELLED, reason=DEPENDENCY_NEVER_MET,
                                    message=msg, now=now, data={"parent": parent})
                       for r, msg, parent in self.cancel)


def _released(why: str) -> str:
    return f"released: {why}; waiting for the next scheduling cycle"


def initial_holds(spec: WorkloadSpec, unit_ids: Sequence[str], group_id: str,
                  states: Mapping[str, Mapping[str, int]]) -> dict[str, Reason]:
    """The units of a new submission that start held, and why: all of them while a dependency
    is unmet; beyond the first `array.parallel` tasks, the rest. Raises NeverMet."""
    reason = dependency_reason(spec.depends_on, states) if spec.depends_on else None
    if reason is not None:
        return {uid: reason for uid in unit_ids}
    parallel = spec.array.parallel if spec.array is not None else None
    if parallel is None:
        return {}
    return {uid: array_reason(group_id, parallel) for uid in unit_ids[parallel:]}


def explain(spec: WorkloadSpec, parents: Mapping[str, Mapping[str, int]]) -> list[str]:
    """What each workflow field of `spec` will do, in sentences (`corral submit --dry-run`)."""
    notes = [_retry_note(spec)] if spec.kind != "service" else []
    if spec.preemption_grace is not None:
        notes.append(f"preemption_grace: when stopped it gets {spec.preemption_grace:g}s "
                     "between SIGTERM and SIGKILL to checkpoint")
    for d in spec.depends_on:
        got = verdict(d.when, parents.get(d.id, {}))
        state = "met" if got == "met" else "not met yet: held until it is"
        notes.append(f"depends_on: {d.id} must {_VERB[d.when]} ({state}; cancelled if it "
                     "never can)")
    if spec.array is not None:
        a = spec.array
        idx = a.indices()
        at_once = f"at most {a.parallel} at once" if a.parallel else "all at once"
        params = ", ".join(f"CORRAL_PARAM_{k.upper()}" for k in a.grid or {})
        notes.append(f"array: {a.size} tasks (CORRAL_ARRAY_INDEX {idx[0]}..{idx[-1]}), "
                     f"{at_once}; each task also gets CORRAL_ARRAY_SIZE"
                     + (f", {params} and CORRAL_PARAMS (JSON)" if params else ""))
    return notes


def _retry_note(spec: WorkloadSpec) -> str:
    causes = sorted(spec.restart_causes())
    codes = sorted(spec.restart_exit_codes())
    what = ", ".join(c.replace("_", " ") for c in causes) or "nothing"
    if codes:
        what += f"; exit codes {', '.join(map(str, codes))}"
    return (f"restart_on: restarted after {what} (up to max_restarts: {spec.max_restarts}); "
            "any other failure fails it")
