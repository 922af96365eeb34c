"""Warm slots: single-worker attempts handed to pilot jobs Slurm already queued on their node.

Why (bench/README, "Issue 16, engines: warm slots"): Slurm takes about 0.65 s from deciding to
start a job to its script running (measured here: a new submission on a free GPU and a job
pending behind a busy one start equally late). Slurm alone has its whole array queued, so that
time starts the instant a GPU frees. corral submits a job only once it has seen the GPU free and
planned (0.2-0.4 s later), and pays Slurm's 0.65 s after that. A pilot job (HTCondor's glideins,
Parsl's and Flux's pilots) is a job corral queues on a node *before* it has work for it: Slurm
starts it as soon as a GPU of its shape frees, while corral is still deciding, and the pilot
runs the worker corral then places on that node. corral still decides what runs where.

    launch_many ─ per (node, --gres): each worker's batch script as an item in
                  <work>/pilots/<key>/queue/ (oldest first), then one sbatch --array of pilots
                  so that pilots pending or idle = items waiting + warm_slots
    a pilot (a Slurm job on <node> with that --gres, its own job id)
                ─ takes the oldest item by rename(2) into claimed/<job id>.<n>.sh (one
                  taker), writes its job id beside the worker's records and runs the item:
                  the worker's ordinary batch script, same runner, same contract as a lone
                  job; then, while younger than `reuse_s` and the worker was not asked to
                  stop, leaves a mark in back/ and takes the next item (the GPU it holds
                  runs the next worker without a new Slurm job); else exits;
                  no item for `idle_s`: leaves a mark in gone/ and exits

Why reuse (bench/README, "Issue 16, engines: pilots that run the next worker"): a pilot that
runs one worker still pays Slurm's start of a job per worker (0.5-1.1 s here under load), as
Slurm alone does per array task; corral then pays its own reaction on top. A pilot that stays
pays Slurm once per `reuse_s`, and a worker's start is corral's reaction and a rename.

What stays true:

- nothing runs that corral did not launch on that node: a pilot with no item runs nothing
  and exits after `idle_s`, holding one GPU of Slurm's meanwhile (the price of the head
  start, paid only by a backend with ``warm_slots`` > 0: on by default, `slurm.
  DEFAULT_WARM_SLOTS`; 0 turns it off);
- a stop of a worker no pilot has taken renames its item away first (it never runs) and the
  worker ends STOPPED (`StoppedBeforeStart`); once taken, it is a Slurm job like any other,
  by its pilot's job id (`job_id_file`); taken in between: the deadline file, written first,
  stops it as its runner starts, as for a job whose submission was under way;
- one job id, several workers in turn: a stop's ``scancel --batch --signal=TERM`` reaches the
  pilot, which passes it to the worker it runs now only when that worker's deadline file
  exists (written before the signal), so one meant for the worker before does nothing. A pilot
  never takes another worker after one asked to stop (its deadline file exists when it
  ended), so the ``scancel`` of that job id past the deadline (`_enforce_deadline`) finds no
  other worker in it. A fence (a lost node) cancels the pilot with whatever it runs: that
  worker is on the lost node too;
- a worker a pilot takes starts at most `reuse_s` into the pilot's life, so at most that much
  of a partition's time limit is spent before it;
- items waiting on a node Slurm reports lost are withdrawn and end LOST (`NodeLost`);
- a restarted backend finds each worker by its record (the item's name, the job id file) and
  adopts the items no pilot took yet (`Pilots.adopt`: renamed to its own `gen`, pilots
  submitted for them); the pilots submitted before take none of its items and count for
  nothing: those still pending are cancelled (`slurm_pilot_owner`: each pilot's job name
  carries its installation and generation), those running end with their worker or idle out.

How many pilots to submit needs no count of Slurm's queue: a pilot looking for work began
with a submission or a mark in back/, and ends by taking an item or by leaving its mark in
gone/, so pilots looking = submitted + back - taken - gone and items waiting = queued - taken -
withdrawn; pilots wanted - looking = warm + queued - withdrawn + gone - submitted - back
(`Pilots.wanted`, which tops the reserve up once half of it is used), from counters this
backend keeps and the marks it collects. A pilot Slurm
kills while it looks (scancel by hand) leaves no mark: that key is one pilot short
until the next launch on it submits more.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from corral.backends import base, exits
from corral.backends.errors import BackendUnavailable, LaunchError
from corral.backends.exits import WorkerEnd
from corral.backends.local_runner import EXIT_RECORD, write_text_atomic
from corral.backends.records import AttemptRecord, AttemptRecords
from corral.backends.slurm_parse import SlurmNode, gres_request
from corral.backends.slurm_pilot_owner import (
    PILOT_PREFIX,
    cancel_former_pilots,
    installation_id,
    pilot_job_name,
)
from corral.backends.slurm_submit import DEADLINE_FILE

if TYPE_CHECKING:
    from corral.backends.base import LaunchSpec
    from corral.backends.slurm import SlurmBackend

__all__ = ["JOB_ID_FILE", "PILOT_KEY", "PILOT_PREFIX", "Pilots", "item_script", "pilot_script"]

PILOT_KEY: Final = "pilot"  # in a record's engine: {"key": <dir name>, "item": <file name>}
JOB_ID_FILE: Final = "slurm-job"  # in the worker's dir: the id of the pilot that took it
KEY_FILE: Final = "key.json"  # in a key's folder: its node and --gres (`Pilots.adopt`)
POLL_S: Final = 0.05  # how often an idle pilot looks for an item
#: the item's line that names its attempt's deadline file, read by a reusing pilot
DEADLINE_TAG: Final = "# corral-deadline-file: "
#: and the line that names its worker's exit record (written by its runner as it ends)
EXIT_TAG: Final = "# corral-exit-record: "

log = logging.getLogger(__name__)


def key_dir(node: str, gres: str) -> str:
    """A folder (and job name) per (node, --gres): what a pilot can run is one shape, one node."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{node}.{gres or 'none'}")


