"""How a Slurm attempt is submitted: the placement checks, the worker's batch script, one
``sbatch`` per worker (a gang's held, then released together) and the Slurm options that pin
each worker to its planned node (`SlurmSubmission`, mixed into `corral.backends.slurm.SlurmBackend`;
job arrays are `corral.backends.slurm_array`).

Split out of ``slurm.py`` by what it decides: this module decides what Slurm is asked to run and
where; ``slurm_observe.py`` decides what a worker's state is from Slurm's answers and the
runner's records; ``slurm.py`` holds the backend's interface and the Slurm commands.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from corral.backends import local_runner
from corral.backends.base import LaunchSpec
from corral.backends.environment import CUDA_VISIBLE_DEVICES, worker_environment
from corral.backends.errors import (
    BackendError,
    BackendUnavailable,
    InvalidLaunchSpec,
    LaunchError,
)
from corral.backends.local_runner import write_text_atomic
from corral.backends.records import AttemptRecord, AttemptRecords
from corral.backends.slurm_gang import HET_KEY, submit_gang
from corral.backends.slurm_parse import SlurmNode, gres_request, node_is_lost

if TYPE_CHECKING:
    from corral.backends.records import AttemptRecords as _Records

__all__ = ["DEADLINE_FILE", "SETUP_FILE", "SlurmSubmission", "container_argv", "job_name"]

DEADLINE_FILE: Final = "preempt-deadline"
SETUP_FILE: Final = "setup.sh"  # the spec's setup lines, read by each worker's runner


def job_name(workload_id: str, attempt: int, worker: int) -> str:
    return f"corral.{workload_id}.{attempt}.{worker}"




class SlurmSubmission:
    """The submitting half of `SlurmBackend` (a mixin: it uses the backend's records, settings
    and Slurm commands)."""

    records: _Records
    python: str
    partition: str | None
    not_responding_is_lost: bool
    _slurm: Callable[..., subprocess.CompletedProcess[str]]
    _cancel: Callable[[Sequence[str]], None]
    has_pyxis: Callable[[], bool]

    def _submit_all(self, record: AttemptRecord, spec: LaunchSpec,
                    nodes: dict[str, SlurmNode]) -> None:
        gang = len(spec.assignments) > 1
        het = record.engine.get(HET_KEY)  # the gang as one job (`corral.backends.slurm_gang`)
        try:
            master = nodes[_master_node(spec)].address
            if het is not None:
                submit_gang(self, record, nodes, master)  # type: ignore[arg-type]
                return
            for a in sorted(spec.assignments, key=lambda a: a.worker):
                self._submit(record, a, nodes[a.node_id], master, hold=gang)
            if gang:
                self._slurm("scontrol", "release", ",".join(record.engine["jobs"].values()))
        except (BackendUnavailable, subprocess.CalledProcessError) as e:
            if het is not None:  # an sbatch that timed out may still have been accepted
                with contextlib.suppress(BackendError):
                    self._slurm("scancel", f"--name={het['name']}", check=False)
            self._cancel(list(record.engine["jobs"].values()))
            record.end_launch_failed(e)
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
            raise LaunchError(f"{spec.workload_id} attempt {spec.attempt}: Slurm refused a "
                              f"worker: {detail}; the submitted jobs were cancelled; relaunch "
                              "with a new attempt") from e

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
