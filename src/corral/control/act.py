"""Act: the backend calls that carry out what the store now says, made outside any transaction.

Order within `ControlLoop.step`, and why:
1. stops first, so evicted work starts leaving its GPUs as early as possible;
2. launches of `scheduled` work whose GPUs are free. A device still held by an attempt that is
   being stopped (or by an orphan) is busy: the launch waits (reason WaitingForDevices) rather
   than double-book the device;
3. the transition to `starting` is committed *before* `launch` is called. A crash in between
   leaves a `starting` row the backend never heard of, which the next cycle launches again with
   the same attempt number; a crash after the call leaves one the backend reports. Either way the
   attempt runs once;
4. each launch is isolated: whatever one raises fails that workload with the error as its
   reason (a backend that is down only postpones it), and the loop goes on with the others.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping

from corral.backends.base import Backend, LaunchSpec
from corral.backends.environment import newest_checkpoint
from corral.backends.errors import BackendError, BackendUnavailable, InvalidRequest
from corral.control import elastic, outcome
from corral.control import lifecycle as L
from corral.control.checkpoint_dirs import checkpoint_dir  # below elastic too (G, issue 13)
from corral.control.endpoints import replica_env
from corral.control.launch_pool import LaunchPool
from corral.control.lifecycle import State
from corral.control.settings import ControlSettings
from corral.control.snapshot import SpecCache
from corral.core.model import WorkerAssignment
from corral.spec import WorkloadSpec
from corral.spec.packaging import volume_env
from corral.store import Store
from corral.store import secrets as S
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

__all__ = [
    "LaunchPool",
    "checkpoint_dir",
    "enforce_runtime_limits",
    "launch",
    "launch_spec",
    "resume_point",
    "stop_requested",
]

log = logging.getLogger(__name__)
Device = tuple[str, int]


def resume_point(directory: str) -> str | None:
    """The newest checkpoint in `directory` as this machine sees it now
    (`corral.backends.environment.newest_checkpoint`); None when it holds none, does not exist
    or cannot be read here (storage mounted only where the workers run)."""
    try:
        with os.scandir(directory) as entries:
            names = [e.name for e in entries]
    except OSError:
        return None
    newest = newest_checkpoint(names)
    return None if newest is None else os.path.join(directory, newest)


def launch_spec(
    rec: WorkloadRecord, spec: WorkloadSpec, assignments: tuple[WorkerAssignment, ...],
    settings: ControlSettings, store: Store | None = None,
) -> LaunchSpec:
    """The spec of the stored attempt. resume_from is the newest checkpoint in the checkpoint
    dir at this moment (`resume_point`), on any attempt: also the first, when a workload names a
    dir that already holds checkpoints. The previous attempt's workers have ended as far as
    the backend reports, but not always on disk: a Slurm job on a node that lost contact goes
    on saving until it is fenced. So it names a checkpoint that exists, not always the newest
    when the workers start; a job reads the directory itself as it starts (examples/train_ckpt.py
    takes the latest step every worker saved). The spec's secret references are read from
    `store` now (`resolved_secrets`), so a secret set again reaches the next attempt.

    Everything else is deterministic in the stored row. resume_from is not, yet a relaunch after
    a crash stays an equal spec where it matters: the same attempt is launched again only when
    the backend never received it (`corral.control.reconcile`), and so has no spec to compare.
    """
    ckpt = checkpoint_dir(rec, spec, settings)
    env = _env(rec, spec)
    if spec.elastic is not None:  # the group's directory and its current world (elastic.py)
        ckpt, world = elastic.launch_env(rec, spec, ckpt, store)
        env = {**env, **world}
    command: tuple[str, ...] | str = spec.shell if spec.shell is not None else tuple(spec.command or ())
    return LaunchSpec(
        workload_id=rec.id, attempt=rec.attempt, queue=rec.queue, assignments=assignments,
        command=command, shell=spec.shell is not None, user=rec.user,
        env=env,
        working_dir=spec.working_dir, checkpoint_dir=ckpt, resume_from=resume_point(ckpt),
        restart_count=rec.restart_count, secret_env=resolved_secrets(store, rec.queue, spec),
        setup=spec.setup, workdir=spec.workdir, image=spec.image,
        volumes=tuple(v.model_dump() for v in spec.volumes), shm_mib=spec.shm_size)


def resolved_secrets(store: Store | None, queue: str, spec: WorkloadSpec) -> dict[str, str]:
    """The values of the spec's secret references (none: no read). One deleted since the
    submission fails the launch (InvalidRequest naming env.<VAR>: retrying fails the same)."""
    refs = spec.secret_refs()
    if not refs:
        return {}
    if store is None:
        raise InvalidRequest("env", "secrets are resolved through the store; none was given")
    try:
        with store.read() as conn:
            return S.resolve(conn, S.box_of(store), queue, refs)
    except S.SecretMissing as e:
        raise InvalidRequest(f"env.{e.env}", f"secret {e.name!r} no longer exists for queue "
                             f"{queue!r}: set it again (`corral secrets set {e.name}`) and "
                             "resubmit") from None
    except S.SecretsUnavailable as e:
        raise InvalidRequest("env", str(e)) from None


def _env(rec: WorkloadRecord, spec: WorkloadSpec) -> dict[str, str]:
    """The user's env and where each volume is, plus a replica's port or an array task's
    index and parameters (its id is `<group>-<index>`, corral.control.submission.unit_ids)."""
    env = {**spec.plain_env(), **volume_env(spec.volumes)}
    if rec.kind == "service":
        return {**env, **replica_env(rec)}
    if spec.array is None:
        return env
    return {**env, **spec.array.task_env(int(rec.id.rsplit("-", 1)[1]))}


def stop_requested(
    store: Store, backend: Backend, records: Iterable[WorkloadRecord], now: float,
    settings: ControlSettings, specs: SpecCache,
) -> int:
    """Carry out stop requests. Never-launched (`scheduled`) work ends at once; launched work
    gets `stop` every cycle until it has ended (the call is idempotent)."""
    n = 0
    for rec in records:
        if rec.stop_reason is None:
            continue
        if rec.state == "scheduled":
            with store.write() as conn:
                n += outcome.finalize(conn, rec, [], specs.spec(rec), now)
        elif rec.state in ("starting", "running"):
            grace = 0.0 if rec.stop_reason == L.WORKER_FAILED else _grace(specs.spec(rec),
                                                                          settings)
            try:
                backend.stop(rec.id, rec.attempt, grace, rec.stop_message or rec.stop_reason)
            except BackendError as e:
                log.warning("stop of %s attempt %d failed: %s", rec.id, rec.attempt, e)
    return n


def _grace(spec: WorkloadSpec, settings: ControlSettings) -> float:
    """SIGTERM to SIGKILL: the workload's own preemption_grace, else the control plane's."""
    return settings.stop_grace_s if spec.preemption_grace is None else spec.preemption_grace


def launch(
    store: Store, backend: Backend, records: Iterable[WorkloadRecord], busy: set[Device],
    now: float, settings: ControlSettings, specs: SpecCache, *, relaunch: set[str],
    assignments: Mapping[str, tuple[WorkerAssignment, ...]] | None = None,
    pool: LaunchPool[WorkloadRecord] | None = None,
) -> int:
    """Launch scheduled work whose devices are free, and relaunch `relaunch` (starting rows the
    backend never received). `assignments`: each record's current placements, where the caller
    holds them (else read here). `pool`: where the launches go off the loop's thread, for a
    backend that allows it (`corral.control.launch_pool`); without one they are made here.

    Every `scheduled -> starting` of the cycle (and every WaitingForDevices reason) is written
    in one transaction before the first backend call, then the launches are made."""
    off_loop = pool is not None and LaunchPool.applies_to(backend)
    if pool is not None and off_loop:
        records = _settle_pool(store, backend, pool, list(records), now, specs)
    todo = [r for r in records if r.stop_reason is None and (
        r.state == "scheduled" or (r.state == "starting" and r.id in relaunch))]
    if not todo:
        return 0
    if assignments is None:
        with store.read() as conn:
            placed = W.assignments_of(conn, [(r.id, r.attempt) for r in todo])
        assignments = {wid: a for (wid, _), a in placed.items()}
    ready: list[WorkloadRecord] = []
    waiting: list[dict[str, object]] = []
    for rec in todo:
        message = _blocked(rec, assignments.get(rec.id, ()), busy) if rec.state == "scheduled" \
            else None
        if message is None:
            ready.append(rec)
        elif rec.reason_code != L.WAITING_FOR_DEVICES:
            waiting.append({"id": rec.id, "version": rec.version,
                            "reason_code": L.WAITING_FOR_DEVICES, "reason_message": message})
    if pool is not None and off_loop:  # back-pressure: the rest waits, scheduled, for room
        ready = ready[:pool.room()]
    ready = _mark_starting(store, backend, ready, waiting, now)
    if pool is not None and off_loop:
        return _hand_over(store, backend, pool, ready, assignments, now, settings, specs)
    return _launch_batch(store, backend, ready, assignments, now, settings, specs)


def _settle_pool(store: Store, backend: Backend, pool: LaunchPool[WorkloadRecord],
                 records: list[WorkloadRecord], now: float, specs: SpecCache,
                 ) -> list[WorkloadRecord]:
    """Handle the errors of launches the pool finished (here, on the loop's thread, as the
    synchronous path would), and leave out the rows whose attempt the pool holds or launched:
    reconcile asks to relaunch a `starting` row the backend does not report yet."""
    for rec, _, error in pool.harvest():
        if error is not None:
            _launched(store, backend, rec, specs.spec(rec), now, error)
    pool.keep_only({(r.id, r.attempt) for r in records if r.state == "starting"})
    taken = pool.taken()
    return [r for r in records if (r.id, r.attempt) not in taken]


def _hand_over(
    store: Store, backend: Backend, pool: LaunchPool[WorkloadRecord],
    ready: list[WorkloadRecord], assignments: Mapping[str, tuple[WorkerAssignment, ...]],
    now: float, settings: ControlSettings, specs: SpecCache,
) -> int:
    """Build each attempt's launch spec here (it reads the checkpoint dir) and give the batch
    to the pool; returns how many were handed over."""
    n, items = 0, []
    for rec in ready:
        spec = specs.spec(rec)
        try:
            items.append((rec, launch_spec(rec, spec, assignments.get(rec.id, ()), settings, store)))
        except Exception as e:
            n += _launched(store, backend, rec, spec, now, e)
    pool.submit(backend, items)
    return n + len(items)


class _Missed(Exception):
    """A row changed between the read and the bulk write: roll back, go row by row."""


def _mark_starting(store: Store, backend: Backend, ready: list[WorkloadRecord],
                   waiting: list[dict[str, object]], now: float) -> list[WorkloadRecord]:
    """Commit `starting` for the scheduled ones among `ready` (one transaction); return what
    may be launched now, with the versions the store holds after the commit."""
    moves = [(r, f"attempt {r.attempt} handed to the {backend.name} backend", None)
             for r in ready if r.state == "scheduled"]
    if not moves and not waiting:
        return ready
    try:
        with store.write() as conn:
            W.update_many_versioned(conn, waiting, bump=False)  # informational: a miss is fine
            if not L.transition_many(conn, moves, State.STARTING, reason=L.LAUNCHED, now=now):
                raise _Missed
        return [_bumped(r, "starting") if r.state == "scheduled" else r for r in ready]
    except _Missed:
        pass
    out = []
    for rec, message, _ in moves:  # one by one: the rows that changed are left to next cycle
        with store.write() as conn:
            if L.transition(conn, rec, State.STARTING, reason=L.LAUNCHED, message=message,
                            now=now):
                out.append(_bumped(rec, "starting"))
    return out + [r for r in ready if r.state != "scheduled"]


def _blocked(rec: WorkloadRecord, assignments: tuple[WorkerAssignment, ...],
             busy: set[Device]) -> str | None:
    """Why `rec` must wait for its devices, or None when they are free."""
    if not busy:
        return None
    held = sorted({(a.node_id, d) for a in assignments for d in a.devices} & busy)
    if not held:
        return None
    return ("waiting for evicted work to release " +
            ", ".join(f"{node} GPU {d}" for node, d in held[:4]))


def _launch_one(
    store: Store, backend: Backend, rec: WorkloadRecord,
    assignments: tuple[WorkerAssignment, ...], now: float, settings: ControlSettings,
    specs: SpecCache,
) -> int:
    spec = specs.spec(rec)
    try:
        backend.launch(launch_spec(rec, spec, assignments, settings, store))
    except Exception as e:  # one workload must never fail the whole step
        return _launched(store, backend, rec, spec, now, e)
    return 1


def _launch_batch(
    store: Store, backend: Backend, ready: list[WorkloadRecord],
    assignments: Mapping[str, tuple[WorkerAssignment, ...]], now: float,
    settings: ControlSettings, specs: SpecCache,
) -> int:
    """Launch `ready` through the backend's bulk path where it has one (`launch_many`: one
    call for the batch, which it may carry out concurrently; each attempt's error returned in
    order, None for a launched one), else one `launch` after another. Errors are handled per
    workload either way (`_launched`)."""
    launch_many = getattr(backend, "launch_many", None)
    if launch_many is None or len(ready) < 2:
        return sum(_launch_one(store, backend, rec, assignments.get(rec.id, ()), now, settings,
                               specs) for rec in ready)
    n, prepared = 0, []
    for rec in ready:
        spec = specs.spec(rec)
        try:
            prepared.append((rec, spec, launch_spec(rec, spec, assignments.get(rec.id, ()),
                                                    settings, store)))
        except Exception as e:
            n += _launched(store, backend, rec, spec, now, e)
    errors = launch_many([ls for _, _, ls in prepared])
    for (rec, spec, _), error in zip(prepared, errors, strict=True):
        n += 1 if error is None else _launched(store, backend, rec, spec, now, error)
    return n


def _launched(store: Store, backend: Backend, rec: WorkloadRecord, spec: WorkloadSpec,
              now: float, error: Exception) -> int:
    """What a launch that raised `error` means for `rec`; 1 when it was dealt with (failed or
    restarted), 0 when it is tried again next cycle."""
    if isinstance(error, BackendUnavailable):
        log.warning("backend unavailable for %s: %s; retrying next cycle", rec.id, error)
        return 0
    if isinstance(error, InvalidRequest):  # cannot run as specified: retrying fails the same
        with store.write() as conn:
            L.transition(conn, rec, State.FAILED, reason=L.LAUNCH_FAILED, message=str(error),
                         now=now)
        return 1
    if isinstance(error, BackendError):
        with store.write() as conn:
            outcome.restart_or_fail(conn, rec, spec, now, reason=L.LAUNCH_FAILED,
                                    message=f"launch failed: {error}")
        return 1
    _fail_unlaunchable(store, backend, rec, now, error)
    return 1


def _fail_unlaunchable(store: Store, backend: Backend, rec: WorkloadRecord, now: float,
                       error: Exception) -> None:
    """A launch that raised what no backend promises (a ValueError from os.posix_spawn for a
    NUL byte, a bug): fail this workload for good with the error as its reason. Not a restart:
    the same spec would fail the same way every cycle, up to its max_restarts. Workers it may
    have started before raising are stopped (stop is idempotent and ignores unknown attempts)."""
    log.exception("launch of %s attempt %d raised; the workload fails", rec.id, rec.attempt)
    message = (f"the {backend.name} backend could not launch it: {type(error).__name__}: "
               f"{error}"[:1000])
    try:
        backend.stop(rec.id, rec.attempt, 0.0, message)
    except Exception:  # the failure is recorded either way
        log.warning("stop after the failed launch of %s raised", rec.id, exc_info=True)
    with store.write() as conn:
        L.transition(conn, rec, State.FAILED, reason=L.LAUNCH_FAILED, message=message, now=now)


def _bumped(rec: WorkloadRecord, state: str) -> WorkloadRecord:
    return dataclasses.replace(rec, state=state, version=rec.version + 1)


def enforce_runtime_limits(
    store: Store, records: Iterable[WorkloadRecord], now: float, specs: SpecCache
) -> int:
    """Ask running work past its max_runtime (jobs) or ttl (interactive) to stop."""
    n = 0
    for rec in records:
        if rec.state != "running" or rec.stop_reason is not None or rec.started_at is None:
            continue
        spec = specs.spec(rec)
        limit = spec.max_runtime if spec.max_runtime is not None else spec.ttl
        if limit is None or now - rec.started_at < limit:
            continue
        message = f"ran longer than its limit of {limit:g}s"
        with store.write() as conn:
            if W.update_versioned(conn, rec.id, rec.version, stop_reason=L.MAX_RUNTIME,
                                  stop_message=message):
                W.append_event(conn, at=now, kind="info", reason=L.MAX_RUNTIME, message=message,
                               workload_id=rec.id, attempt=rec.attempt)
                n += 1
    return n