#: a reusing pilot's mark of one run, in its worker's environment (`pilot_script`)
RUN_MARK: Final = "CORRAL_PILOT_RUN"


def pilot_script(pdir: Path, idle_s: float, reuse_s: float = 0.0, gen: str = "") -> str:
    """The pilot's batch script (bash): take the oldest item (a glob is sorted), run it; none
    for `idle_s`: mark gone/ and exit. ``mv`` within one folder is one rename(2): one pilot
    wins. Between looks it waits on a FIFO of its own with ``read -t`` (a builtin): a ``sleep``
    per look was a fork 20 times a second per idle pilot, which 32 idle pilots on 2 cores
    paid for in the loop's reaction time (bench/README).

    Reuse (`reuse_s` > 0): once its worker ended, a pilot younger than `reuse_s` leaves a mark
    in back/ and looks for the next item, so that a worker placed on a GPU its pilot still
    holds starts without a new Slurm job (Slurm's start of a job, 0.5-1.1 s here, was most of
    the gap to Slurm alone: bench/README, "pilots that run the next worker"). It never takes
    another after a worker that was asked to stop (its attempt's deadline file exists): a
    ``scancel`` of a stopped worker's job id past its deadline, or a fence, must find no other
    worker there. Nor after one whose runner wrote no exit record (killed, or lost): its
    job then ends, and Slurm's answer tells the backend so, as it would for a lone job. The
    worker runs as the pilot's child, not ``exec``ed: a SIGTERM to the
    pilot (``scancel --batch --signal=TERM``, a stop, sent after the deadline file is
    written) is passed to the worker's runner when the worker's own deadline file exists, so
    one meant for the worker before (ended meanwhile) never reaches the next one, not even a
    runner that has not yet set its handler. It starts as a subshell: a simple
    command in the background would start with SIGINT and SIGQUIT ignored, and so would the
    worker. A trapped signal ends ``wait`` early, so the pilot waits again after one (bash
    answers a second ``wait`` for an ended child with its status at once: no spin).

    Nor after a worker that left a process behind (review of 4b0f36d): the runner kills its
    worker's process group, but a process that called setsid() escapes it, and a reused pilot
    would let it live on the GPU beside the next worker. Each run carries `RUN_MARK` in its
    environment; a process still alive with that mark (its /proc environ, as it started) keeps
    the pilot from taking more: it exits, as a lone job would. A process that cleared its
    environment is not seen (backends/README, "Reuse", says so).

    `gen`: the backend instance that submits it (`Pilots.gen`): the pilot takes only that
    instance's items (``*@<gen>.sh``) and names its marks ``...@<gen>``, so that pilots of a
    backend before a restart neither take the new one's items nor count among its pilots
    (they idle out); "" takes every item and leaves bare marks."""
    q, c, g, b = (shlex.quote(str(pdir / d)) for d in ("queue", "claimed", "gone", "back"))
    mine, tag = (f"*@{gen}.sh", f"@{gen}") if gen else ("*.sh", "")
    tries = max(1, round(idle_s / POLL_S))
    reuse = math.ceil(reuse_s)  # $SECONDS counts whole seconds
    return "\n".join([
        "#!/bin/bash", "# corral: a pilot job (corral.backends.slurm_pilot); generated",
        "export LC_ALL=C", f'fifo={g}/".$SLURM_JOB_ID.fifo"', "wait_fd=",
        'if mkfifo "$fifo" 2>/dev/null && exec 9<>"$fifo"; then wait_fd=9; fi',
        'rm -f "$fifo"', "n=0", "runs=0", "child=", "stop=",
        'trap \'term=1; [ -n "$child" ] && [ -e "$stop" ] && kill -TERM "$child" 2>/dev/null\' TERM',
        f"while [ $n -lt {tries} ]; do",
        f"  if [ $runs -gt 0 ] && [ $SECONDS -ge {reuse} ]; then break; fi",
        f"  for f in {q}/{mine}; do",
        '    [ -e "$f" ] || break',
        f'    item={c}/"$SLURM_JOB_ID.$runs.sh"',
        '    if mv "$f" "$item" 2>/dev/null; then',
        "      stop=", "      ended=",
        '      while IFS= read -r line; do',
        f'        case $line in "{DEADLINE_TAG}"*) stop=${{line#"{DEADLINE_TAG}"}};;',
        f'          "{EXIT_TAG}"*) ended=${{line#"{EXIT_TAG}"}};; esac',
        '      done < "$item"',
        '      mark="$SLURM_JOB_ID.$runs.$$"',
        f'      ( exec 9<&-; {RUN_MARK}="$mark" exec /bin/sh "$item" ) &',
        '      child=$!',
        "      term=0", '      wait "$child"',
        '      while [ $term = 1 ]; do term=0; wait "$child"; done',
        "      child=", "      runs=$((runs + 1))",
        f'      if [ $SECONDS -ge {reuse} ] || [ -z "$stop" ] || [ -e "$stop" ] || [ -z "$ended" ] \\',
        '        || [ ! -e "$ended" ]; then exit 0; fi',
        f'      if grep -qsxzF "{RUN_MARK}=$mark" /proc/[0-9]*/environ; then exit 0; fi',
        f'      : > {b}/"$SLURM_JOB_ID.$runs{tag}"',
        "      n=0", "      continue 2",
        "    fi", "  done", "  n=$((n + 1))",
        f'  if [ -n "$wait_fd" ]; then read -r -t {POLL_S} -u 9 _; else sleep {POLL_S}; fi',
        "done",
        f': > {g}/"$SLURM_JOB_ID{tag}"', ""])


