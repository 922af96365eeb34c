"""Which launches of a batch go to Slurm as one job array, and the array's dispatch script.

A batch of launches (`SlurmBackend.launch_many`) often holds many single-worker attempts of the
same shape on the same node: a queue of one-GPU jobs placed eight to a node. Submitting each as
its own ``sbatch`` costs one slurmctld round trip per worker; Slurm's own fast path is one
``sbatch --array=0-(n-1)``, one RPC for n jobs (Slurm's "Job Array Support" page: "Job arrays
offer a mechanism for submitting and managing collections of similar jobs quickly and easily").

What an array needs to share, and how corral keeps the rest per worker:

- the same node (``--nodelist``, corral pins every worker), the same ``--gres`` and partition:
  the grouping key (`array_key`);
- one ``--job-name``, ``--output``, ``--chdir`` and batch script: the array runs a dispatch
  script (`dispatch_script`) that ``exec``s task i's own script, the same per-worker script a
  lone job runs (environment, Slurm's device choice, the local runner); the output pattern
  ``task-%a.log`` is a symlink per task to that worker's own log, so `read_logs` and Slurm's
  own messages land where they do for a lone job; the task script changes to its own
  directory itself.

Identity: the array's name is ``corral-array.<token>`` (`array_name`), unique per submission,
and each attempt's record names the array and its task index *before* ``sbatch`` runs. A control
plane that crashed between ``sbatch`` and saving the job id finds the task again by the array's
name and the index (``squeue --name``), never by guessing, so a restarted control plane adopts
the task instead of launching it again.

Slurm's default MaxArraySize is 1001 (task ids 0-1000): a group is cut into arrays of at most
`MAX_TASKS`. A group of one is a lone job (one ``sbatch`` either way, and a plain job name).

The submission itself (`launch_array`: records first, then one ``sbatch``, then the task ids)
lives here too; `corral.backends.slurm` calls it from `launch_many` for each group.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shlex
import subprocess
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from corral.backends import base, exits
from corral.backends.errors import BackendError, BackendUnavailable, LaunchError
from corral.backends.records import AttemptRecord, AttemptRecords
from corral.backends.slurm_parse import SlurmNode, gres_request

if TYPE_CHECKING:
    from corral.backends.base import LaunchSpec
    from corral.backends.slurm import SlurmBackend

__all__ = ["ARRAY_PREFIX", "MAX_TASKS", "array_key", "array_name", "array_tasks", "dispatch_script",
           "group_for_arrays", "launch_array", "record_tasks", "submit_array", "task_job_id"]

log = logging.getLogger(__name__)

ARRAY_PREFIX: Final = "corral-array."
#: tasks per array: Slurm's default MaxArraySize (1001) allows ids 0..1000
MAX_TASKS: Final = 1000
T = TypeVar("T")


def array_name() -> str:
    """A job name no other submission shares (the recovery key of its tasks)."""
    return ARRAY_PREFIX + secrets.token_hex(8)


def task_job_id(array_job_id: str, task: int) -> str:
    """Slurm's id of one array task: ``<array job id>_<task index>``, as squeue -r, sacct and
    scancel write and accept it."""
    return f"{array_job_id}_{task}"


def group_for_arrays(
    items: Sequence[T], key: Callable[[T], Hashable | None], max_tasks: int = MAX_TASKS,
) -> tuple[list[list[int]], list[int]]:
    """Split `items` (by index) into arrays and lone launches.

    `key` is the array key of an item, None when it cannot join an array (a gang, an attempt
    launched before, a placement that will be refused). Items of equal key form arrays of at
    most `max_tasks`, in their order; a group of one is a lone launch. Example: keys
    [a, a, None, b, a] -> arrays [[0, 1, 4]], lone [2, 3].
    """
    groups: dict[Hashable, list[int]] = {}
    lone: list[int] = []
    for i, item in enumerate(items):
        k = key(item)
        if k is None:
            lone.append(i)
        else:
            groups.setdefault(k, []).append(i)
    arrays: list[list[int]] = []
    for members in groups.values():
        for start in range(0, len(members), max_tasks):
            chunk = members[start:start + max_tasks]
            if len(chunk) == 1:
                lone.append(chunk[0])
            else:
                arrays.append(chunk)
    return arrays, sorted(lone)


def array_key(spec: LaunchSpec, nodes: Mapping[str, SlurmNode],
              known: Container[tuple[str, int]]) -> tuple[str, str] | None:
    """(node, --gres) of a single-worker attempt that may join an array; None for a gang, an
    attempt the backend already knows (`known`: a no-op or a conflict, said by its launch) or
    one on a node not here (refused by its launch with its reason)."""
    if len(spec.assignments) != 1 or (spec.workload_id, spec.attempt) in known:
        return None
    a = spec.assignments[0]
    node = nodes.get(a.node_id)
    if node is None:
        return None
    return a.node_id, gres_request(len(a.devices), a.milli_per_device, node.shards_per_gpu,
                                   node.gres_name)[0]


def dispatch_script(name: str, task_scripts: Sequence[Path]) -> str:
    """The array's batch script: task i runs ``task_scripts[i]`` (with ``exec``, so signals
    Slurm sends the batch step reach the worker's runner as they do for a lone job)."""
    lines = ["#!/bin/sh", f"# corral: job array {name}; generated, do not edit",
             'case "${SLURM_ARRAY_TASK_ID:-}" in']
    lines += [f"  {i}) exec /bin/sh {shlex.quote(str(p))} ;;" for i, p in enumerate(task_scripts)]
    lines += ["esac", f"echo \"[corral] array {name} has no task ${{SLURM_ARRAY_TASK_ID:-}}\" >&2",
              "exit 1"]
    return "\n".join(lines) + "\n"


