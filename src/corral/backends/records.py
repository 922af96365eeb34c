"""The control plane's own records of what a remote-engine backend launched.

The Ray, Slurm and Kubernetes backends keep, on the control plane's disk, one folder per attempt
(the local backend has its own richer layout). These records make a restarted control plane
re-adopt what it launched, keep a worker's end known after the engine forgot it, and make
``launch`` idempotent::

    <work>/<workload>/<attempt>/launch.json          spec + engine handles (job ids, actor names)
    <work>/<workload>/<attempt>/stop.json            first stop reason, deadline, requested_at
    <work>/<workload>/<attempt>/worker-<i>.end.json  how the worker ended, once known
    <work>/<workload>/<attempt>/worker-<i>.log       collected or engine-written output
    <work>/<workload>/<attempt>/released             release() was called

Every write is atomic (temp file, fsync, rename). A record of another version, or a torn one, is
skipped (listed in `unreadable`), never fatal.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from corral.backends.base import LAUNCH_INTERRUPTED, LaunchSpec, WorkerStatus
from corral.backends.errors import (
    AttemptStillRunning,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchConflict,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd, load_status, lost, save_status
from corral.backends.local_runner import read_json, write_json_atomic
from corral.core.model import WorkerAssignment

__all__ = ["SAFE_ID", "AttemptRecord", "AttemptRecords", "StopRecord", "ended_attempt", "statuses",
           "to_stop"]

LAUNCH: Final = "launch.json"
STOP: Final = "stop.json"
RELEASED: Final = "released"
VERSION: Final = 1
SAFE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class StopRecord:
    reason: str
    deadline: float  # unix seconds on the control plane's clock
    requested_at: float


@dataclass
class AttemptRecord:
    """One launched attempt. `engine`: what the backend needs to find its workers again."""

    spec: LaunchSpec
    dir: Path
    engine: dict[str, Any]
    launched_at: float
    ends: dict[int, WorkerEnd] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return self.spec.workload_id, self.spec.attempt

    def log_path(self, worker: int) -> Path:
        base = Path(self.spec.log_dir) if self.spec.log_dir else self.dir
        return base / f"worker-{worker}.log"

    def stop(self) -> StopRecord | None:
        data = read_json(self.dir / STOP)
        if data is None:
            return None
        return StopRecord(str(data["reason"]), float(data["deadline"]),
                          float(data["requested_at"]))

    def request_stop(self, grace_seconds: float, reason: str) -> StopRecord | None:
        """Record a stop; None when an earlier request already has an earlier deadline (a repeat
        never extends a deadline, a shorter grace brings it forward, the first reason stays)."""
        now = time.time()
        previous = self.stop()
        deadline = now + grace_seconds
        if previous is not None and previous.deadline <= deadline:
            return None
        record = StopRecord(previous.reason if previous else reason, deadline, now)
        write_json_atomic(self.dir / STOP, {"reason": record.reason, "deadline": deadline,
                                            "requested_at": now})
        return record

    def end(self, worker: int, end: WorkerEnd) -> WorkerEnd:
        """Record a worker's end once; later calls keep the first one."""
        known = self.ends.get(worker)
        if known is not None:
            return known
        save_status(self.dir / f"worker-{worker}.end.json", end)
        self.ends[worker] = end
        return end

    def end_launch_failed(self, error: BaseException) -> None:
        """A launch that failed part-way: every worker not yet ended is lost, so the attempt
        reads as ended and the loop relaunches with a new attempt."""
        for a in self.spec.assignments:
            self.end(a.worker, lost(LAUNCH_INTERRUPTED, f"launch failed: {error}"))

    @property
    def all_ended(self) -> bool:
        return len(self.ends) == self.spec.workers