def item_script(wdir: Path, log: Path, worker_script: Path,
                deadline: Path | None = None) -> str:
    """What a pilot execs: record its job id beside the worker's records (how the backend
    learns which Slurm job runs the worker), send output to the worker's log, run the worker's
    ordinary batch script. A pilot is an array task: its id is written as squeue -r, sacct and
    scancel name it (``<array job>_<task>``, `slurm_array.task_job_id`), not as the task's own
    ``SLURM_JOB_ID``, which squeue answers under the array's name (the worker would read as
    vanished). `deadline`: the attempt's deadline file, named on a comment line for a reusing
    pilot (`pilot_script`) with the worker's exit record; a path with a newline is not named,
    and a pilot that finds none takes nothing more."""
    jid, tmp = shlex.quote(str(wdir / JOB_ID_FILE)), shlex.quote(str(wdir / f".{JOB_ID_FILE}"))
    job = '${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}'
    done = wdir / EXIT_RECORD
    tag = [] if deadline is None or "\n" in f"{deadline}{done}" else [
        f"{DEADLINE_TAG}{deadline}", f"{EXIT_TAG}{done}"]
    return "\n".join([
        "#!/bin/sh", *tag, f'job="{job}"', 'job="${job:-$SLURM_JOB_ID}"',
        f"printf '%s\\n' \"$job\" > {tmp} && mv -f {tmp} {jid}",
        f"exec >> {shlex.quote(str(log))} 2>&1",
        f"exec /bin/sh {shlex.quote(str(worker_script))}", ""])


