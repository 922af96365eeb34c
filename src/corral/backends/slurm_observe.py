"""What a Slurm worker's state is: from Slurm's last answer (job and node states), the worker's
runner's records on the shared work dir (``exit.json``, the child's record), and the stop
requested; lost workers fenced, a stop's deadline enforced (`SlurmObservation`, mixed into
`corral.backends.slurm.SlurmBackend`).

Split out of ``slurm.py`` by what it decides: ``slurm_submit.py`` decides what Slurm is asked to
run; this module reads what became of it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from corral.backends import base, exits, local_runner
from corral.backends.base import WorkerState
from corral.backends.environment import format_deadline
from corral.backends.exits import WorkerEnd
from corral.backends.local_runner import CHILD_RECORD, EXIT_RECORD, read_json, write_text_atomic
from corral.backends.records import AttemptRecord, AttemptRecords
from corral.backends.slurm_array import array_tasks
from corral.backends.slurm_gang import HET_KEY, het_components
from corral.backends.slurm_parse import ENDED_JOB_STATES, JOB_LOST_STATES, SlurmJob, node_is_lost
from corral.backends.slurm_submit import DEADLINE_FILE, job_name

__all__ = ["PENDING_STATES", "SlurmObservation"]

PENDING_STATES: Final = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "RESIZING"})


class SlurmObservation:
    """The observing half of `SlurmBackend` (a mixin: it uses the backend's settings, the job
    ids it killed, what Slurm last said, and its Slurm commands)."""

    not_responding_is_lost: bool
    kill_slack_s: float
    _killed: set[str]
    _seen: dict[tuple[str, int, int], WorkerEnd]
    _slurm: Callable[..., subprocess.CompletedProcess[str]]
    _cancel: Callable[[Sequence[str]], None]

    def _observe_records(self, record: AttemptRecord, worker: int) -> WorkerEnd:
        """Between two asks of Slurm: ends from the runners' exit records (a file read),
        everything else as Slurm last said, or as the runner's records say before Slurm
        said anything."""
        known = record.ends.get(worker)
        if known is not None:
            return known
        wdir = record.dir / f"worker-{worker}"
        exit_record = read_json(wdir / EXIT_RECORD)
        if exit_record is not None:
            stop = record.stop()
            return _ended_by_runner(record, worker, exit_record, stop)
        seen = self._seen.get((*record.key, worker))
        if seen is not None:
            return seen
        # not yet in an answer of Slurm's (a new backend's first polls): the runner's word
        started = (wdir / CHILD_RECORD).exists()
        return WorkerEnd(WorkerState.RUNNING, base.RUNNING) if started else WorkerEnd(
            WorkerState.STARTING, base.STARTING)

    def _jobs_of(self, record: AttemptRecord) -> dict[str, str]:
        """worker -> job id; a job submitted just before a crash is found again by its name
        (a lone job: the worker's own name; an array task: the array's name and the task
        index the record was created with, see `corral.backends.slurm_array`)."""
        jobs: dict[str, str] = record.engine["jobs"]
        missing = [a for a in record.spec.assignments if str(a.worker) not in jobs]
        array, het = record.engine.get("array"), record.engine.get(HET_KEY)
        workers = sorted(a.worker for a in record.spec.assignments)
        for a in missing:
            if array is not None:
                found = array_tasks(self._slurm, array["name"]).get(int(array["task"]))
            elif het is not None:  # one component per worker, in worker order
                found = het_components(self._slurm, het["name"]).get(workers.index(a.worker))
            else:
                name = job_name(record.spec.workload_id, record.spec.attempt, a.worker)
                ids = self._slurm("squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i",
                                  check=False).stdout.split()
                found = ids[0] if ids else None
            if found:
                jobs[str(a.worker)] = found
                AttemptRecords.save(record)
        return dict(jobs)

    def _observe(self, record: AttemptRecord, worker: int, node_id: str,
                 states: dict[str, SlurmJob], node_states: dict[str, str]) -> WorkerEnd:
        known = record.ends.get(worker)
        if known is not None:
            return known
        job_id = record.engine["jobs"].get(str(worker), "")
        job = states.get(job_id)
        wdir = record.dir / f"worker-{worker}"
        exit_record = read_json(wdir / EXIT_RECORD)  # read after the job state: see poll order
        stop = record.stop()
        if exit_record is not None:
            return _ended_by_runner(record, worker, exit_record, stop)
        node_state = node_states.get(node_id, "")
        if (job is not None and job.state in JOB_LOST_STATES) or (
                job is not None and job.state not in ENDED_JOB_STATES and node_is_lost(
                    node_state, not_responding_is_lost=self.not_responding_is_lost)):
            self._fence(record, job_id)
            what = job.state if job.state in JOB_LOST_STATES else f"node {node_state}"
            return record.end(worker, exits.lost(base.NODE_LOST, f"Slurm job {job_id}: {what}",
                                                 time.time()))
        if job is None or job.state in ENDED_JOB_STATES:
            return record.end(worker, self._ended_without_record(job_id, job, wdir, stop))
        if job.state in PENDING_STATES or not (wdir / CHILD_RECORD).exists():
            return self._enforce_deadline(record, job_id, WorkerEnd(WorkerState.STARTING,
                                                                    base.STARTING))
        return self._enforce_deadline(record, job_id, WorkerEnd(WorkerState.RUNNING, base.RUNNING))

    @staticmethod
    def _ended_without_record(job_id: str, job: SlurmJob | None, wdir: Path,
                              stop: Any) -> WorkerEnd:
        started = (wdir / CHILD_RECORD).exists()
        what = f"Slurm job {job_id} {job.state}" if job else f"Slurm job {job_id} is unknown"
        if stop is not None:
            reason = base.KILLED_AFTER_GRACE if started else base.STOPPED_BEFORE_START
            return WorkerEnd(WorkerState.STOPPED, reason, -9 if started else None, time.time(),
                             f"{stop.reason} ({what})")
        return exits.lost(base.PROCESS_GONE, f"{what} without an exit record from its runner",
                          time.time())

    def _enforce_deadline(self, record: AttemptRecord, job_id: str, end: WorkerEnd) -> WorkerEnd:
        stop = record.stop()
        if (stop is not None and job_id not in self._killed
                and time.time() >= stop.deadline + self.kill_slack_s):
            self._killed.add(job_id)
            self._cancel([job_id])
        return end

    def _fence(self, record: AttemptRecord, job_id: str) -> None:
        """Stop what may still run of a lost worker: a deadline of now on the shared work dir
        (its runner reads it every second) and a scancel that Slurm applies once it can."""
        if not (record.dir / DEADLINE_FILE).exists() or (
                local_runner.read_deadline(record.dir / DEADLINE_FILE) or 0) > time.time():
            write_text_atomic(record.dir / DEADLINE_FILE, format_deadline(time.time()))
        self._cancel([job_id])


def _ended_by_runner(record: AttemptRecord, worker: int, exit_record: dict[str, Any],
                     stop: Any) -> WorkerEnd:
    """The end a worker's runner recorded. Kept in memory only: the runner's exit record is
    already durable on the shared work dir (written with an fsync) and a new backend reads the
    same end from it, so a second fsynced copy per worker (one per job, on the poll's path)
    adds nothing. Ends Slurm alone tells (lost, gone) are still saved (`AttemptRecord.end`)."""
    known = record.ends.get(worker)
    if known is None:
        known = record.ends[worker] = exits.ended_from_record(exit_record,
                                                              stop.reason if stop else "")
    return known