def launch_array(backend: SlurmBackend, specs: list[LaunchSpec], nodes: dict[str, SlurmNode]
                 ) -> list[Exception | None]:
    """Single-worker attempts of one (node, gres) as one ``sbatch --array``. Each attempt's
    record names the array and its task before the submission (the recovery key, see
    `SlurmBackend._jobs_of`); each is checked on its own, and one that is refused leaves the
    others. The backend's own steps (records, placement checks, worker scripts, Slurm commands)
    are the backend's: this is only what an array adds."""
    name = array_name()
    tasks, errors = backend._begin_batch(
        specs, nodes, lambda n: {"array": {"name": name, "task": n}})  # synced before sbatch
    try:
        if tasks:
            # every record on disk before Slurm may run its task, in one pass (not one
            # fsync per record: they were a third of a launch's time, bench/README)
            AttemptRecords.sync(r for _, r in tasks)
            array_id = submit_array(backend, name, [r for _, r in tasks], nodes)
            record_tasks(array_id, [r for _, r in tasks])
    except (BackendUnavailable, subprocess.CalledProcessError, OSError) as e:
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
        # an sbatch that timed out may still have been accepted: cancel it by its name
        with contextlib.suppress(BackendError):
            backend._slurm("scancel", f"--name={name}", check=False)
        for i, record in tasks:
            record.end(0, exits.lost(base.LAUNCH_INTERRUPTED, f"launch failed: {e}"))
            errors[i] = LaunchError(
                f"{record.spec.workload_id} attempt {record.spec.attempt}: Slurm refused "
                f"the job array {name}: {detail}; relaunch with a new attempt")
    finally:
        backend._landed([r for _, r in tasks])
    return errors


def submit_array(backend: SlurmBackend, name: str, records: list[AttemptRecord],
                 nodes: dict[str, SlurmNode]) -> str:
    """Write the tasks' scripts and the dispatch script, submit; the array's job id."""
    first = records[0].spec.assignments[0]
    node = nodes[first.node_id]
    adir = backend.records.root / "arrays" / name
    adir.mkdir(parents=True)
    scripts = []
    for task, record in enumerate(records):
        a = record.spec.assignments[0]
        gres, note = gres_request(len(a.devices), a.milli_per_device, node.shards_per_gpu,
                                  node.gres_name)
        script = record.dir / f"worker-{a.worker}.sbatch"
        script.write_text(backend._script(record, a, note, node.address,
                                          chdir=record.spec.working_dir or str(record.dir)))
        scripts.append(script)
        if note:
            record.engine["notes"][str(a.worker)] = note
        # Slurm appends to task-<i>.log; the link makes that the worker's own log
        (adir / f"task-{task}.log").symlink_to(record.log_path(a.worker))
    (adir / "dispatch.sbatch").write_text(dispatch_script(name, scripts))
    args = ["--parsable", f"--array=0-{len(records) - 1}", f"--job-name={name}",
            "--nodes=1", "--ntasks=1", f"--nodelist={first.node_id}", "--no-requeue",
            f"--output={adir}/task-%a.log", "--open-mode=append", f"--chdir={adir}",
            f"--comment=corral job array of {len(records)} workers; task i is "
            f"{adir}/dispatch.sbatch's case i"]
    if gres:
        args.append(f"--gres={gres}")
    if backend.partition:
        args.append(f"--partition={backend.partition}")
    out = backend._slurm("sbatch", *args, str(adir / "dispatch.sbatch")).stdout.strip()
    return out.split(";", 1)[0]


def record_tasks(array_id: str, records: list[AttemptRecord]) -> None:
    """Save each task's job id. The array runs already: a record that cannot be saved is
    found again by the array's name and its task (`SlurmBackend._jobs_of`), never marked
    failed. Not fsynced, for the same reason: a machine crash that loses the id loses only a
    lookup by name (two fsyncs per task were two thirds of a launch's time, bench/README)."""
    for task, record in enumerate(records):
        record.engine["jobs"][str(record.spec.assignments[0].worker)] = task_job_id(
            array_id, task)
        try:
            AttemptRecords.save(record, durable=False)
        except OSError as e:
            log.warning("cannot save the job id of %s attempt %d (%s); it is looked up "
                        "by its array's name", record.spec.workload_id, record.spec.attempt,
                        e)


def array_tasks(slurm: Callable[..., subprocess.CompletedProcess[str]], name: str
                ) -> dict[int, str]:
    """task index -> job id of the array named `name`, one task per line (``-r``)."""
    out = slurm("squeue", "-h", "-r", "-t", "all", f"--name={name}", "-o", "%i",
                check=False).stdout.split()
    return {int(i.rsplit("_", 1)[1]): i for i in out
            if "_" in i and i.rsplit("_", 1)[1].isdigit()}