@dataclass
class _Key:
    """One (node, --gres): its folders and the counters of `Pilots.wanted`."""

    dir: Path
    node: str
    gres: str
    queued: int = 0
    withdrawn: int = 0
    gone: int = 0
    back: int = 0
    submitted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Pilots:
    """The warm slots of one backend: items queued per (node, --gres), pilots submitted for them.

    `gen` names this backend instance in its items, its pilots' marks (`pilot_script`) and
    its pilots' job names, with the `installation` (`slurm_pilot_owner`). `former`: a backend
    before this one left pilot folders here (after a restart: `after_restart`)."""

    def __init__(self, root: Path, warm: int, idle_s: float, reuse_s: float = 0.0) -> None:
        self.root, self.warm, self.idle_s, self.reuse_s = root / "pilots", warm, idle_s, reuse_s
        self.installation = installation_id(root)
        self.former = self.root.is_dir() and any(self.root.iterdir())
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self.gen = uuid.uuid4().hex[:12]

    def key_of(self, node: str, gres: str) -> _Key:
        name = key_dir(node, gres)
        with self._lock:
            k = self._keys.get(name)
            if k is None:
                k = self._keys[name] = _Key(self.root / name, node, gres)
                for d in ("queue", "claimed", "gone", "back", "withdrawn"):
                    (k.dir / d).mkdir(parents=True, exist_ok=True)
                write_text_atomic(k.dir / "pilot.sbatch",
                                  pilot_script(k.dir, self.idle_s, self.reuse_s, self.gen))
                write_text_atomic(k.dir / KEY_FILE, json.dumps({"node": node, "gres": gres}))
            return k

    def known(self, name: str) -> _Key | None:
        with self._lock:
            return self._keys.get(name)

    def item_name(self) -> str:
        """Sorted by when it was queued: the oldest item is taken first."""
        with self._lock:
            self._seq += 1
            return f"{time.time_ns():020d}-{self._seq:06d}@{self.gen}.sh"

    def wanted(self, k: _Key) -> int:
        """Pilots to submit now (module docstring); collects the gone marks (each once).

        The reserve is topped up only once it fell to half of `warm` (or an item has no
        pilot): an ``sbatch`` per ``warm/2`` workers queued on a key, not one per launch. With
        8 warm slots and one-GPU jobs a launch of one worker a node came every few steps, and
        each was an ``sbatch`` of one pilot: a client process and slurmctld's work for a job,
        CPU that the 2-core host took from the jobs (bench/README, "Through a real Slurm").
        The spare pilots then number between ``warm//2`` and ``warm`` (a top-up comes once
        ``(warm + 1)//2`` are missing: at warm 3 the spares fall to 1 before 2 are asked for);
        with 1 or 2 warm slots every shortfall is topped up at once, as before.

        A reusing pilot (`pilot_script`) that looks for work again after its worker is one
        more pilot alive, as if submitted: its mark in back/ counts as such, so a worker
        placed on the GPU its last one freed costs no ``sbatch``."""
        k.gone += _collect(k.dir / "gone", self.gen)
        k.back += _collect(k.dir / "back", self.gen)
        short = self.warm + k.queued - k.withdrawn + k.gone - k.submitted - k.back
        return short if short >= max(1, (self.warm + 1) // 2) else 0


    def adopt(self, records: Iterable[AttemptRecord]) -> list[_Key]:
        """After a restart: the items a backend before this one queued that no pilot took yet
        become this one's (renamed to its `gen`, oldest still first) and count as queued, so
        that `wanted` asks pilots for them; the keys that have any, for the caller to submit
        their pilots. The former backend's pilots take none of them: those pending are
        cancelled next (`after_restart`), those idle leave. An item taken meanwhile (the
        rename finds nothing) is its pilot's. A
        key folder without its key file (written since this change) cannot be asked for
        pilots: its items wait for the next launch there."""
        keys: dict[str, _Key] = {}
        for record in records:
            pilot = record.engine.get(PILOT_KEY)
            if pilot is None or record.all_ended or taken_by(
                    record, record.spec.assignments[0].worker) is not None:
                continue
            try:
                where = json.loads((self.root / pilot["key"] / KEY_FILE).read_text())
            except (OSError, ValueError):
                continue
            k = self.key_of(where["node"], where["gres"])
            found = find_item(k.dir / "queue", pilot["item"])
            if found is None or found.name.endswith(f"@{self.gen}.sh"):
                continue
            mine = f"{item_base(found.name)}@{self.gen}.sh"
            try:
                os.rename(found, k.dir / "queue" / mine)
            except FileNotFoundError:  # a former pilot took it meanwhile
                continue
            pilot["item"] = mine
            k.queued += 1
            keys[k.dir.name] = k
        return list(keys.values())


def item_base(name: str) -> str:
    """An item's name without its backend's mark: the same item across a restart."""
    return name.removesuffix(".sh").split("@", 1)[0]


def find_item(qdir: Path, item: str) -> Path | None:
    """Where an item waits in a queue folder now: under the name its record gives, or renamed
    by a backend that adopted it (`Pilots.adopt`); None when a pilot took it or it was
    withdrawn."""
    if (qdir / item).exists():
        return qdir / item
    return next(iter(sorted(qdir.glob(f"{glob.escape(item_base(item))}@*.sh"))), None)


def _collect(marks_dir: Path, gen: str = "") -> int:
    """How many marks of backend instance `gen` a folder holds, each removed (counted once);
    the marks of pilots a backend before a restart submitted are removed uncounted."""
    count, tag = 0, f"@{gen}" if gen else ""
    with os.scandir(marks_dir) as marks:
        for m in marks:
            if not m.name.startswith("."):  # the pilots' FIFOs live in gone/ while they run
                os.unlink(m.path)
                count += m.name.endswith(tag) if tag else "@" not in m.name
    return count


def launch_pilots(backend: SlurmBackend, specs: Sequence[LaunchSpec],
                  nodes: dict[str, SlurmNode], node: str, gres: str) -> list[Exception | None]:
    """Single-worker attempts of one (node, --gres) as items for pilots: records first (made
    durable in one pass before any pilot may take them), then the items, then the pilots."""
    pilots = backend.pilots
    k = pilots.key_of(node, gres)
    made, errors = backend._begin_batch(
        specs, nodes, lambda _: {PILOT_KEY: {"key": k.dir.name, "item": pilots.item_name()}},
        lambda record: _write_item(backend, record, nodes[node], k, _item_of(record)))
    queued = [(i, record, _item_of(record)) for i, record in made]
    moved = 0
    try:
        AttemptRecords.sync(r for _, r, _ in queued)
        for _, _, item in queued:  # now a pilot may take it
            os.rename(k.dir / "queue" / f".{item}", k.dir / "queue" / item)
            moved += 1
    except OSError as e:  # never queued: each one's launch failed, nothing can run it
        for i, record, _ in queued[moved:]:
            record.end_launch_failed(e)
            errors[i] = LaunchError(f"{record.spec.workload_id} attempt {record.spec.attempt}: "
                                    f"cannot queue it for a pilot ({e}); relaunch with a new "
                                    "attempt")
    finally:
        # Observed from now on: an idle pilot may take an item and its worker end before the
        # pilots' sbatch below returns (under load, seconds), and a worker still in
        # `_launching` is reported STARTING without its exit record being read.
        backend._landed([r for _, r, _ in queued])
    try:
        with k.lock:
            k.queued += moved
            _submit_pilots(backend, k, pilots.wanted(k))
    except (BackendUnavailable, OSError, subprocess.CalledProcessError) as e:
        # the items stay queued: the pilots submitted by the next launch here take them, or
        # a stop withdraws them; the launches themselves were handed over
        log.warning("pilots for %s not submitted (%s); the queued items wait for the next "
                    "ones", k.dir.name, e)
    return errors


def _item_of(record: AttemptRecord) -> str:
    return str(record.engine[PILOT_KEY]["item"])


def _write_item(backend: SlurmBackend, record: AttemptRecord, node: SlurmNode, k: _Key,
                item: str) -> None:
    """The worker's batch script and its item, the item under a hidden name until the record
    is durable (`launch_pilots` renames it into the queue)."""
    a = record.spec.assignments[0]
    _, note = gres_request(len(a.devices), a.milli_per_device, node.shards_per_gpu,
                           node.gres_name)
    script = record.dir / f"worker-{a.worker}.sbatch"
    script.write_text(backend._script(record, a, note, node.address,
                                      chdir=record.spec.working_dir or str(record.dir)))
    if note:
        record.engine["notes"][str(a.worker)] = note
    (k.dir / "queue" / f".{item}").write_text(
        item_script(record.dir / f"worker-{a.worker}", record.log_path(a.worker), script,
                    record.dir / DEADLINE_FILE))


def _submit_pilots(backend: SlurmBackend, k: _Key, count: int) -> None:
    if count <= 0:
        return
    pilots = backend.pilots
    name = pilot_job_name(pilots.installation, pilots.gen, k.dir.name)
    args = ["--parsable", f"--array=0-{count - 1}", f"--job-name={name}",
            "--nodes=1", "--ntasks=1", f"--nodelist={k.node}", "--no-requeue",
            "--output=/dev/null", f"--chdir={k.dir}",
            "--comment=corral pilot: runs the oldest worker queued in its folder's queue/"]
    if k.gres:
        args.append(f"--gres={k.gres}")
    if backend.partition:
        args.append(f"--partition={backend.partition}")
    backend._slurm("sbatch", *args, str(k.dir / "pilot.sbatch"))
    k.submitted += count


def after_restart(backend: SlurmBackend, keys: Sequence[_Key]) -> None:
    """A restarted backend's bookkeeping, on the asker's thread, after `Pilots.adopt` renamed
    the waiting items: cancel the former backends' pending pilots (`slurm_pilot_owner`), then
    submit pilots for the items adopted (`keys`). One not submitted leaves its items for the
    next launch on their key."""
    cancel_former_pilots(backend)
    for k in keys:
        try:
            with k.lock:
                _submit_pilots(backend, k, backend.pilots.wanted(k))
        except (BackendUnavailable, OSError, subprocess.CalledProcessError) as e:
            log.warning("pilots for the adopted items of %s not submitted (%s); they wait for "
                        "the next launch there", k.dir.name, e)


def taken_by(record: AttemptRecord, worker: int) -> str | None:
    """The job id of the pilot that took this worker's item, once it wrote it."""
    try:
        return (record.dir / f"worker-{worker}" / JOB_ID_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def withdraw(backend: SlurmBackend, record: AttemptRecord, end: WorkerEnd) -> bool:
    """Take a worker's item back before any pilot does: True (and the worker ended with
    `end`) when it was still waiting, False when a pilot took it."""
    pilot = record.engine[PILOT_KEY]
    k = backend.pilots.known(pilot["key"])
    qdir = k.dir if k else backend.pilots.root / pilot["key"]
    item = find_item(qdir / "queue", pilot["item"])
    try:
        if item is None:
            return False
        os.rename(item, qdir / "withdrawn" / item.name)
    except FileNotFoundError:
        return False
    if k is not None:
        with k.lock:
            k.withdrawn += 1
    record.end(record.spec.assignments[0].worker, end)
    return True


def unclaimed_end(backend: SlurmBackend, record: AttemptRecord, node_state: str | None,
                  lost: bool) -> WorkerEnd:
    """A worker whose item no pilot has taken (yet): STARTING, or LOST when its node is."""
    if lost:
        end = exits.lost(base.NODE_LOST, f"node {node_state} while queued for a pilot",
                         time.time())
        if withdraw(backend, record, end):
            return end
    return WorkerEnd(base.WorkerState.STARTING, base.STARTING)


