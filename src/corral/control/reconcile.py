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

What must change is decided first, from the rows the loop holds in memory; then every change of
the cycle is written in ONE transaction (each still guarded by its row's version), and none at
all when nothing changed: a steady pool of running work costs no write. The backend is called
after the commit.

A backend that can report only what changed (`poll_changes`, the fake's) is reconciled through
`BackendView`, which keeps the last report of every attempt and looks only at attempts that
changed, rows that changed (`LiveState.take_dirty`), rows being launched or stopped, and what
the last cycle left unsettled (orphans, ended attempts not yet released): an idle cycle over
50,000 running workers then looks at nothing. Its decisions are those of the full `reconcile`
over the same report (tests/control/test_reconcile_changes.py runs both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection

from corral.backends.base import WorkerState, WorkerStatus
from corral.control import lifecycle as L
from corral.control import outcome
from corral.control.lifecycle import State
from corral.control.snapshot import SpecCache
from corral.store import Store
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

if TYPE_CHECKING:
    from corral.control.live_state import LiveState
    from corral.spec import WorkloadSpec

__all__ = ["BackendView", "Reconciled", "ReportsChanges", "reconcile"]

Key = tuple[str, int]
#: what `poll_changes` returns: (workers of the attempts that changed, attempts gone, everything)
Delta = tuple[list[WorkerStatus], list[Key], bool]


class ReportsChanges(Protocol):
    """A backend that can say what changed since its last report (`FakeBackend`)."""

    def poll_changes(self, now: float) -> Delta: ...


@dataclass
class Reconciled:
    release: list[Key] = field(default_factory=list)  # ended and recorded: backend may forget
    stop_orphans: list[Key] = field(default_factory=list)
    relaunch: list[str] = field(default_factory=list)  # starting rows the backend never got
    live: dict[Key, list[WorkerStatus]] = field(default_factory=dict)  # not ended
    changed: int = 0
    #: `live` holds only the attempts looked at (BackendView): ask it for the rest
    partial: bool = False


def group(statuses: Iterable[WorkerStatus]) -> dict[Key, list[WorkerStatus]]:
    out: dict[Key, list[WorkerStatus]] = {}
    for s in statuses:
        out.setdefault((s.workload_id, s.attempt), []).append(s)
    return out


Write = Callable[[Connection], bool]
_RUNNING = WorkerState.RUNNING


def reconcile(
    store: Store, statuses: Iterable[WorkerStatus], now: float, specs: SpecCache,
    records: Mapping[str, WorkloadRecord] | None = None,
) -> Reconciled:
    """`records`: the active rows as the loop holds them (read from the store when None)."""
    by_key = group(statuses)
    if records is None:
        with store.read() as conn:
            records = {r.id: r for r in W.load_active(conn)}
    return _reconcile(store, by_key, sorted(by_key), records.values(), records, now, specs)


def _reconcile(
    store: Store, by_key: Mapping[Key, list[WorkerStatus]], keys: Sequence[Key],
    rows: Iterable[WorkloadRecord], records: Mapping[str, WorkloadRecord], now: float,
    specs: SpecCache,
) -> Reconciled:
    """Decide for the reported attempts `keys` and the unreported live rows among `rows`, then
    write every change in one transaction."""
    out = Reconciled()
    writes: list[tuple[Key | None, Write]] = []
    for key in keys:
        workers = by_key[key]
        rec = records.get(key[0])
        if (rec is not None and rec.state == "running" and rec.attempt == key[1]
                and all(s.state is _RUNNING for s in workers)):
            out.live[key] = workers  # the common case, decided without the general path
            continue
        ended = all(s.state.ended for s in workers)
        if not ended:
            out.live[key] = workers
        if rec is None or rec.attempt != key[1] or rec.state not in ("starting", "running"):
            (out.release if ended else out.stop_orphans).append(key)
            continue
        write = _observe(rec, workers, now, specs)
        if write is not None:
            writes.append((key if ended else None, write))
    for rec in rows:
        if rec.state in ("starting", "running") and (rec.id, rec.attempt) not in by_key:
            write = _unreported(rec, now, specs, out)
            if write is not None:
                writes.append((None, write))
    if writes:
        done = _write(store, writes, by_key, records, now)
        for ended_key, ok in done:
            out.changed += ok
            if ended_key is not None and ok:
                out.release.append(ended_key)
    return out


class BackendView:
    """The backend's last report of every attempt, kept current from `poll_changes` deltas, and
    the reconcile of what changed (see the module docstring)."""

    def __init__(self) -> None:
        self.by_key: dict[Key, list[WorkerStatus]] = {}
        self._keys_of: dict[str, set[Key]] = {}
        #: ids whose attempts were not steady when last looked at: looked at again next cycle
        self._watch: set[str] = set()
        #: live attempts (some worker not ended) that were not their row's holding attempt
        self._not_holding: set[Key] = set()

    def reconcile(self, store: Store, delta: Delta, now: float, specs: SpecCache,
                  live: LiveState) -> Reconciled:
        statuses, gone, everything = delta
        reported = self._apply(statuses, gone, everything)
        dirty = live.take_dirty()
        records = live.records
        if everything or dirty is None:  # a first report, or a reload: look at everything
            self._watch, self._not_holding = set(), set()
            keys = sorted(self.by_key)
            rows: Iterable[WorkloadRecord] = list(records.values())
        else:
            look = reported | dirty | self._watch | live.launching | live.stopping
            self._watch -= look
            keys = sorted(k for i in look for k in self._keys_of.get(i, ()))
            rows = sorted((records[i] for i in look if i in records), key=lambda r: r.seq)
        out = _reconcile(store, self.by_key, keys, rows, records, now, specs)
        for key in keys:
            rec = records.get(key[0])
            if not _steady(rec, key, self.by_key[key]):
                self._watch.add(key[0])
            if key in out.live and not _holding(rec, key):
                self._not_holding.add(key)
            else:
                self._not_holding.discard(key)
        out.partial = True
        return out

    def not_holding(self, live: LiveState) -> list[Key]:
        """Live attempts that the rows, as they are now, do not count as holding their GPUs
        (orphans, stopping gangs): the last reconcile's, and those of rows changed since."""
        ids = set(live.stopping) | (live.dirty if live.dirty is not None else set(self._keys_of))
        keys = self._not_holding | {k for i in ids for k in self._keys_of.get(i, ())}
        return sorted(k for k in keys if k in self.by_key
                      and not all(s.state.ended for s in self.by_key[k])
                      and not _holding(live.records.get(k[0]), k))

    def _apply(self, statuses: list[WorkerStatus], gone: list[Key], everything: bool
               ) -> set[str]:
        """Take a delta in; returns the workload ids it concerns."""
        if everything:
            self.by_key, self._keys_of = {}, {}
        for key in gone:
            self.by_key.pop(key, None)
            self._not_holding.discard(key)
            keys = self._keys_of.get(key[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_of[key[0]]
        changed = group(statuses)
        for key, workers in changed.items():
            self.by_key[key] = workers
            self._keys_of.setdefault(key[0], set()).add(key)
        return {k[0] for k in changed} | {k[0] for k in gone}


def _steady(rec: WorkloadRecord | None, key: Key, workers: list[WorkerStatus]) -> bool:
    """Running as the row says: nothing to decide until the row or the report changes."""
    return (rec is not None and rec.state == "running" and rec.attempt == key[1]
            and all(s.state is _RUNNING for s in workers))


def _holding(rec: WorkloadRecord | None, key: Key) -> bool:
    """Whether the row counts `key` as its attempt that holds GPUs (the snapshot counts it)."""
    return (rec is not None and rec.attempt == key[1] and rec.stop_reason is None
            and rec.state in ("scheduled", "starting", "running"))


class _Missed(Exception):
    """A bulk write found a row changed: roll back and write row by row."""


def _write(store: Store, writes: list[tuple[Key | None, Write]],
           by_key: Mapping[Key, list[WorkerStatus]], records: Mapping[str, WorkloadRecord],
           now: float) -> list[tuple[Key | None, bool]]:
    """Every write of the cycle in one transaction. The two that come by the thousand (a gang
    started, a gang succeeded) are written in bulk (`_bulk`); if a row changed under the bulk
    write, the transaction is rolled back and written again row by row."""
    started: list[_BulkWrite] = []
    succeeded: list[_BulkWrite] = []
    rest: list[tuple[Key | None, Write]] = []
    for ended_key, write in writes:
        if isinstance(write, _BulkWrite) and write.bulk == "started":
            started.append(write)
        elif isinstance(write, _BulkWrite) and write.bulk == "succeeded":
            succeeded.append(write)
        else:
            rest.append((ended_key, write))
    if started or succeeded:
        try:
            with store.write() as conn:
                _bulk(conn, [w.record for w in started], [w.record for w in succeeded],
                      by_key, now)
                done = [(ended_key, write(conn)) for ended_key, write in rest]
            return (done + [((w.record.id, w.record.attempt), True) for w in succeeded]
                    + [(None, True) for _ in started])
        except _Missed:
            pass
    with store.write() as conn:
        return [(ended_key, write(conn)) for ended_key, write in writes]


def _bulk(conn: Connection, started: list[WorkloadRecord], succeeded: list[WorkloadRecord],
          by_key: Mapping[Key, list[WorkerStatus]], now: float) -> None:
    # the workers' states a chunk of rows at a time, in the same order: the step after a
    # large first step sees ~48,000 gangs start, and their tuples all at once were MiBs
    # alive beside the transitions' rows
    for i in range(0, len(started), W.BULK_CHUNK):
        W.set_many_placement_states(conn, [
            (r.id, r.attempt, s.worker, str(s.state), None, s.reason)
            for r in started[i:i + W.BULK_CHUNK] for s in by_key[(r.id, r.attempt)]])
    for i in range(0, len(succeeded), W.BULK_CHUNK):
        W.set_many_placement_states(conn, [
            (r.id, r.attempt, s.worker, "ended", s.exit_code, s.reason)
            for r in succeeded[i:i + W.BULK_CHUNK] for s in by_key[(r.id, r.attempt)]])
    if not L.transition_many(
            conn, [(r, _running_message(len(by_key[(r.id, r.attempt)])), None)
                   for r in started], State.RUNNING, reason=L.STARTED, now=now,
            values={"started_at": now}):
        raise _Missed
    if not L.transition_many(conn, [(r, "every worker exited 0", None) for r in succeeded],
                             State.SUCCEEDED, reason=L.COMPLETED, now=now,
                             values={"exit_code": 0, "stop_reason": None}):
        raise _Missed


_RUNNING_MESSAGES: dict[int, str] = {}


def _running_message(workers: int) -> str:
    """"N worker(s) running": one string per gang size, shared by every row that started with
    it (48,000 gangs starting made 48,000 equal strings, held by their rows until they next
    change)."""
    message = _RUNNING_MESSAGES.get(workers)
    if message is None:
        message = _RUNNING_MESSAGES[workers] = f"{workers} worker(s) running"
    return message


@dataclass(frozen=True, slots=True)
class _BulkWrite:
    """A write that `_write` may fold into a bulk statement (`bulk` says which: "started" or
    "succeeded"); called, it writes its row alone (the fallback). Plain fields, no closure:
    one of these per gang that started or ended, 48,000 in the step after a large first one."""

    bulk: str
    record: WorkloadRecord
    workers: list[WorkerStatus]
    spec: WorkloadSpec | None  # "succeeded": the spec `outcome.finalize` reads
    now: float

    def __call__(self, conn: Connection) -> bool:
        rec, workers, now = self.record, self.workers, self.now
        if self.bulk == "succeeded":
            assert self.spec is not None
            return outcome.finalize(conn, rec, workers, self.spec, now)
        W.set_placement_states(conn, rec.id, rec.attempt,
                               {s.worker: (str(s.state), None, s.reason) for s in workers})
        return L.transition(conn, rec, State.RUNNING, reason=L.STARTED,
                            message=_running_message(len(workers)), now=now, started_at=now)


def _observe(
    rec: WorkloadRecord, workers: list[WorkerStatus], now: float, specs: SpecCache
) -> Write | None:
    """The write `workers`' report calls for, or None when it changes nothing."""
    if all(s.state.ended for s in workers):
        spec = specs.spec(rec)
        if spec.kind != "service" and all(s.state == WorkerState.SUCCEEDED for s in workers):
            return _BulkWrite("succeeded", rec, workers, spec, now)  # a replica's exit 0
        return lambda conn: outcome.finalize(conn, rec, workers, spec, now)  # restarts it
    broken = [s for s in workers if s.state in (WorkerState.FAILED, WorkerState.LOST)]
    if broken and rec.stop_reason is None:
        s = broken[0]
        message = (f"worker {s.worker} {s.state} ({s.reason}, exit code {s.exit_code}); "
                   "stopping the rest of the gang")

        def stop_gang(conn: Connection) -> bool:
            if not W.update_versioned(conn, rec.id, rec.version, stop_reason=L.WORKER_FAILED,
                                      stop_message=message.split(";")[0]):
                return False
            W.append_event(conn, at=now, kind="info", reason=L.WORKER_FAILED, message=message,
                           workload_id=rec.id, attempt=rec.attempt)
            return True
        return stop_gang
    if rec.state == "starting" and any(s.state == WorkerState.RUNNING for s in workers):
        return _BulkWrite("started", rec, workers, None, now)
    return None


def _unreported(rec: WorkloadRecord, now: float, specs: SpecCache, out: Reconciled
                ) -> Write | None:
    if rec.state == "starting" and rec.stop_reason is None:
        out.relaunch.append(rec.id)
        return None
    spec = specs.spec(rec)
    if rec.stop_reason is not None:  # a stop was asked; nothing of the attempt runs
        return lambda conn: outcome.finalize(conn, rec, [], spec, now)
    return lambda conn: outcome.restart_or_fail(
        conn, rec, spec, now, reason=L.WORKER_LOST,
        message="the backend no longer knows this attempt (its records were lost)")
