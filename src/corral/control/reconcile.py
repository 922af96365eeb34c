"""Reconcile: what the backend reports (`poll`) becomes workload transitions.

For each (workload, attempt) the backend reports:

- not the current attempt of a live row (an old attempt, a cancelled workload, leftovers of a
  crash): an orphan; stop it, and release it once it has ended;
- every worker ended: the attempt's outcome (`corral.control.outcome.finalize`), then release;
- some worker failed or was lost while others run: stop the gang (a gang lives and dies whole);
- starting and some worker running: running.

And for live rows the backend does not report: `starting` means the control plane died between
recording the launch and making it: launch again (the same attempt, so the backend's idempotency
makes this safe). `running` means the backend lost it: a failure, restarted by policy.
Each workload's change is its own short transaction; the backend is called after they commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.backends.base import WorkerState, WorkerStatus
from corral.control import lifecycle as L
from corral.control import outcome
from corral.control.lifecycle import State
from corral.control.snapshot import SpecCache
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = ["Reconciled", "reconcile"]

Key = tuple[str, int]


@dataclass
class Reconciled:
    release: list[Key] = field(default_factory=list)  # ended and recorded: backend may forget
    stop_orphans: list[Key] = field(default_factory=list)
    relaunch: list[str] = field(default_factory=list)  # starting rows the backend never got
    live: dict[Key, list[WorkerStatus]] = field(default_factory=dict)  # not ended
    changed: int = 0


def group(statuses: Iterable[WorkerStatus]) -> dict[Key, list[WorkerStatus]]:
    out: dict[Key, list[WorkerStatus]] = {}
    for s in statuses:
        out.setdefault((s.workload_id, s.attempt), []).append(s)
    return out


def reconcile(
    store: Store, statuses: Iterable[WorkerStatus], now: float, specs: SpecCache
) -> Reconciled:
    by_key = group(statuses)
    with store.read() as conn:
        records = {r.id: r for r in W.load_active(conn)}
    out = Reconciled()
    for key, workers in sorted(by_key.items()):
        ended = all(s.state.ended for s in workers)
        if not ended:
            out.live[key] = workers
        rec = records.get(key[0])
        if rec is None or rec.attempt != key[1] or rec.state not in ("starting", "running"):
            (out.release if ended else out.stop_orphans).append(key)
            continue
        done = _observe(store, rec, workers, now, specs)
        out.changed += done
        if ended and done:
            out.release.append(key)
    for rec in records.values():
        if rec.state in ("starting", "running") and (rec.id, rec.attempt) not in by_key:
            out.changed += _unreported(store, rec, now, specs, out)
    return out


def _observe(
    store: Store, rec: WorkloadRecord, workers: list[WorkerStatus], now: float, specs: SpecCache
) -> bool:
    spec = specs.spec(rec)
    with store.write() as conn:
        if all(s.state.ended for s in workers):
            return outcome.finalize(conn, rec, workers, spec, now)
        broken = [s for s in workers if s.state in (WorkerState.FAILED, WorkerState.LOST)]
        if broken and rec.stop_reason is None:
            s = broken[0]
            message = (f"worker {s.worker} {s.state} ({s.reason}, exit code {s.exit_code}); "
                       "stopping the rest of the gang")
            W.append_event(conn, at=now, kind="info", reason=L.WORKER_FAILED, message=message,
                           workload_id=rec.id, attempt=rec.attempt)
            return W.update_versioned(conn, rec.id, rec.version, stop_reason=L.WORKER_FAILED,
                                      stop_message=message.split(";")[0])
        if rec.state == "starting" and any(s.state == WorkerState.RUNNING for s in workers):
            W.set_placement_states(conn, rec.id, rec.attempt,
                                   {s.worker: (str(s.state), None, s.reason) for s in workers})
            return L.transition(conn, rec, State.RUNNING, reason=L.STARTED,
                                message=f"{len(workers)} worker(s) running", now=now,
                                started_at=now)
    return False


def _unreported(
    store: Store, rec: WorkloadRecord, now: float, specs: SpecCache, out: Reconciled
) -> bool:
    if rec.state == "starting" and rec.stop_reason is None:
        out.relaunch.append(rec.id)
        return False
    with store.write() as conn:
        if rec.stop_reason is not None:  # a stop was asked; nothing of the attempt runs
            return outcome.finalize(conn, rec, [], specs.spec(rec), now)
        return outcome.restart_or_fail(
            conn, rec, specs.spec(rec), now, reason=L.WORKER_LOST,
            message="the backend no longer knows this attempt (its records were lost)")