class AttemptRecords:
    """The folder of attempt records of one backend instance (one control plane at a time)."""

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.unreadable: list[Path] = []

    @staticmethod
    def check_id(spec: LaunchSpec, backend: str) -> None:
        if not SAFE_ID.fullmatch(spec.workload_id):
            raise InvalidLaunchSpec(
                "workload_id", f"{spec.workload_id!r}: the {backend} backend keeps each workload "
                "in a folder and names engine objects after it; use letters, digits, '.', '_' "
                "and '-' (200 at most), starting with a letter or digit")

    def dir_of(self, workload_id: str, attempt: int) -> Path:
        return self.root / workload_id / str(attempt)

    def existing(self, spec: LaunchSpec) -> AttemptRecord | None:
        """The record of this (workload, attempt) if it was launched; LaunchConflict if it was
        launched with another spec or its record cannot be read."""
        adir = self.dir_of(spec.workload_id, spec.attempt)
        if not (adir / LAUNCH).exists():
            return None
        known = self.load(adir)
        if known is None:
            raise LaunchConflict(f"{adir / LAUNCH} exists but cannot be read: relaunch with a "
                                 "new attempt number")
        if known.spec != spec:
            raise LaunchConflict(f"{spec.workload_id} attempt {spec.attempt} was launched with "
                                 "another spec: relaunch with a new attempt number")
        return known

    def create(self, spec: LaunchSpec, engine: dict[str, Any], *,
               durable: bool = True) -> AttemptRecord:
        """durable False: the caller makes it durable with `sync` before the engine runs
        anything of it (a batch's records, one pass of fsyncs for all)."""
        adir = self.dir_of(spec.workload_id, spec.attempt)
        adir.mkdir(parents=True, exist_ok=True)
        record = AttemptRecord(spec, adir, dict(engine), time.time())
        self.save(record, durable=durable)
        return record

    @staticmethod
    def sync(records: Iterable[AttemptRecord]) -> None:
        """Put records written with durable=False on disk. One pass over a batch costs about
        one fsync where a fsync per record costs one each (the first flushes the journal the
        others are in): 32 records 11-15 ms against 11-126 ms here, busy disk."""
        for record in records:
            fd = os.open(record.dir / LAUNCH, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @staticmethod
    def save(record: AttemptRecord, *, durable: bool = True) -> None:
        """durable False: for what a restarted backend can find again without it (an engine
        handle it can look up by name), never for the first record of an attempt."""
        write_json_atomic(record.dir / LAUNCH, {
            "version": VERSION, "spec": record.spec.as_record(), "engine": record.engine,
            "launched_at": record.launched_at}, durable=durable)

    def load(self, adir: Path) -> AttemptRecord | None:
        data = read_json(adir / LAUNCH)
        if data is None or data.get("version") != VERSION:
            return None
        try:
            spec = LaunchSpec.from_record(data["spec"])
            record = AttemptRecord(spec, adir, dict(data["engine"]), float(data["launched_at"]))
        except (KeyError, TypeError, ValueError):
            return None
        for a in spec.assignments:
            end = load_status(adir / f"worker-{a.worker}.end.json")
            if end is not None:
                record.ends[a.worker] = end
        return record

    def scan(self) -> Iterator[AttemptRecord]:
        """Every launched, unreleased attempt."""
        for launch in sorted(self.root.glob(f"*/*/{LAUNCH}")):
            adir = launch.parent
            if (adir / RELEASED).exists():
                continue
            record = self.load(adir)
            if record is None:
                self.unreadable.append(launch)
            else:
                yield record

    @staticmethod
    def mark_released(record: AttemptRecord) -> None:
        (record.dir / RELEASED).touch()

    def find(self, workload_id: str, attempt: int | None) -> AttemptRecord:
        """A launched attempt (released or not); attempt None = the latest one."""
        wdir = self.root / workload_id
        if not SAFE_ID.fullmatch(workload_id) or not wdir.is_dir():
            raise UnknownAttempt(f"workload {workload_id!r} was never launched here")
        if attempt is None:
            numbers = sorted(int(p.name) for p in wdir.iterdir()
                             if p.name.isdigit() and (p / LAUNCH).exists())
            if not numbers:
                raise UnknownAttempt(f"workload {workload_id!r} was never launched here")
            attempt = numbers[-1]
        record = self.load(wdir / str(attempt))
        if record is None:
            raise UnknownAttempt(f"workload {workload_id!r} has no attempt {attempt} here")
        return record


def to_stop(attempts: Mapping[tuple[str, int], AttemptRecord], workload_id: str, attempt: int,
            grace_seconds: float) -> AttemptRecord | None:
    """The record a `stop` call acts on: None where the attempt is unknown or already over (a
    stop is idempotent). A negative grace is the caller's mistake, refused naming the field."""
    if grace_seconds < 0:
        raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
    record = attempts.get((workload_id, attempt))
    if record is None or record.all_ended:
        return None
    return record


def statuses(
    attempts: dict[tuple[str, int], AttemptRecord], now: float,
    observe: Callable[[AttemptRecord, WorkerAssignment], WorkerEnd],
) -> list[WorkerStatus]:
    """Every known worker's status, in a stable order (attempt, then worker): the shared tail of
    each engine's `poll`, which only differs in how it observes one worker."""
    out: list[WorkerStatus] = []
    for key in sorted(attempts):
        record = attempts[key]
        for a in sorted(record.spec.assignments, key=lambda a: a.worker):
            out.append(observe(record, a).status(key[0], key[1], a.worker, a.node_id, now))
    return out


def ended_attempt(
    attempts: dict[tuple[str, int], AttemptRecord], workload_id: str, attempt: int,
    poll: Callable[[float], object],
) -> AttemptRecord | None:
    """The shared head of `release`: the attempt's record once a fresh poll shows every worker
    ended; None for an attempt this backend does not know (release is idempotent).

    Raises AttemptStillRunning while a worker has not ended. An attempt whose every end is
    already recorded needs no poll (ends are kept first-seen): the loop releases each ended
    attempt right after a poll, and one poll per release made releasing N jobs N full polls."""
    record = attempts.get((workload_id, attempt))
    if record is None:
        return None
    if not record.all_ended:
        poll(time.time())
    running = [a.worker for a in record.spec.assignments if a.worker not in record.ends]
    if running:
        raise AttemptStillRunning(
            f"{workload_id} attempt {attempt}: workers {running} have not ended; stop first")
    return record
