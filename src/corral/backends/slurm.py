"""The Slurm backend: each worker of a gang is one batch job pinned to its planned node.

    control plane                                   Slurm
    SlurmBackend.launch ─ sbatch --hold ×N ──────> N jobs: --nodes=1 --nodelist=<planned node>
                        ─ scontrol release ids ──>  --gres=gpu:<n> | shard:<k>, --no-requeue
                                                    batch script: exec local_runner -- command
    SlurmBackend.poll   ─ squeue / sacct ────────> job states; exit.json (shared work dir)
                        ─ sinfo ─────────────────> node DOWN/FAIL -> its workers LOST
    SlurmBackend.stop   ─ deadline file, then scancel --batch --signal=TERM; scancel after it

Why one job per worker: a gang's workers may need different GPU counts per node (two workers on
one node, one on another), which one job's per-node ``--gres`` cannot say. The gang is still
atomic: every job is submitted held, and released in one ``scontrol release`` only once all were
accepted; if one submission fails the others are cancelled before any ran. corral already
reserved the capacity, so the released jobs start in the same scheduling pass.

The batch script ``exec``s `corral.backends.local_runner`, the same supervisor as the local
backend, so the preemption contract is identical: deadline file first (on the shared work dir),
then SIGTERM to the worker's process group, SIGKILL at the deadline; the runner records the exit
code in ``exit.json``. ``scancel --batch --signal=TERM`` wakes the runner; a plain ``scancel``
after the deadline is the backstop.

Requirements: the work dir is on a file system the compute nodes share with the control plane
(as Slurm's own ``--output`` and ``--chdir`` usually are), and the same Python with corral sits
at the same path on the nodes (the ``python`` argument).

Devices: Slurm picks which GPUs (or which GPU's shards) a job gets and sets
CUDA_VISIBLE_DEVICES itself; corral keeps Slurm's choice, since with ``ConstrainDevices`` only
those devices are reachable. The count always equals the plan's. Without a Slurm GPU allocation
(CPU-only work) the plan's list is used, as under every other backend.

Batches (`launch_many`): single-worker attempts of one shape on one node go as one job array,
one ``sbatch --array`` for up to 1,000 of them (`corral.backends.slurm_array`: the dispatch
script, the per-task log links, and how a restarted control plane finds a task by the array's
name and index); gangs stay one held job per worker, submitted concurrently.

Lost nodes: a job whose node Slurm reports DOWN/FAIL (or whose state is NODE_FAIL) is LOST at
once. Its processes may still run on a node that is only cut off: corral fences them by writing
the deadline file (now) on the shared work dir, which the runner reads every second, and
``scancel``s the job.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from corral.backends import base, exits, local_runner
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.changes import ChangeFeed, Delta
from corral.backends.environment import (
    CUDA_VISIBLE_DEVICES,
    RESERVED,
    format_deadline,
    worker_environment,
)
from corral.backends.errors import (
    BackendError,
    BackendUnavailable,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd
from corral.backends.local_runner import CHILD_RECORD, EXIT_RECORD, read_json, write_text_atomic
from corral.backends.records import AttemptRecord, AttemptRecords, ended_attempt, statuses
from corral.backends.slurm_array import array_key, array_tasks, group_for_arrays, launch_array
from corral.backends.slurm_parse import (
    ENDED_JOB_STATES,
    JOB_LOST_STATES,
    SlurmJob,
    SlurmNode,
    gres_request,
    node_is_lost,
    parse_nodes,
    slurm_inventory,
)
from corral.backends.slurm_status import Asker, job_states
from corral.core.model import Node

__all__ = ["SlurmBackend", "job_name"]

log = logging.getLogger(__name__)
DEADLINE_FILE: Final = "preempt-deadline"
SETUP_FILE: Final = "setup.sh"  # the spec's setup lines, read by each worker's runner
_PENDING_STATES: Final = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "RESIZING"})


def job_name(workload_id: str, attempt: int, worker: int) -> str:
    return f"corral.{workload_id}.{attempt}.{worker}"


class SlurmBackend(Backend, InventorySource, LogSource):
    """Runs workers as Slurm batch jobs. See the module docstring.

    env: environment of the Slurm client commands (SLURM_CONF...), None = this process's.
    partition: submit there and offer only its nodes. gpu_model: the model of nodes whose Gres
    names no type. gpu_memory_mib: model -> MiB per device (Slurm does not report it).
    not_responding_is_lost: treat a node that stopped answering as lost before Slurm declares it
    DOWN (faster detection, more false alarms). kill_slack_s: after a stop's deadline plus this,
    a job still running is ``scancel``ed. command_timeout_s: per Slurm command. launch_threads:
    concurrent ``sbatch`` calls of one `launch_many`. status_interval_s: the least time between
    two ``squeue``/``sinfo`` rounds of `poll`; a poll in between reports ends from the runners'
    exit records and the rest as Slurm last said (0: ask on every poll). ask_in_background:
    those rounds run on a thread of their own and a poll takes the last round that finished
    (the loop never waits for a Slurm command: two client processes a second cost the loop a
    third of its time on a busy host); False: a poll that is due asks and waits.
    """

    name = "slurm"
    concurrent_launch = True  # launches run in the control plane's pool; see `_launching`

    def __init__(
        self, work_dir: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
        partition: str | None = None, provider: str = "slurm", gpu_model: str = "unknown",
        gpu_memory_mib: Mapping[str, int] | None = None, python: str | None = None,
        not_responding_is_lost: bool = False, kill_slack_s: float = 5.0,
        command_timeout_s: float = 30.0, bin_dir: str | None = None, launch_threads: int = 8,
        status_interval_s: float = 1.0, ask_in_background: bool = True,
    ) -> None:
        self.client_env = dict(env if env is not None else os.environ)
        self.partition, self.provider, self.gpu_model = partition, provider, gpu_model
        self.gpu_memory_mib = dict(gpu_memory_mib or {})
        self.python = python or sys.executable
        self.not_responding_is_lost = not_responding_is_lost
        self.kill_slack_s, self.command_timeout_s = kill_slack_s, command_timeout_s
        self.bin_dir = bin_dir
        self.launch_threads = launch_threads
        self.status_interval_s = status_interval_s
        self.records = AttemptRecords(Path(work_dir))
        self._attempts = {r.key: r for r in self.records.scan()}
        self._killed: set[str] = set()  # job ids scancel'ed after their deadline
        # Attempts whose launch is under way on another thread: poll reports them STARTING and
        # looks nothing up for them (a job not yet submitted is not a job that vanished).
        self._launching: set[tuple[str, int]] = set()
        self._lock = threading.Lock()  # guards _attempts and _launching across threads
        # Slurm is asked at most every status_interval_s (`corral.backends.slurm_status`);
        # between answers a poll reads only the runners' exit records and repeats what Slurm
        # last said of the others (`_seen`). Late-bound `_slurm`: tests count its calls.
        self._asker = Asker(lambda *a, **k: self._slurm(*a, **k), status_interval_s,
                            ask_in_background)
        self._seen: dict[tuple[str, int, int], WorkerEnd] = {}
        self._changes = ChangeFeed()  # poll_changes: the last report, to diff against
        self._pyxis: bool | None = None  # srun takes --container-image: asked once

    # --- packaging (issue 13) ------------------------------------------------------------------

    @property
    def packaging_fields(self) -> frozenset[str]:
        """The spec's packaging fields this cluster honours (`corral.control.packaging`):
        setup always (the runner runs it), image where pyxis gives srun --container-image."""
        return frozenset({"setup", "image"} if self.has_pyxis() else {"setup"})

    def has_pyxis(self) -> bool:
        """Whether srun here takes --container-image (NVIDIA's pyxis SPANK plugin, which runs
        a step in an enroot container); asked once, as `srun --help` lists a plugin's options."""
        if self._pyxis is None:
            try:
                usage = self._slurm("srun", "--help", check=False)
                self._pyxis = "--container-image" in usage.stdout + usage.stderr
            except BackendUnavailable:
                return False  # asked again next time: the answer is not known yet
        return self._pyxis

    def _adopt(self, record: AttemptRecord) -> None:
        """A record being launched: known to poll and stop, but not observed until `_landed`."""
        with self._lock:
            self._attempts[record.key] = record
            self._launching.add(record.key)

    def _landed(self, records: Sequence[AttemptRecord]) -> None:
        with self._lock:
            self._launching.difference_update(r.key for r in records)

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        self._launch(spec, None)

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """`launch` for a batch: one ``scontrol show nodes`` for all of it; single-worker
        attempts of one shape on one node go as one job array (`corral.backends.slurm_array`:
        one ``sbatch`` for up to 1,000 of them); gangs and the rest are submitted by a bounded
        pool of `launch_threads` threads (each ``sbatch`` is a round trip to slurmctld, which
        serves them concurrently), the arrays alongside. Returns each attempt's error, in
        order; None where it was launched."""
        if not specs:
            return []
        try:
            nodes = {n.name: n for n in self._nodes()}
        except BackendError as e:
            return [e for _ in specs]
        errors: list[Exception | None] = [None] * len(specs)
        arrays, lone = group_for_arrays(specs, lambda s: array_key(s, nodes, self._attempts))

        def one(i: int) -> None:
            try:
                self._launch(specs[i], nodes)
            except Exception as e:  # handed back to the caller, per attempt
                errors[i] = e

        def array(members: list[int]) -> None:
            try:
                results = launch_array(self, [specs[i] for i in members], nodes)
            except Exception as e:  # what no refusal explains (a bug): each member's error
                results = [e for _ in members]
            for i, error in zip(members, results, strict=True):
                errors[i] = error

        with ThreadPoolExecutor(max_workers=self.launch_threads,
                                thread_name_prefix="slurm-launch") as pool:
            done = [pool.submit(array, m) for m in arrays] + [pool.submit(one, i) for i in lone]
            for f in done:
                f.result()
        return errors

    def _launch(self, spec: LaunchSpec, nodes: dict[str, SlurmNode] | None) -> None:
        AttemptRecords.check_id(spec, "Slurm")
        if self.records.existing(spec) is not None:
            return
        if nodes is None:
            nodes = {n.name: n for n in self._nodes()}
        self._check_placement(spec, nodes)
        record = self.records.create(spec, {"jobs": {}, "notes": {}})
        self._adopt(record)
        try:
            self._prepare_dirs(record)
            self._submit_all(record, spec, nodes)
        finally:
            self._landed([record])

    def _submit_all(self, record: AttemptRecord, spec: LaunchSpec,
                    nodes: dict[str, SlurmNode]) -> None:
        gang = len(spec.assignments) > 1
        try:
            master = nodes[_master_node(spec)].address
            for a in sorted(spec.assignments, key=lambda a: a.worker):
                self._submit(record, a, nodes[a.node_id], master, hold=gang)
            if gang:
                self._slurm("scontrol", "release", ",".join(record.engine["jobs"].values()))
        except (BackendUnavailable, subprocess.CalledProcessError) as e:
            self._cancel(list(record.engine["jobs"].values()))
            for a in spec.assignments:
                record.end(a.worker, exits.lost(base.LAUNCH_INTERRUPTED, f"launch failed: {e}"))
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
            raise LaunchError(f"{spec.workload_id} attempt {spec.attempt}: Slurm refused a "
                              f"worker: {detail}; the submitted jobs were cancelled; relaunch "
                              "with a new attempt") from e

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        if grace_seconds < 0:
            raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
        record = self._attempts.get((workload_id, attempt))
        if record is None or record.all_ended:
            return
        stop = record.request_stop(grace_seconds, reason)
        if (workload_id, attempt) in self._launching:
            # its jobs may not be submitted yet: the deadline file stops the worker as its
            # runner starts, and poll cancels whatever runs past the deadline; the loop calls
            # stop again every cycle
            if stop is not None:
                write_text_atomic(record.dir / DEADLINE_FILE, format_deadline(stop.deadline))
            return
        if stop is None:  # a repeat: only make sure the deadline file says what was recorded
            known = record.stop()
            if known is not None and not (record.dir / DEADLINE_FILE).exists():
                write_text_atomic(record.dir / DEADLINE_FILE, format_deadline(known.deadline))
            return
        # Deadline first, signal second: the order the contract promises the worker.
        write_text_atomic(record.dir / DEADLINE_FILE, format_deadline(stop.deadline))
        jobs = self._jobs_of(record)
        states = job_states(self._slurm, list(jobs.values()))
        waiting = [j for j in jobs.values() if states.get(j) and states[j].state in _PENDING_STATES]
        running = [j for j in jobs.values() if j not in waiting]
        self._cancel(waiting)  # never started: nothing to warn
        if running:
            self._slurm("scancel", "--batch", "--signal=TERM", *running, check=False)

    def poll(self, now: float) -> list[WorkerStatus]:
        with self._lock:
            attempts, launching = dict(self._attempts), set(self._launching)
        if not attempts:
            return []
        answer = self._asker.answer(lambda: self._what_to_ask(attempts, launching))

        def observe(record: AttemptRecord, a: Any) -> WorkerEnd:
            if record.key in launching and a.worker not in record.ends:
                return WorkerEnd(WorkerState.STARTING, base.STARTING)
            if answer is None or record.key not in answer.asked:
                return self._observe_records(record, a.worker)
            end = self._observe(record, a.worker, a.node_id, answer.jobs, answer.nodes)
            if not end.state.ended:
                self._seen[(*record.key, a.worker)] = end
            return end
        return statuses(attempts, now, observe)

    def poll_changes(self, now: float) -> Delta:
        """`poll`, as only the attempts whose report changed since the last call, and those no
        longer reported (`corral.backends.changes`): the loop reconciles what moved."""
        return self._changes.delta(self.poll(now))

    def _what_to_ask(self, attempts: Mapping[tuple[str, int], AttemptRecord],
                     launching: set[tuple[str, int]]) -> tuple[frozenset[tuple[str, int]],
                                                               list[str]]:
        """The attempts a round of Slurm's answers is about, and their workers' job ids."""
        asked = frozenset(k for k in attempts if k not in launching)
        return asked, sorted({j for k in asked if not attempts[k].all_ended
                              for j in self._jobs_of(attempts[k]).values()})

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

    def release(self, workload_id: str, attempt: int) -> None:
        record = ended_attempt(self._attempts, workload_id, attempt, self.poll)
        if record is None:
            return
        # The marker only spares a restarted backend from reporting this attempt again, and
        # a report again is released again (idempotent): written off the loop's thread, as
        # creating a file cost ~6 ms here (9% of the loop's time for 300 one-GPU jobs).
        self._asker.later(AttemptRecords.mark_released, record)
        with self._lock:
            del self._attempts[record.key]
        for a in record.spec.assignments:
            self._seen.pop((*record.key, a.worker), None)

    # --- capabilities --------------------------------------------------------------------------

    def inventory(self) -> list[Node]:
        return slurm_inventory(self._nodes(), provider=self.provider, gpu_model=self.gpu_model,
                               gpu_memory_mib=self.gpu_memory_mib, partition=self.partition,
                               not_responding_is_lost=self.not_responding_is_lost)

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        if offset < 0 or max_bytes <= 0:
            raise InvalidRequest("offset", "offset must be >= 0 and max_bytes > 0")
        record = self.records.find(workload_id, attempt)
        if not any(a.worker == worker for a in record.spec.assignments):
            raise UnknownAttempt(f"{workload_id} attempt {record.spec.attempt} has no worker "
                                 f"{worker}")
        try:
            with open(record.log_path(worker), "rb") as f:
                f.seek(offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        return chunk, offset + len(chunk)

    # --- launching -----------------------------------------------------------------------------

    def _check_placement(self, spec: LaunchSpec, nodes: dict[str, SlurmNode]) -> None:
        for a in spec.assignments:
            node = nodes.get(a.node_id)
            if node is None:
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id!r} "
                                        f"is not a Slurm node here ({sorted(nodes)})")
            if node_is_lost(node.state, not_responding_is_lost=self.not_responding_is_lost):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} "
                                        f"is {node.state} in Slurm")
            if any(d >= node.gpus for d in a.devices):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} "
                                        f"has {node.gpus} GPUs, the plan gives {list(a.devices)}")
            if a.milli_per_device < 1000 and len(a.devices) > 1:
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: a share of a GPU "
                                        f"must be on one device, got {list(a.devices)}")
        if spec.working_dir is not None and not Path(spec.working_dir).is_dir():
            raise InvalidLaunchSpec("working_dir", f"{spec.working_dir!r} is not a directory: "
                                    "create it or fix the path")
        if spec.image is not None and not self.has_pyxis():
            raise InvalidLaunchSpec("image", "this Slurm cluster's srun has no "
                                    "--container-image (pyxis is not installed): install pyxis "
                                    "and enroot on it, or remove image")
        if spec.workdir is not None:
            raise InvalidLaunchSpec("workdir", "the Slurm backend does not copy a workdir yet: "
                                    "put the code on storage the nodes see, in working_dir")

    def _prepare_dirs(self, record: AttemptRecord) -> None:
        try:
            if record.spec.log_dir:
                Path(record.spec.log_dir).mkdir(parents=True, exist_ok=True)
            if record.spec.checkpoint_dir:
                Path(record.spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidLaunchSpec("checkpoint_dir" if record.spec.checkpoint_dir else "log_dir",
                                    f"cannot create {e.filename}: {e.strerror}") from e

    def _submit(self, record: AttemptRecord, a: Any, node: SlurmNode, master: str, *,
                hold: bool = True) -> None:
        spec = record.spec
        gres, note = gres_request(len(a.devices), a.milli_per_device, node.shards_per_gpu,
                                  node.gres_name)
        script = record.dir / f"worker-{a.worker}.sbatch"
        script.write_text(self._script(record, a, note, master))
        name = job_name(spec.workload_id, spec.attempt, a.worker)
        args = ["--parsable", *(["--hold"] if hold else []), f"--job-name={name}", "--nodes=1", "--ntasks=1", f"--nodelist={a.node_id}", "--no-requeue",
                f"--output={record.log_path(a.worker)}", "--open-mode=append",
                f"--chdir={spec.working_dir or record.dir}",
                f"--comment=corral workload={spec.workload_id} attempt={spec.attempt} "
                f"worker={a.worker}"]
        if gres:
            args.append(f"--gres={gres}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        out = self._slurm("sbatch", *args, str(script)).stdout.strip()
        record.engine["jobs"][str(a.worker)] = out.split(";", 1)[0]
        if note:
            record.engine["notes"][str(a.worker)] = note
        AttemptRecords.save(record)

    def _script(self, record: AttemptRecord, a: Any, note: str, master: str, *,
                chdir: str | None = None) -> str:
        """The worker's batch script. `chdir`: where it changes to first (an array task: the
        array has one ``--chdir`` for all its tasks)."""
        spec = record.spec
        wdir = record.dir / f"worker-{a.worker}"
        wdir.mkdir(exist_ok=True)
        env = worker_environment(spec, a, master_addr=master, master_port=_master_port(spec),
                                 deadline_file=str(record.dir / DEADLINE_FILE))
        planned = env.pop(CUDA_VISIBLE_DEVICES)
        lines = ["#!/bin/sh", f"# corral: {spec.workload_id} attempt {spec.attempt} worker "
                 f"{a.worker}; generated, do not edit"]
        if chdir is not None:
            lines.append(f"cd {shlex.quote(chdir)} || exit 1")
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        # Slurm's own device choice wins when it made one (see the module docstring).
        lines.append('if [ -z "${SLURM_JOB_GPUS:-}" ]; then export CUDA_VISIBLE_DEVICES='
                     f"{shlex.quote(planned)}; fi")
        if note:
            lines.append(f"echo {shlex.quote('[corral] ' + note)} >&2")
        runner = [*local_runner.runner_argv(self.python), "--record-dir", str(wdir),
                  "--deadline-file", str(record.dir / DEADLINE_FILE), "--cwd",
                  spec.working_dir or "", *self._setup_args(record), "--",
                  *container_argv(spec.image, spec.working_dir, spec.argv(), spec.volumes)]
        lines.append("exec " + " ".join(shlex.quote(x) for x in runner))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _setup_args(record: AttemptRecord) -> list[str]:
        """The runner's --setup-file: the spec's setup lines, written beside the records (the
        nodes see the record dir, as they see the runner's own records)."""
        if record.spec.setup is None:
            return []
        path = record.dir / SETUP_FILE
        if not path.exists():
            write_text_atomic(path, record.spec.setup, mode=0o600)
        return ["--setup-file", str(path)]

    # --- observing -----------------------------------------------------------------------------

    def _jobs_of(self, record: AttemptRecord) -> dict[str, str]:
        """worker -> job id; a job submitted just before a crash is found again by its name
        (a lone job: the worker's own name; an array task: the array's name and the task
        index the record was created with, see `corral.backends.slurm_array`)."""
        jobs: dict[str, str] = record.engine["jobs"]
        missing = [a for a in record.spec.assignments if str(a.worker) not in jobs]
        array = record.engine.get("array")
        for a in missing:
            if array is not None:
                found = array_tasks(self._slurm, array["name"]).get(int(array["task"]))
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
        if job.state in _PENDING_STATES or not (wdir / CHILD_RECORD).exists():
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

    # --- the cluster ---------------------------------------------------------------------------

    def _nodes(self) -> list[SlurmNode]:
        return parse_nodes(self._slurm("scontrol", "show", "nodes", "-o").stdout)

    def _cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._slurm("scancel", *job_ids, check=False)

    def _slurm(self, command: str, *args: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        program = str(Path(self.bin_dir) / command) if self.bin_dir else command
        env = {k: v for k, v in self.client_env.items() if k not in RESERVED}
        try:
            return subprocess.run([program, *args], env=env, capture_output=True, text=True,
                                  timeout=self.command_timeout_s, check=check)
        except FileNotFoundError as e:
            raise BackendUnavailable(f"{command} is not installed here (install slurm-wlm's "
                                     "client commands, or pass bin_dir)") from e
        except subprocess.TimeoutExpired as e:
            raise BackendUnavailable(f"{command} did not answer in {self.command_timeout_s:g}s: "
                                     "is slurmctld up?") from e
        except subprocess.CalledProcessError as e:
            if "Unable to contact slurm controller" in (e.stderr or ""):
                raise BackendUnavailable(f"{command}: {e.stderr.strip()}") from e
            raise


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


def container_argv(image: str | None, cwd: str | None, argv: Sequence[str],
                   volumes: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The worker's command in `image` through pyxis: one srun step in the job's allocation,
    in an enroot container of the image, in `cwd` when given, with the spec's volumes as
    --container-mounts (host:mount, `:ro` when read-only). The batch script's environment, the
    contract's variables included, passes into the step, as srun passes it by default."""
    if image is None:
        return list(argv)
    workdir = [f"--container-workdir={cwd}"] if cwd else []
    binds = ",".join(f"{v['host_path']}:{v['mount']}" + (":ro" if v.get("read_only") else "")
                     for v in volumes if v.get("host_path"))
    mounts = [f"--container-mounts={binds}"] if binds else []
    return ["srun", "--ntasks=1", f"--container-image={image}", *workdir, *mounts, *argv]


def _master_node(spec: LaunchSpec) -> str:
    return next(a.node_id for a in spec.assignments if a.worker == 0)


def _master_port(spec: LaunchSpec) -> int:
    """A port for worker 0's rendezvous, the same on every launch of this attempt (so a relaunch
    writes an equal script): 20000-29999 from the workload id and attempt. Not checked free;
    as with torchrun's own choice, a clash shows as a failed rendezvous."""
    return 20000 + zlib.crc32(f"{spec.workload_id}/{spec.attempt}".encode()) % 10000
