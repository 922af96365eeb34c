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
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Final, TypeVar

__all__ = ["ARRAY_PREFIX", "MAX_TASKS", "array_name", "dispatch_script", "group_for_arrays",
           "task_job_id"]

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


def dispatch_script(name: str, task_scripts: Sequence[Path]) -> str:
    """The array's batch script: task i runs ``task_scripts[i]`` (with ``exec``, so signals
    Slurm sends the batch step reach the worker's runner as they do for a lone job)."""
    lines = ["#!/bin/sh", f"# corral: job array {name}; generated, do not edit",
             'case "${SLURM_ARRAY_TASK_ID:-}" in']
    lines += [f"  {i}) exec /bin/sh {shlex.quote(str(p))} ;;" for i, p in enumerate(task_scripts)]
    lines += ["esac", f"echo \"[corral] array {name} has no task ${{SLURM_ARRAY_TASK_ID:-}}\" >&2",
              "exit 1"]
    return "\n".join(lines) + "\n"
