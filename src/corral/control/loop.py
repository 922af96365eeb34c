"""The control loop: one `step` is lead -> observe -> load -> schedule -> apply -> act.

    lease ─> backend.poll ─> reconcile ─> load snapshot ─> admission ─> core.schedule
          ─> apply (one guarded transaction) ─> runtime limits ─> stops ─> launches

Why this order: observing before loading lets the plan see GPUs freed by work that just ended;
applying before acting keeps every backend call behind a committed decision (crash safety, see
`corral.control.act`). See README.md in this folder for the diagram and the state machine.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from corral.backends.base import Backend
from corral.backends.errors import BackendError
from corral.control import act, freed_tables, rollout
from corral.control.admission import Admission, AdmitAll
from corral.control.apply import StalePlan, apply_plan, nomination_hold_s
from corral.control.autoscale import PoolAutoscaler
from corral.control.clock import Clock, SystemClock
from corral.control.elastic import Elastic
from corral.control.health import HealthMonitor
from corral.control.leader import Leadership
from corral.control.live_state import LiveState
from corral.control.migration import Migrator
from corral.control.node_return import stopping_on
from corral.control.port_owners import port_owner
from corral.control.probes import ReadinessProber
from corral.control.progress import ProgressCollector
from corral.control.reconcile import BackendView, Reconciled, reconcile
from corral.control.settings import ControlSettings
from corral.control.snapshot import Snapshot, SpecCache, UsageCache, with_nominations
from corral.control.wake import Wake
from corral.control.workflow import Workflow
from corral.core import schedule
from corral.core.model import ClusterState, QueueUsage
from corral.core.plan import Plan
from corral.core.reasons import Reason
from corral.core.warm_start import WarmStart
from corral.store import Store
from corral.store import workloads as W
from corral.store.changes import RowWrite

__all__ = ["ControlLoop", "StepReport"]

log = logging.getLogger(__name__)
#: a full read of at least this many active rows is moved out of the cyclic collector (`_refresh`)
FREEZE_AFTER_RECORDS = 5_000
#: in a large pool, every this many steps the frozen objects are swept once too (`_sweep`)
FULL_SWEEP_STEPS = 600


@dataclass
class StepReport:
    leader: bool
    observed: int = 0
    scheduled: int = 0
    stopping: int = 0
    launched: int = 0
    stale: bool = False
    plan: Plan | None = None
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0  # wall time of the whole step, for metrics
    #: wall seconds per stage of the step (reconcile, snapshot, admission, schedule, apply,
    #: accounting, act), for benchmarks and profiling; not an interface to match on
    stages: dict[str, float] = field(default_factory=dict)
    #: the process's CPU seconds per stage: steadier than wall time on a loaded machine
    cpu_stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - started
            self.cpu_stages[name] = self.cpu_stages.get(name, 0.0) + time.process_time() - cpu


def _rows(records: Mapping[str, W.WorkloadRecord], ids: set[str]) -> list[W.WorkloadRecord]:
    """The rows of `ids`, in submission order (the order the loop acts in)."""
    return sorted((records[i] for i in ids if i in records), key=lambda r: r.seq)


@dataclass(frozen=True)
class _Planned:
    """What the last plan was made from: the state's generation, when, and the next moment at
    which the same state may plan differently."""

    generation: int
    at: float
    wake: float | None
    dirty: bool = False  # admission refused work: plan again next cycle


class ControlLoop:
    """Drives one backend from one store. `step` is synchronous and takes its time from `clock`,
    so tests run cycles one by one; `run` repeats it every `settings.interval_s`."""

    def __init__(
        self, store: Store, backend: Backend, *, clock: Clock | None = None,
        settings: ControlSettings | None = None, admission: Admission | None = None,
        leadership: Leadership | None = None,
        observers: Sequence[Callable[[StepReport], None]] = (),
        health: HealthMonitor | None = None,
        autoscaler: PoolAutoscaler | None = None,
        probes: ReadinessProber | None = None,
    ) -> None:
        self.store, self.backend = store, backend
        self.clock = clock or SystemClock()
        self.settings = settings or ControlSettings()
        self.admission = admission or AdmitAll()
        self.leadership = leadership or Leadership(
            store, name=self.settings.lease_name, ttl_s=self.settings.lease_ttl_s)
        # a large step's freed tables leave the process instead of staying in glibc's heap
        freed_tables.keep_mmap_threshold()
        self.specs = SpecCache()
        #: the cluster between cycles, kept current from the store's change feed
        self.live = LiveState(self.specs)
        # what this process commits to workloads reaches the state without a read back
        store.subscribe(self.live.wrote)
        #: when `run` steps next: on an event, coalesced, else every interval (wake.py); a
        #: backend that sees ends without asking its engine says so (`changed_since_poll`)
        self.wake = Wake(self.settings.interval_s, self.settings.coalesce_s,
                         news=getattr(backend, "changed_since_poll", None))
        self._run_thread: int | None = None  # the thread in `run`: its own writes wake nothing
        store.subscribe(self._written)
        #: the backend's last report per attempt, for a backend that reports only changes
        self.view = BackendView()
        self._last_plan: _Planned | None = None
        #: the last plan's reservation holders, passed back to the next cycle so that a holder
        #: keeps its slot while it may (`ClusterState.reserved_for`, issue 10)
        self._reserved_for: tuple[str, ...] = ()
        #: what the core's opening keeps between cycles (`corral.core.warm_start`): each cycle
        #: opens from what changed since the last; the plan is the same as a cold cycle's
        self._warm = WarmStart()
        attach = getattr(self.admission, "attach", None)
        if attach is not None:  # the ledger reads the loop's state instead of its own
            attach(self.live)
        self.usage = UsageCache()  # decayed use per queue, for time-decayed fair share
        #: dependencies and array limits: holds released from the change feed (workflow.py)
        self.workflow = Workflow()
        #: elastic jobs' worlds and resizes (elastic.py)
        self.elastic = Elastic()
        #: launches off the loop's thread, for a backend that allows it (corral.control.act)
        self.launches: act.LaunchPool[W.WorkloadRecord] = act.LaunchPool()
        self.launches.on_done = self.wake.set  # a launch that returned is the next step's news
        self.cycles = 0
        self._swept_at = 0  # the cycle of the last full sweep of the frozen objects (`_sweep`)
        self._large = False  # the last step was a large pool's: the next runs without the gc
        self._gc_paused = False  # this step turned the collector off (`step` turns it back on)
        #: called with every step's report (metrics); a failing observer is logged, never fatal
        self.observers: list[Callable[[StepReport], None]] = list(observers)
        #: node liveness + GPU health -> cordon, drain, uncordon (corral.control.health)
        self.health = health
        #: workers' CORRAL_PROGRESS_FILE -> Progress events (corral.control.progress)
        self.progress = ProgressCollector()
        #: running jobs moved to faster accelerators (corral.control.migration), when enabled
        self.migration = Migrator(self.settings.migration) if self.settings.migration.enabled \
            else None
        #: what to rent and return (corral.control.autoscale), at most every its `every_s`
        self.autoscaler = autoscaler
        #: service replicas readiness probes (corral.control.probes): which ones take traffic
        self.probes = probes or ReadinessProber(store, backend.name, owner=port_owner(backend))
        #: how long a service update waits for its new replicas (corral.control.rollout)
        self.rollout_deadline_s = rollout.ROLLOUT_DEADLINE_S
        #: stop requests not carried out this step (the gateway still routes the replica: it
        #: stops sending it requests first; corral.api.service_routes.RouteFeed.hold)
        self.stop_hold: Callable[[W.WorkloadRecord, float], bool] | None = None

    def step(self) -> StepReport:
        started = time.perf_counter()
        # a large pool's step runs without the cyclic collector, which then runs once at its
        # end (`_sweep`) over what the step made; see there why
        self._gc_paused = self._large and gc.isenabled()
        if self._gc_paused:
            gc.disable()
        try:
            report = self._step()
            self._large = report.leader and len(self.live.records) >= FREEZE_AFTER_RECORDS
            if self._large:  # before the collector is back: its first young pass would walk
                self._sweep(report)  # everything the step made, and the sweep again
        finally:
            if self._gc_paused:
                self._gc_paused = False
                gc.enable()
        report.duration_s = time.perf_counter() - started
        for observe in self.observers:
            try:
                observe(report)
            except Exception:  # metrics must never stop scheduling
                log.exception("control loop observer failed")
        return report

    def _step(self) -> StepReport:
        now = self.clock.now()
        epoch = self.leadership.epoch
        if not self.leadership.ensure(now):
            self.live.loaded = False  # a standby re-reads everything when it takes over
            return StepReport(leader=False)
        if self.leadership.epoch != epoch:
            self.live.loaded = False
        self.cycles += 1
        report = StepReport(leader=True)
        poll_changes = getattr(self.backend, "poll_changes", None)
        with report.stage("poll"):
            delta = None if poll_changes is None else poll_changes(now)
            statuses = self.backend.poll(now) if delta is None else delta[0]
        report.observed = len(statuses)
        with report.stage("reconcile"):
            self._refresh(queues=True)
            if delta is None:
                self.live.take_dirty()
                seen = reconcile(self.store, statuses, now, self.specs, self.live.records)
            else:  # only what changed (corral.control.reconcile.BackendView)
                seen = self.view.reconcile(self.store, delta, now, self.specs, self.live)
            self._tidy_backend(seen)
        # health hook (corral.control.health): after reconcile, so lost workers' gangs are
        # already stopping; before scheduling, so nothing is placed on a node just found sick
        if self.health is not None:
            with report.stage("health"):
                self.health.step(now)
        with report.stage("progress"):  # workers' progress files, a backend that reads them
            self.progress.step(self.store, self.backend, statuses, now)
        # workflow holds: after reconcile (work that just ended releases or cancels its
        # dependents and frees room in its array), before the snapshot, so released work is
        # planned in this cycle
        with report.stage("workflow"):
            self._refresh()  # the ends reconcile just wrote
            if self.workflow.step(self.store, self.live, now):
                self._refresh()
        with report.stage("snapshot"):
            self._refresh(queues=True)  # the plan's queues: as of this read, as before
        if self._should_plan(now):
            self._plan_and_apply(now, report)
            # migration (corral.control.migration), only when enabled: after the plan (waiting
            # work had the free devices first), before acting (its stops are sent this step)
            if self.migration is not None:
                with report.stage("migration"):
                    self._refresh()
                    if self.migration.step(self.store, self.live, self.specs, self.settings, now,
                                           lambda c: self.leadership.fence(c, now),
                                           report.plan.reservations if report.plan else ()):
                        self._refresh()
        if self.autoscaler is not None:  # reads the plan's reasons: after it, before launches
            with report.stage("autoscale"):
                self.autoscaler.step(now, report.plan, lambda: self.live.snapshot(now).state,
                                     lambda: stopping_on(self.live.stopping,
                                                         self.live.assignments))
        # ledger hook (corral.control.accounting): holds, metering, settlement, before launches
        observe = getattr(self.admission, "observe", None)
        if observe is not None:
            with report.stage("accounting"):
                self._refresh()
                observe(now)
        # elastic jobs (elastic.py): after the plan placed or took their extras, before the
        # launches, which read the world it records
        with report.stage("elastic"):
            self._refresh()
            if self.elastic.step(self.store, self.live.records, self.live.assignments,
                                 self.specs, self.settings, now,
                                 lambda c: self.leadership.fence(c, now), self.live.generation):
                self._refresh()
        with report.stage("act"):
            self._refresh()
            # only the rows each part can concern (LiveState's indices), not every active row
            if act.enforce_runtime_limits(self.store, self.live.past_deadline(now), now,
                                          self.specs):
                self._refresh()  # the new stop requests must be acted on now
            live = self.live
            stopping = _rows(live.records, live.stopping)
            if self.stop_hold is not None:
                hold = self.stop_hold
                stopping = [r for r in stopping if not hold(r, now)]
            act.stop_requested(self.store, self.backend, stopping, now, self.settings,
                               self.specs)
            busy = self._busy_devices(seen, live.records)
            report.launched = act.launch(
                self.store, self.backend, _rows(live.records, live.launching), busy, now,
                self.settings, self.specs, relaunch=set(seen.relaunch),
                assignments=live.assignments, pool=self.launches)
        with report.stage("probes"):  # after launches: a replica launched now is probed later
            self.probes.step(now, self.live)
        with report.stage("rollouts"):  # after probes: drains follow the readiness just seen
            self._refresh()
            rollout.step(self.store, self.live.records.values(), now, self.rollout_deadline_s)
        return report

    def _refresh(self, queues: bool = False) -> None:
        """Read what changed. The queues (outside the change feed) only where asked: at the
        step's start and before the plan, the one part of the step that reads them; an edit
        seen later in a step would only move the generation, which the next step's first
        refresh does as well."""
        reload = not self.live.loaded
        # A full read makes every active row's objects at once, all long-lived: with the
        # collector on, its passes walked them again and again while they were being made
        # (at 10,000 x 100,000 about 0.5 s of a restart's CPU). The read runs without it
        # (`step` gives it back, whatever happens); a small pool's right after the read.
        paused = reload and not self._gc_paused and gc.isenabled()
        if paused:
            gc.disable()
            self._gc_paused = True
        with self.store.read() as conn:
            changed = self.live.refresh(conn, queues=queues)
        if paused and len(self.live.records) < FREEZE_AFTER_RECORDS:
            gc.enable()
            self._gc_paused = False
        if reload:  # what ended meanwhile was not seen: the holds are decided again
            self.workflow = Workflow()
            # The full read made the cluster's rows (100,000 records, their placements, nodes)
            # at once: long-lived, refcounted, free of cycles. Out of the cyclic collector's
            # scans from now on (they are still freed when dropped), or every full collection
            # walks them again: at 1,000 x 10,000 the restart step's CPU went 1.16 -> 0.77 s.
            # Only for a large pool: cyclic garbage alive at this moment is never collected
            # (a bounded, once-per-lease cost), which small pools and tests need not pay.
            if len(self.live.records) >= FREEZE_AFTER_RECORDS:
                gc.freeze()
                # and the rest of this step (a restart's first decision) runs without the
                # collector too, as a large pool's steps do (`_sweep`); `step` turns it back on
                if not self._gc_paused and gc.isenabled():
                    gc.disable()
                    self._gc_paused = True
        self.workflow.observe(changed, self.live)
        self.elastic.observe(changed, self.live.records)  # which jobs are elastic (elastic.py)

    def _sweep(self, report: StepReport) -> None:
        """End a large pool's step with one collection of what it left, then freeze the
        survivors (the state the next steps build on) out of the cyclic collector's scans.

        Why: a step creates hundreds of thousands of long-lived objects (new records, core
        forms, ledger holds, events). With the collector on, its passes during the step walked
        them again and again: at 10,000 x 100,000 the step that places 10,000 ran about 2,000
        young and 4 full passes, about a fifth of its time. Now the step runs without it (it
        makes little cyclic garbage: about 1,300 objects in that step) and this one pass walks
        what the step made, once: the collector's cost follows what changed. It frees the
        step's cyclic garbage first, which a freeze would otherwise keep for good; cycles that
        form later among frozen objects are freed by the full sweep every `FULL_SWEEP_STEPS`
        steps (a restart's cost, amortised)."""
        with report.stage("gc"):
            if self.cycles - self._swept_at >= FULL_SWEEP_STEPS:
                gc.unfreeze()
                self._swept_at = self.cycles
            gc.collect()
            gc.freeze()

    def _should_plan(self, now: float) -> bool:
        """Whether the core may decide anything new: the state changed since the last plan, a
        moment passed at which the same state plans differently (`LiveState.next_wake`), the
        last plan left work refused by admission (budgets move outside the feed) or was stale,
        or `settings.replan_s` passed (a safety net; decayed usage moves slowly)."""
        last = self._last_plan
        if last is None or last.generation != self.live.generation or last.dirty:
            return True
        if last.wake is not None and now >= last.wake:
            return True
        return now - last.at >= self.settings.replan_s

    def _plan_and_apply(self, now: float, report: StepReport) -> None:
        with report.stage("snapshot"):
            usage: tuple[QueueUsage, ...] = ()
            config = self.settings.scheduler
            if config.usage_weight > 0:
                with self.store.read() as conn:
                    usage = self.usage.get(conn, now, config.usage_half_life_s)
            snap = self.live.snapshot(now, usage)
            with self.store.read() as conn:  # room held for moved work (a tiny table)
                snap = with_nominations(conn, snap, now)
            generation = self.live.generation
        with report.stage("admission"):
            state, refused = self._admit(snap, now)
        with report.stage("schedule"):
            if self._reserved_for:
                state = replace(state, reserved_for=self._reserved_for)
            plan = schedule(state, now, config, seed=self.cycles, warm=self._warm)
            self._reserved_for = tuple(r.workload_id for r in plan.reservations)
        report.plan = plan
        self._last_plan = _Planned(generation, now, self.live.next_wake(now),
                                   dirty=bool(refused))
        try:
            with report.stage("apply"), self.store.write() as conn:
                applied = apply_plan(conn, snap, plan, now,
                                     lambda c: self.leadership.fence(c, now), refused,
                                     nomination_hold_s(self.settings.stop_grace_s,
                                                       self.settings.interval_s))
        except StalePlan as e:
            log.info("plan rejected as stale: %s", e)
            report.stale = True
            self._last_plan = None
            return
        report.scheduled, report.stopping = len(applied.scheduled), len(applied.stopping)
        # what was just written need not be read back: the placements come from the plan
        placed = {p.workload_id: p.assignments for p in plan.placements}
        self.live.placed((wid, snap.records[wid].attempt, placed[wid])
                         for wid in applied.scheduled)

    def _admit(self, snap: Snapshot, now: float) -> tuple[ClusterState, dict[str, Reason]]:
        pending = [w for w in snap.state.workloads if not w.running]
        refused = dict(self.admission.refuse(pending, now)) if pending else {}
        # one price source: the nodes at the price the ledger bills (a price rule overrides a
        # node's own price for placement and caps too), where the admission is the ledger
        reprice = getattr(self.admission, "reprice", None)
        nodes = snap.state.nodes if reprice is None else reprice(snap.state.nodes, now)
        if not refused and nodes is snap.state.nodes:
            return snap.state, {}
        kept = tuple(w for w in snap.state.workloads if w.id not in refused)
        return ClusterState(tuple(nodes), snap.state.queues, kept, snap.state.usage,
                            snap.state.nominations), refused

    def _tidy_backend(self, seen: Reconciled) -> None:
        for wid, attempt in seen.release:
            try:
                self.backend.release(wid, attempt)
            except BackendError as e:
                log.warning("release of %s attempt %d: %s", wid, attempt, e)
        for wid, attempt in seen.stop_orphans:
            try:
                self.backend.stop(wid, attempt, self.settings.stop_grace_s,
                                  "orphaned attempt: the control plane no longer runs it")
            except BackendError as e:
                log.warning("stop of orphan %s attempt %d: %s", wid, attempt, e)

    def _busy_devices(self, seen: Reconciled, records: Mapping[str, W.WorkloadRecord]
                      ) -> set[tuple[str, int]]:
        """Devices held by live attempts that the snapshot did not count (stopping, orphans)."""
        keys = self.view.not_holding(self.live) if seen.partial else []
        for (wid, attempt) in () if seen.partial else seen.live:
            rec = records.get(wid)
            holding = (rec is not None and rec.attempt == attempt and rec.stop_reason is None
                       and rec.state in ("scheduled", "starting", "running"))
            if not holding:
                keys.append((wid, attempt))
        if not keys:
            return set()
        with self.store.read() as conn:
            placed = W.assignments_of(conn, keys)
        return {(a.node_id, d) for assignments in placed.values() for a in assignments
                for d in a.devices}

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set: soon after an event, at most once per `coalesce_s` while
        events keep coming, else every `interval_s` (`corral.control.wake`); a failing step is
        logged, never fatal."""
        self._run_thread = threading.get_ident()
        while not stop.is_set():
            began = self.wake.arm()
            try:
                self.step()
            except Exception:  # keep scheduling through a transient database or backend error
                log.exception("control loop step failed")
            self.wake.wait(began, stop)
        self.stop()

    def stop(self) -> None:
        """A planned stop: the launches under way finish, then, while this process still
        leads, the admission's ledger saves a checkpoint (so the next leader rebuilds it
        from that alone and replays nothing; a crash still replays what came after the
        latest one), then the lease is given up. A failing checkpoint is logged: it is only
        derived, and the next leader replays instead."""
        self.launches.close()  # launches under way finish before the lease is given up
        checkpoint = getattr(self.admission, "checkpoint", None)
        if checkpoint is not None and self.leadership.leading:
            try:
                checkpoint()
            except Exception:
                log.exception("ledger checkpoint at the planned stop failed")
        self.leadership.resign()

    def _written(self, writes: list[RowWrite]) -> None:
        """A store subscriber: workloads committed by another thread of this process (an API
        submission, a cancel) wake the loop; its own writes are already in its state. A
        standby is not woken: its step only retries the lease (a write transaction), which
        once an interval is enough; it plans nothing until it leads."""
        if self.leadership.leading and threading.get_ident() != self._run_thread:
            # no row written: a transaction that only inserted (a submission), more demand
            # and no GPU freed, whose step may wait its share (wake.ARRIVAL_DUTY)
            self.wake.set(arrival=not writes)
