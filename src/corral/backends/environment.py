"""The environment contract: what every worker process finds in its environment.

Users rely on these names; they never change meaning. README.md in this folder explains each one
with an example. Every backend builds the contract with `worker_environment`, so a job sees the
same variables under the local, Ray, Slurm or Kubernetes backend.

The preemption contract, in one place:

1. The backend writes the deadline, as unix seconds (a decimal number, then a newline) on the
   worker's machine's clock, to the file named by CORRAL_PREEMPT_DEADLINE_FILE. The file does not
   exist until a stop is requested, so `os.path.exists()` is a cheap "am I being stopped?" check.
2. Then it sends PREEMPT_SIGNAL (SIGTERM) to the worker's whole process group.
3. Whatever still runs at the deadline gets SIGKILL.

A worker that checkpoints on SIGTERM and exits before the deadline loses no work; on its next
attempt it finds that checkpoint in CORRAL_RESUME_FROM.

Checkpoints, in one place:

- CORRAL_CHECKPOINT_DIR is the workload's checkpoint directory, the same on every attempt
  ("" when it has none). The job writes there.
- CORRAL_RESUME_FROM is the full path of the newest checkpoint in that directory when the
  attempt was launched, and "" when it holds none (a fresh start). A checkpoint is an entry
  (file or directory) whose name starts with `ckpt` or `checkpoint` (any case), not hidden and
  not ending in `.tmp` or `.partial` (a checkpoint being written; write to such a name, then
  rename). The newest is the last in *natural name order*: runs of digits compare as numbers,
  so put the step first in the name (`ckpt-<step>...`). Names, not modification times: a step
  number is what the job meant, while mtimes change when files are copied and, on shared
  storage, come from the clocks of several machines. `newest_checkpoint` is the rule.
- The control plane reads the directory when it hands the attempt to the backend. Where it
  cannot see it (storage mounted only where the workers run), the variable stays "" and the job
  looks in CORRAL_CHECKPOINT_DIR itself.

Devices: a worker on an NVIDIA node gets CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER); on
another vendor's node it gets that vendor's variables instead (ROCR_VISIBLE_DEVICES and
HIP_VISIBLE_DEVICES on AMD, HABANA_VISIBLE_MODULES on Gaudi, NEURON_RT_VISIBLE_CORES on Neuron,
TPU_VISIBLE_CHIPS on TPU; `corral.backends.accelerators.device_env` cites each runtime's doc)
and none of the others: every one of them is reserved, so a spec's env cannot set it and a
backend's base environment drops it.

Progress (`corral.backends.progress`): CORRAL_PROGRESS_FILE names a file the worker may write
its progress to (steps done, steps in all, steps/s); the backend reads it, corral shows it and
learns throughput per (job kind, model) from it. "" where the backend cannot read it back.

Arrays (`array:` in the spec): each task also gets CORRAL_ARRAY_INDEX, CORRAL_ARRAY_SIZE, its
grid parameters as CORRAL_PARAM_<NAME> and all of them as JSON in CORRAL_PARAMS
(`corral.spec.workflow.ArraySpec.task_env`, names below); they reach the backend in the launch's
env, so every backend sets them alike (docs/specs.md, "Arrays and sweeps").
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from corral.backends.accelerators import device_env
from corral.core.model import WorkerAssignment
from corral.core.vendors import DEVICE_VARIABLES, Vendor

if TYPE_CHECKING:
    from corral.backends.base import LaunchSpec

__all__ = [
    "CHECKPOINT_PREFIXES",
    "CORRAL_ARRAY_INDEX",
    "CORRAL_ARRAY_SIZE",
    "CORRAL_ATTEMPT",
    "CORRAL_CHECKPOINT_DIR",
    "CORRAL_GPU_MEMORY_MIB",
    "CORRAL_GPU_MILLI",
    "CORRAL_MASTER_ADDR",
    "CORRAL_MASTER_PORT",
    "CORRAL_NODE_ID",
    "CORRAL_PARAMS",
    "CORRAL_PARAM_PREFIX",
    "CORRAL_PREEMPT_DEADLINE_FILE",
    "CORRAL_PROGRESS_FILE",
    "CORRAL_QUEUE",
    "CORRAL_RESTART_COUNT",
    "CORRAL_RESUME_FROM",
    "CORRAL_WORKERS",
    "CORRAL_WORKER_INDEX",
    "CORRAL_WORKLOAD_ID",
    "CUDA_DEVICE_ORDER",
    "CUDA_VISIBLE_DEVICES",
    "PREEMPT_SIGNAL",
    "RESERVED",
    "checkpoint_order",
    "format_deadline",
    "is_checkpoint_name",
    "newest_checkpoint",
    "parse_deadline",
    "worker_environment",
]

PREEMPT_SIGNAL: Final = signal.SIGTERM

CUDA_VISIBLE_DEVICES: Final = "CUDA_VISIBLE_DEVICES"  # planned device indices, "0,3"; "" = none
# CUDA numbers devices fastest-first by default, NVML and nvidia-smi by PCI bus id. The plan's
# indices come from NVML, so CUDA must count the same way or a worker would use the wrong GPU.
CUDA_DEVICE_ORDER: Final = "CUDA_DEVICE_ORDER"
CUDA_DEVICE_ORDER_VALUE: Final = "PCI_BUS_ID"

CORRAL_WORKLOAD_ID: Final = "CORRAL_WORKLOAD_ID"
CORRAL_QUEUE: Final = "CORRAL_QUEUE"
CORRAL_WORKER_INDEX: Final = "CORRAL_WORKER_INDEX"  # 0..CORRAL_WORKERS-1; 0 hosts the rendezvous
CORRAL_WORKERS: Final = "CORRAL_WORKERS"  # gang size
CORRAL_NODE_ID: Final = "CORRAL_NODE_ID"  # the pool node this worker was placed on
CORRAL_ATTEMPT: Final = "CORRAL_ATTEMPT"  # 0 on the first launch, +1 per relaunch of any cause
CORRAL_RESTART_COUNT: Final = "CORRAL_RESTART_COUNT"  # relaunches after failures only
CORRAL_GPU_MILLI: Final = "CORRAL_GPU_MILLI"  # share of each device, 1000 = whole
CORRAL_GPU_MEMORY_MIB: Final = "CORRAL_GPU_MEMORY_MIB"  # memory the worker may use per device
CORRAL_CHECKPOINT_DIR: Final = "CORRAL_CHECKPOINT_DIR"  # the directory; "" when there is none
# the newest checkpoint in that directory at launch (`newest_checkpoint`); "" when it holds none
CORRAL_RESUME_FROM: Final = "CORRAL_RESUME_FROM"
CORRAL_PREEMPT_DEADLINE_FILE: Final = "CORRAL_PREEMPT_DEADLINE_FILE"
CORRAL_PROGRESS_FILE: Final = "CORRAL_PROGRESS_FILE"  # where the worker may report progress
CORRAL_MASTER_ADDR: Final = "CORRAL_MASTER_ADDR"  # worker 0's host
CORRAL_MASTER_PORT: Final = "CORRAL_MASTER_PORT"  # a port free on that host at launch
# array tasks only (not in RESERVED: they come in the launch's env, which the spec's own env
# cannot set, since a spec's env may not name CORRAL_*)
CORRAL_ARRAY_INDEX: Final = "CORRAL_ARRAY_INDEX"  # the task's index in its range (0.. for a grid)
CORRAL_ARRAY_SIZE: Final = "CORRAL_ARRAY_SIZE"  # how many tasks the array has
CORRAL_PARAMS: Final = "CORRAL_PARAMS"  # a grid task's parameters as JSON; "{}" for a range
CORRAL_PARAM_PREFIX: Final = "CORRAL_PARAM_"  # + the parameter's name in upper case

RESERVED: Final = frozenset({
    CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, CORRAL_WORKLOAD_ID, CORRAL_QUEUE,
    CORRAL_WORKER_INDEX, CORRAL_WORKERS, CORRAL_NODE_ID, CORRAL_ATTEMPT, CORRAL_RESTART_COUNT,
    CORRAL_GPU_MILLI, CORRAL_GPU_MEMORY_MIB, CORRAL_CHECKPOINT_DIR, CORRAL_RESUME_FROM,
    CORRAL_PREEMPT_DEADLINE_FILE, CORRAL_MASTER_ADDR, CORRAL_MASTER_PORT, CORRAL_PROGRESS_FILE,
}) | DEVICE_VARIABLES


def worker_environment(
    spec: LaunchSpec,
    assignment: WorkerAssignment,
    *,
    master_addr: str,
    master_port: int,
    deadline_file: str,
    vendor: Vendor = Vendor.NVIDIA,
    progress_file: str = "",
) -> dict[str, str]:
    """The contract variables of one worker, plus the user's env. Pure.

    vendor: who makes the devices of the worker's node: its devices are handed out in that
    vendor's variables only (module docstring). progress_file: CORRAL_PROGRESS_FILE ("" where
    the backend does not read it). The backend adds its base environment underneath (the local
    backend: its own, minus any CORRAL_* and device variables); the user's env cannot override
    contract names (`LaunchSpec` refuses them).
    """
    contract = {
        **_devices(vendor, assignment.devices),
        CORRAL_WORKLOAD_ID: spec.workload_id,
        CORRAL_QUEUE: spec.queue,
        CORRAL_WORKER_INDEX: str(assignment.worker),
        CORRAL_WORKERS: str(spec.workers),
        CORRAL_NODE_ID: assignment.node_id,
        CORRAL_ATTEMPT: str(spec.attempt),
        CORRAL_RESTART_COUNT: str(spec.restart_count),
        CORRAL_GPU_MILLI: str(assignment.milli_per_device if assignment.devices else 0),
        CORRAL_GPU_MEMORY_MIB: str(
            assignment.gpu_memory_mib_per_device if assignment.devices else 0),
        CORRAL_CHECKPOINT_DIR: spec.checkpoint_dir or "",
        CORRAL_RESUME_FROM: spec.resume_from or "",
        CORRAL_PREEMPT_DEADLINE_FILE: deadline_file,
        CORRAL_MASTER_ADDR: master_addr,
        CORRAL_MASTER_PORT: str(master_port),
        CORRAL_PROGRESS_FILE: progress_file,
    }
    return {**spec.env, **spec.secret_env, **contract}  # secrets: resolved at launch


def _devices(vendor: Vendor, devices: tuple[int, ...]) -> dict[str, str]:
    if vendor == Vendor.NVIDIA:
        return {**device_env(vendor, devices), CUDA_DEVICE_ORDER: CUDA_DEVICE_ORDER_VALUE}
    return device_env(vendor, devices)


CHECKPOINT_PREFIXES: Final = ("ckpt", "checkpoint")
_UNFINISHED_SUFFIXES: Final = (".tmp", ".partial")
_DIGITS: Final = re.compile(r"(\d+)")


def is_checkpoint_name(name: str) -> bool:
    """Whether an entry of CORRAL_CHECKPOINT_DIR counts as a checkpoint (module docstring)."""
    lower = name.lower()
    return (lower.startswith(CHECKPOINT_PREFIXES)
            and not lower.endswith(_UNFINISHED_SUFFIXES))


def checkpoint_order(name: str) -> tuple[tuple[str | int, ...], str]:
    """Natural order: digit runs compare as numbers, the rest as text; the name breaks ties.

    Example: checkpoint-500 < checkpoint-1000 (500 < 1000, where plain text order would put
    "1000" first), and ckpt-00000090.pt < ckpt-00000120.pt.
    """
    # re.split with a group alternates text (even positions) and digits (odd positions), so two
    # keys always compare text with text and numbers with numbers.
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def newest_checkpoint(names: Iterable[str]) -> str | None:
    """The newest checkpoint among a directory's entry names, None when none is one. Pure.

    Example: ["events.jsonl", "ckpt-00000010.npz", "ckpt-00000020.npz",
    ".ckpt-00000030.npz.tmp"] -> "ckpt-00000020.npz".
    """
    found = [n for n in names if is_checkpoint_name(n)]
    return max(found, key=checkpoint_order) if found else None


def format_deadline(deadline: float) -> str:
    """The deadline file's content: unix seconds with millisecond precision, then a newline."""
    return f"{deadline:.3f}\n"


def parse_deadline(text: str) -> float | None:
    """Read a deadline file's content; None when it is empty or not a number (a torn write)."""
    try:
        return float(text.strip())
    except ValueError:
        return None
