"""A gang as one Slurm job: a heterogeneous job with one component per worker.

One job per worker (``sbatch --hold`` each, then one ``scontrol release``) makes a gang atomic
only because corral reserved the capacity first: between the release and the start, each worker
is scheduled on its own. A heterogeneous job is one submission that Slurm accepts or refuses
whole and allocates whole (Slurm's "Heterogeneous Job Support": "the job specifications are
sent to slurmctld daemon as a list in a single RPC... the entire request is validated and
accepted or rejected"), each component with its own node, ``--gres`` and task count, so
workers with different GPU counts still fit in it::

    sbatch --job-name=corral.<wl>.<attempt>.gang --nodes=1 --nodelist=gpu1 --gres=gpu:2 ...
         : --nodes=1 --nodelist=gpu2 --gres=gpu:1 ...  gang.sbatch

    gang.sbatch (runs on component 0's node):
        srun --het-group=0 ... /bin/sh worker-0.sbatch &     # one step per worker, each under
        srun --het-group=1 ... /bin/sh worker-1.sbatch &     # the same runner as a lone job
        wait

Each worker's job id is its component's, ``<het job id>+<offset>`` (what ``squeue -r``,
``scancel`` and ``--jobs`` accept), so observation, deadlines and fencing are those of lone
jobs. What differs:

- **stop**: the deadline file only; each worker's runner reads it every tick (1 s at most) and
  sends SIGTERM to its worker itself. Slurm cannot signal only the runner here: ``--batch``
  reaches the batch shell, whose end would end the job and every step with it before the grace
  ran out, and a step's signal reaches every process of the step, so the worker got SIGTERM
  twice, the second during its own exit (seen: exit -15 after its handler ran). While pending,
  the whole job is cancelled (only the whole can be, scancel(1)); after the deadline, the
  components are cancelled as lone jobs are;
- **identity**: the record names the job before ``sbatch``; a control plane that crashed
  between the submission and saving the ids finds the components by that name;
- **when it applies** (`fits_one_job`): every worker on its own node (two components of one
  heterogeneous job may not share a node: slurmctld answers "Invalid node name specified"),
  and no container image (pyxis runs the command as an ``srun`` step of its own). Otherwise the
  gang goes as held jobs, as before.

Cost, measured on Slurm 22.05: heterogeneous jobs are started only by the backfill scheduler,
so a gang waits for its next pass (``bf_interval``, 30 s by default) where held jobs start at
the release. Hence `SlurmBackend(gang_as_one_job=...)` is off by default: turn it on where the
backfill interval is short, or where all-or-nothing starts matter more than start latency.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from corral.backends.errors import BackendUnavailable
from corral.backends.records import AttemptRecord, AttemptRecords
from corral.backends.slurm_parse import SlurmNode, gres_request

if TYPE_CHECKING:
    import subprocess

    from corral.backends.base import LaunchSpec
    from corral.backends.slurm import SlurmBackend

__all__ = ["HET_KEY", "component_job_id", "fits_one_job", "gang_job_name", "gang_script",
           "het_components", "submit_gang"]

HET_KEY: Final = "het"  # record.engine["het"] = {"name": ..., "id": ...}


def gang_job_name(workload_id: str, attempt: int) -> str:
    return f"corral.{workload_id}.{attempt}.gang"


def component_job_id(het_job_id: str, offset: int) -> str:
    """Slurm's id of one component: ``<het job id>+<offset>``."""
    return f"{het_job_id}+{offset}"


def fits_one_job(spec: LaunchSpec) -> bool:
    """A gang that can go as one heterogeneous job: each worker on a node of its own, no
    container image."""
    nodes = [a.node_id for a in spec.assignments]
    return len(nodes) > 1 and len(set(nodes)) == len(nodes) and spec.image is None


def gang_script(name: str, steps: list[tuple[str, str]]) -> str:
    """The batch script: one ``srun`` step per component (`steps`: each worker's script and
    log), all in the background, then wait for all of them. A step's output goes to its
    worker's own log, as a lone job's ``--output`` does."""
    lines = ["#!/bin/sh", f"# corral: gang {name}, one heterogeneous job; generated, do not edit"]
    for offset, (script, log) in enumerate(steps):
        lines.append(f"srun --het-group={offset} --nodes=1 --ntasks=1 --kill-on-bad-exit=0 "
                     f"--output={shlex.quote(log)} --open-mode=append "
                     f"/bin/sh {shlex.quote(script)} &")
    lines.append("wait")
    return "\n".join(lines) + "\n"


def submit_gang(backend: SlurmBackend, record: AttemptRecord, nodes: dict[str, SlurmNode],
                master: str) -> None:
    """Write the workers' scripts and the gang's, submit it as one heterogeneous job, save each
    worker's component id. Raises what the submission raised (the caller cancels by name)."""
    spec = record.spec
    name = record.engine[HET_KEY]["name"]
    workers = sorted(spec.assignments, key=lambda a: a.worker)
    steps, components = [], []
    for a in workers:
        node = nodes[a.node_id]
        gres, note = gres_request(len(a.devices), a.milli_per_device, node.shards_per_gpu,
                                  node.gres_name)
        script = record.dir / f"worker-{a.worker}.sbatch"
        script.write_text(backend._script(record, a, note, master,
                                          chdir=spec.working_dir or str(record.dir)))
        steps.append((str(script), str(record.log_path(a.worker))))
        if note:
            record.engine["notes"][str(a.worker)] = note
        part = [f"--partition={backend.partition}"] if backend.partition else []
        components.append(["--nodes=1", "--ntasks=1", f"--nodelist={a.node_id}",
                           *([f"--gres={gres}"] if gres else []), *part])
    gang = record.dir / "gang.sbatch"
    gang.write_text(gang_script(name, steps))
    args = ["--parsable", f"--job-name={name}", "--no-requeue",
            f"--output={record.dir / 'gang.log'}", "--open-mode=append",
            f"--chdir={record.dir}",
            f"--comment=corral workload={spec.workload_id} attempt={spec.attempt} gang of "
            f"{len(workers)}"]
    argv = [*args, *components[0]]
    for more in components[1:]:
        argv += [":", *more]
    out = backend._slurm("sbatch", *argv, str(gang)).stdout.strip()
    het_id = out.split(";", 1)[0]
    record.engine[HET_KEY]["id"] = het_id
    for offset, a in enumerate(workers):
        record.engine["jobs"][str(a.worker)] = component_job_id(het_id, offset)
    AttemptRecords.save(record)


def het_components(slurm: Callable[..., subprocess.CompletedProcess[str]], name: str
                   ) -> dict[int, str]:
    """offset -> component job id of the heterogeneous job named `name` (after a crash between
    the submission and saving the ids)."""
    try:
        out = slurm("squeue", "-h", "-r", "-t", "all", f"--name={name}", "-o", "%i",
                    check=False).stdout.split()
    except BackendUnavailable:
        return {}
    return {int(i.rsplit("+", 1)[1]): i for i in out
            if "+" in i and i.rsplit("+", 1)[1].isdigit()}
