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
reserved the capacity, so the released jobs start in the same scheduling pass. With
``gang_as_one_job``, a gang whose workers are each on a node of their own goes as one
heterogeneous job instead, one component per worker (`corral.backends.slurm_gang`).

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

Where each part lives: this module holds the interface (launch, stop, poll, release) and the
Slurm commands; `corral.backends.slurm_submit` decides what Slurm is asked to run and where
(placement checks, batch scripts, ``sbatch`` options), `corral.backends.slurm_observe` what
became of it (a worker's state from Slurm's answers and its runner's records, deadlines,
fencing); `slurm_array` and `slurm_gang` the two bulk shapes; `slurm_status` when Slurm is
asked; `slurm_parse` its answers.

Lost nodes: a job whose node Slurm reports DOWN/FAIL (or whose state is NODE_FAIL) is LOST at
once. Its processes may still run on a node that is only cut off: corral fences them by writing
the deadline file (now) on the shared work dir, which the runner reads every second, and
``scancel``s the job.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from corral.backends import base, exits
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.changes import ChangeFeed, Delta
from corral.backends.environment import RESERVED, format_deadline
from corral.backends.errors import (
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd
from corral.backends.local_runner import EXIT_RECORD, write_text_atomic
from corral.backends.records import (
    AttemptRecord,
    AttemptRecords,
    ended_attempt,
    statuses,
    to_stop,
)
from corral.backends.slurm_array import array_key, group_for_arrays, launch_array
from corral.backends.slurm_gang import HET_KEY, fits_one_job, gang_job_name
from corral.backends.slurm_observe import PENDING_STATES, SlurmObservation
from corral.backends.slurm_parse import (
    SlurmNode,
    node_is_lost,
    parse_nodes,
    slurm_inventory,
)
from corral.backends.slurm_pilot import (
    PILOT_KEY,
    Pilots,
    after_restart,
    launch_pilots,
    taken_by,
    unclaimed_end,
    withdraw,
)
from corral.backends.slurm_status import Asker, job_states
from corral.backends.slurm_submit import DEADLINE_FILE, SlurmSubmission, container_argv, job_name
from corral.core.model import Node

__all__ = ["DEADLINE_FILE", "DEFAULT_WARM_SLOTS", "MAX_WARM_SLOTS", "SlurmBackend",
           "check_warm_slots", "container_argv", "job_name"]

log = logging.getLogger(__name__)
#: the most exit records one `changed_since_poll` stats (~3 us each on this VM): called every
#: `coalesce_s` (0.05 s) while the loop waits, a pool with 10,000 running workers would stat
#: them all 20 times a second (0.7 s of CPU a second); bounded, a sweep takes count / 200 calls
#: and the loop's interval catches what the sweep has not reached yet
WATCH_BATCH = 200

#: the most pilots a (node, --gres) may keep queued ahead of work: each idle one holds a GPU
#: (or shard) of Slurm's for `pilot_idle_s`, so more than a node's GPUs only idles them
MAX_WARM_SLOTS = 64

#: warm slots unless told otherwise (`corral up --backend slurm`, `SlurmBackend()`): spare
#: pilots queued per (node, --gres) beyond the workers waiting there (issue 16). Without them
#: each worker pays Slurm's start of a new job after corral saw its GPU free (0.44-0.60x of
#: Slurm alone's jobs/s at 1,000 jobs); with 2 and reuse 0.94-1.16x at 1,000 jobs, 0.77-1.42x
#: at 200 (bench/README, "Through a real Slurm", "warm slots by default"). Small, because each
#: idle pilot holds a GPU of Slurm's for `pilot_idle_s` and a spare waits in Slurm's queue as
#: a job pinned to its node; with reuse the spares matter only at a ramp or where a pilot left.
#: `ServerConfig.slurm_warm_slots` repeats it (the CLI starts without the engines' modules).
DEFAULT_WARM_SLOTS = 2

#: the longest a pilot keeps taking workers: a worker it takes starts that far into the
#: pilot's Slurm time limit, which a cluster's partition may set in hours
MAX_PILOT_REUSE_S = 3600.0


def check_warm_slots(warm_slots: object) -> int:
    """`warm_slots` as given by a user (`corral up --slurm-warm-slots`, the constructor), or a
    clear error naming it and the fix."""
    if isinstance(warm_slots, bool) or not isinstance(warm_slots, int):
        raise InvalidRequest("warm_slots", f"{warm_slots!r} is not a whole number of pilots: "
                             "give 0 (off) to a few, such as 1 or 2 per node")
    if not 0 <= warm_slots <= MAX_WARM_SLOTS:
        raise InvalidRequest("warm_slots", f"{warm_slots} is outside 0..{MAX_WARM_SLOTS}: it "
                             "counts pilot jobs queued per node and GPU shape ahead of work, "
                             "each holding a GPU while idle; give 0 (off) to a few, such as 1 "
                             "or 2")
    return warm_slots


class SlurmBackend(SlurmSubmission, SlurmObservation, Backend, InventorySource, LogSource):
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
    gang_as_one_job: a gang whose workers are each on a node of their own goes as one
    heterogeneous job (`corral.backends.slurm_gang`: all-or-nothing in Slurm's own scheduler,
    but started only by its backfill pass); False: one held job per worker, released together.
    node_cache_s: how long a batch's placement checks reuse the last ``scontrol show nodes``.
    warm_slots: in `launch_many`, single workers go to pilot jobs queued on their node ahead of
    the work, this many more per (node, --gres) than workers waiting (`corral.backends.
    slurm_pilot`: Slurm starts a pilot as a GPU frees, while corral is still deciding);
    `DEFAULT_WARM_SLOTS` unless given; 0: off (each single worker its own Slurm job, as an
    array task: Slurm's accounting sees one job per worker, and no pilot holds a GPU idle).
    pilot_idle_s: how long a pilot with nothing to run holds its GPU before it exits.
    pilot_reuse_s: a pilot whose worker ended takes the next worker queued on its node and
    shape (no new Slurm job) while it is younger than this; 0: one worker a pilot. A worker a
    pilot took thus starts at most this long into the pilot's Slurm time limit.
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
        gang_as_one_job: bool = False, node_cache_s: float = 5.0,
        warm_slots: int = DEFAULT_WARM_SLOTS,
        pilot_idle_s: float = 2.0, pilot_reuse_s: float = 60.0,
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
        self.gang_as_one_job = gang_as_one_job
        self.node_cache_s = node_cache_s
        self._node_cache: tuple[float, dict[str, SlurmNode]] = (float("-inf"), {})
        self.records = AttemptRecords(Path(work_dir))
        check_warm_slots(warm_slots)
        if pilot_idle_s <= 0:
            raise InvalidRequest("pilot_idle_s", f"{pilot_idle_s} is not a time: give seconds "
                                 "> 0 (how long an idle pilot waits for work)")
        if isinstance(pilot_reuse_s, bool) or not isinstance(pilot_reuse_s, (int, float)) or not (
                0 <= pilot_reuse_s <= MAX_PILOT_REUSE_S):
            raise InvalidRequest("pilot_reuse_s", f"{pilot_reuse_s!r} is not a time in 0.."
                                 f"{MAX_PILOT_REUSE_S:g} s: how long a pilot keeps taking "
                                 "workers (0: one worker a pilot)")
        self.warm_slots = warm_slots
        # kept even when off: a backend restarted with warm_slots=0 withdraws its queued items
        self.pilots = Pilots(self.records.root, warm_slots, pilot_idle_s, pilot_reuse_s)
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
        adopted = self.pilots.adopt(self._attempts.values())  # after a restart: `slurm_pilot`
        if self.pilots.former:  # and the former backend's pending pilots cancelled
            self._asker.later(after_restart, self, adopted)
        self._changes = ChangeFeed()  # poll_changes: the last report, to diff against
        # the exit records of the workers the last poll reported not ended (`changed_since_poll`)
        # and those among them that already woke the loop once without ending in a poll
        self._awaited: list[Path] = []
        self._woke: set[Path] = set()
        self._watch_at = 0  # where the next `changed_since_poll` starts in `_awaited`
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

    def _begin_batch(self, specs: Sequence[LaunchSpec], nodes: dict[str, SlurmNode],
                     engine: Callable[[int], dict[str, Any]],
                     then: Callable[[AttemptRecord], None] | None = None,
                     ) -> tuple[list[tuple[int, AttemptRecord]], list[Exception | None]]:
        """The per-attempt preamble of a batch launch (a job array, `slurm_array`; items for
        pilots, `slurm_pilot`), the same for both: check the id, pass over an attempt already
        recorded (a relaunch after a restart), check its placement, create its record (not
        yet durable: the caller syncs them all in one pass before Slurm may run any), adopt
        it, prepare its directories, then `then(record)` (what the batch's shape writes for
        it). `engine(n)`: the shape's own keys for the record, `n` the attempts made before
        it. An attempt refused after its record was made is ended as never launched (it was
        never submitted). Returns the records made, with each one's index in `specs`, and
        each attempt's error (None where made or passed over)."""
        errors: list[Exception | None] = [None] * len(specs)
        made: list[tuple[int, AttemptRecord]] = []
        for i, spec in enumerate(specs):
            try:
                AttemptRecords.check_id(spec, "Slurm")
                if self.records.existing(spec) is not None:
                    continue
                self._check_placement(spec, nodes)
                record = self.records.create(
                    spec, {"jobs": {}, "notes": {}, **engine(len(made))}, durable=False)
                self._adopt(record)
                made.append((i, record))
                self._prepare_dirs(record)
                if then is not None:
                    then(record)
            except Exception as e:  # this attempt's refusal; the others go on
                if made and made[-1][0] == i:  # created, then refused: never submitted
                    refused = made.pop()[1]
                    refused.end(0, exits.lost(base.LAUNCH_INTERRUPTED, f"refused: {e}"))
                    self._landed([refused])
                errors[i] = e
        return made, errors

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        self._launch(spec, None)

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """`launch` for a batch: one ``scontrol show nodes`` for all of it (or the last one,
        see `_launch_nodes`); single-worker
        attempts of one shape on one node go as one job array (`corral.backends.slurm_array`:
        one ``sbatch`` for up to 1,000 of them); gangs and the rest are submitted by a bounded
        pool of `launch_threads` threads (each ``sbatch`` is a round trip to slurmctld, which
        serves them concurrently), the arrays alongside. Returns each attempt's error, in
        order; None where it was launched."""
        if not specs:
            return []
        try:
            nodes = self._launch_nodes(specs)
        except BackendError as e:
            return [e for _ in specs]
        errors: list[Exception | None] = [None] * len(specs)
        if self.warm_slots > 0:  # single workers to pilots (`slurm_pilot`), per (node, gres)
            by_key: dict[tuple[str, str], list[int]] = {}
            lone: list[int] = []
            for i, s in enumerate(specs):
                k = array_key(s, nodes, self._attempts)
                (lone if k is None else by_key.setdefault(k, [])).append(i)
            arrays = list(by_key.values())
        else:
            arrays, lone = group_for_arrays(specs, lambda s: array_key(s, nodes, self._attempts))

        def one(i: int) -> None:
            try:
                self._launch(specs[i], nodes)
            except Exception as e:  # handed back to the caller, per attempt
                errors[i] = e

        def array(members: list[int]) -> None:
            try:
                key = array_key(specs[members[0]], nodes, ())
                if self.warm_slots > 0 and key is not None:
                    results = launch_pilots(self, [specs[i] for i in members], nodes, *key)
                else:
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

    def _launch_nodes(self, specs: Sequence[LaunchSpec]) -> dict[str, SlurmNode]:
        """Slurm's nodes for a batch's placement checks: the last ``scontrol show nodes`` while
        it is younger than `node_cache_s` and names every planned node, else asked again. A
        batch a wave after the last one (one-GPU jobs: a wave every 1-2 s) then costs its
        ``sbatch`` only; a node lost since is refused by Slurm or seen lost by the next poll,
        as it would be a moment after a fresh answer."""
        wanted = {a.node_id for s in specs for a in s.assignments}
        at, nodes = self._node_cache
        if time.monotonic() - at > self.node_cache_s or not wanted <= nodes.keys():
            nodes = {n.name: n for n in self._nodes()}
            self._node_cache = (time.monotonic(), nodes)
        return nodes

    def _launch(self, spec: LaunchSpec, nodes: dict[str, SlurmNode] | None) -> None:
        AttemptRecords.check_id(spec, "Slurm")
        if self.records.existing(spec) is not None:
            return
        if nodes is None:
            nodes = {n.name: n for n in self._nodes()}
        self._check_placement(spec, nodes)
        engine: dict[str, Any] = {"jobs": {}, "notes": {}}
        if self.gang_as_one_job and fits_one_job(spec):  # named before sbatch: see slurm_gang
            engine[HET_KEY] = {"name": gang_job_name(spec.workload_id, spec.attempt)}
        record = self.records.create(spec, engine)
        self._adopt(record)
        try:
            self._prepare_dirs(record)
            self._submit_all(record, spec, nodes)
        finally:
            self._landed([record])

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        record = to_stop(self._attempts, workload_id, attempt, grace_seconds)
        if record is None:
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
        if PILOT_KEY in record.engine and not self._pilot_taken(record):
            # no pilot took it: withdrawn, it never runs; taken meanwhile: its runner reads
            # the deadline file as it starts, and poll cancels it past the deadline
            withdraw(self, record, WorkerEnd(WorkerState.STOPPED, base.STOPPED_BEFORE_START,
                                             None, time.time(), reason))
            return
        jobs = self._jobs_of(record)
        states = job_states(self._slurm, list(jobs.values()))
        waiting = [j for j in jobs.values() if states.get(j) and states[j].state in PENDING_STATES]
        running = [j for j in jobs.values() if j not in waiting]
        het = sorted({j.split("+", 1)[0] for j in jobs.values()}) if (
            HET_KEY in record.engine) else []
        if het:  # one heterogeneous job: cancelled whole while pending (`slurm_gang`: stop)
            if waiting:
                self._cancel(het)
            return  # running: each runner reads the deadline file within a tick and signals
        self._cancel(waiting)  # never started: nothing to warn
        if running:
            self._slurm("scancel", "--batch", "--signal=TERM", *running, check=False)

    def poll(self, now: float) -> list[WorkerStatus]:
        with self._lock:
            attempts, launching = dict(self._attempts), set(self._launching)
        if not attempts:
            self._awaited = []
            return []
        answer = self._asker.answer(lambda: self._what_to_ask(attempts, launching))

        def observe(record: AttemptRecord, a: Any) -> WorkerEnd:
            if record.key in launching and a.worker not in record.ends:
                return WorkerEnd(WorkerState.STARTING, base.STARTING)
            if (PILOT_KEY in record.engine and a.worker not in record.ends
                    and not self._pilot_taken(record)):
                state = answer.nodes.get(a.node_id) if answer is not None else None
                return unclaimed_end(self, record, state, state is not None and node_is_lost(
                    state, not_responding_is_lost=self.not_responding_is_lost))
            if answer is None or record.key not in answer.asked:
                return self._observe_records(record, a.worker)
            end = self._observe(record, a.worker, a.node_id, answer.jobs, answer.nodes)
            if not end.state.ended:
                self._seen[(*record.key, a.worker)] = end
            return end
        out = statuses(attempts, now, observe)
        self._await_ends(attempts, out)
        return out

    def _await_ends(self, attempts: Mapping[tuple[str, int], AttemptRecord],
                    reported: Sequence[WorkerStatus]) -> None:
        """Where the ends of the workers just reported not ended will be written: each one's
        runner's exit record. One that woke the loop already and still did not end in this poll
        (its attempt's launch not landed yet, a record the runner left unreadable) is left out
        until it ends: it must not wake every loop's wait."""
        awaited = [attempts[(s.workload_id, s.attempt)].dir / f"worker-{s.worker}" / EXIT_RECORD
                   for s in reported if not s.state.ended]
        self._woke &= set(awaited)
        self._awaited = [p for p in awaited if p not in self._woke]

    def changed_since_poll(self) -> bool:
        """Whether a worker the last poll reported not ended has written its exit record since:
        a stat per worker, no Slurm command, at most `WATCH_BATCH` of them a call, round robin.
        The control loop asks this while it waits between steps (`corral.control.wake`), so
        that a job's end is acted on within the loop's `coalesce_s`, not at its next interval.
        Ends only Slurm can tell (a lost node, a job killed before its runner wrote) are seen
        at the next interval, as before."""
        awaited = self._awaited
        count = len(awaited)
        if not count:
            return False
        start = self._watch_at % count
        for k in range(min(count, WATCH_BATCH)):
            i = (start + k) % count
            if awaited[i].exists():
                self._woke.add(awaited.pop(i))  # each record wakes the loop once
                self._watch_at = i
                return True
        self._watch_at = start + WATCH_BATCH
        return False

    def poll_changes(self, now: float) -> Delta:
        """`poll`, as only the attempts whose report changed since the last call, and those no
        longer reported (`corral.backends.changes`): the loop reconciles what moved."""
        return self._changes.delta(self.poll(now))

    def _what_to_ask(self, attempts: Mapping[tuple[str, int], AttemptRecord],
                     launching: set[tuple[str, int]]) -> tuple[frozenset[tuple[str, int]],
                                                               list[str]]:
        """The attempts a round of Slurm's answers is about, and their workers' job ids (not a
        worker no pilot has taken yet: it has no job to ask about)."""
        asked = frozenset(k for k in attempts if k not in launching and (
            PILOT_KEY not in attempts[k].engine or self._pilot_taken(attempts[k])))
        return asked, sorted({j for k in asked if not attempts[k].all_ended
                              for j in self._jobs_of(attempts[k]).values()})

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

    def _pilot_taken(self, record: AttemptRecord) -> bool:
        """Whether a pilot took this single worker's item (`slurm_pilot`); its job id, once
        its pilot wrote it, is the worker's job from then on. Kept in memory only: the pilot's
        file is the record a restarted backend reads (saving the record again cost a rename
        over a file per worker, which ext4 flushes: the poll's wall time tripled)."""
        worker = str(record.spec.assignments[0].worker)
        if worker in record.engine["jobs"]:
            return True
        job = taken_by(record, int(worker))
        if job is None:
            return False
        record.engine["jobs"][worker] = job
        return True

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
