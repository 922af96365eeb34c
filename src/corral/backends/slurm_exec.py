"""`corral exec`, `corral ssh` and `corral port-forward` on Slurm: a step inside the worker's
own job, as Slurm sites reach a running job (``srun --jobid=<job> --overlap``).

    API (control plane)                        the worker's node
    exec ─ srun --jobid=J --overlap ─────────> step: worker_step exec   -> one JSON line
    ssh  ─ srun ... --pty  (on a local pty) ─> step: worker_step shell  (the worker's env, cwd)
    port-forward ─ srun ... -u, stdin/stdout ─> step: worker_step relay -> 127.0.0.1:PORT

The step runs `corral.backends.worker_step` (through `worker_step_main`, which skips the
packages' imports: ~0.04 s to start instead of ~0.14 s) on the node named in the plan
(``--nodelist``), with the interpreter the workers run (`SlurmBackend.python`, and corral's
source at the same path on the nodes, as for the runner):
it finds the worker's process from its runner's records on the shared work dir, as the local
backend does, so a command or shell gets the worker's own environment (CORRAL_*, the
CUDA_VISIBLE_DEVICES Slurm chose) and working directory, under the job's user. ``--overlap``
lets the step share the CPUs, memory and GPUs the worker's step holds (Slurm 20.11+): it asks
for nothing of its own, so it starts at once even on a full node, and it lives in the job's
cgroup (with ``ConstrainDevices`` it reaches the job's GPUs only). The job is the worker's
batch job, an array task (its own job id, ``squeue %A``) or, with warm slots, the pilot that
took the worker (`slurm_pilot.taken_by`). A pilot reused for a later worker keeps its id: the
step is placed by the record of the attempt asked for, and refuses (409) once that worker has
ended; it wears the run's mark in its own environment from its start (`worker_step.
_wear_the_mark`), so the pilot takes no next worker while a step beside this one lives. A gang run as one heterogeneous job (``gang_as_one_job``) is reached through its
leader's id and the worker's component (``--het-group``). Not covered: an ``image:`` worker
under pyxis (the step would run beside its container, not in it), refused saying so.

Exec's output comes back as one JSON line (each stream cut at `max_bytes` on the node); the
command is killed on the node at its timeout, and ``srun`` here `STEP_SLACK_S` later if the
step has not answered (a node that stopped responding). A shell's hang-up (the client left)
is SIGHUP to ``srun``, which ends the step, and with it what the shell started (the step's
processes all end with it, unlike a dropped ssh session's ``nohup`` jobs).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corral.backends.environment import RESERVED
from corral.backends.local_runner import CHILD_RECORD, EXIT_RECORD
from corral.backends.slurm_pilot import taken_by
from corral.backends.worker_exec import ExecResult
from corral.backends.worker_shell import Shell, resize

if TYPE_CHECKING:
    from corral.backends.slurm import SlurmBackend

__all__ = ["STEP_MAIN", "STEP_SLACK_S", "STEP_START_S", "StepRefused", "WorkerStep", "end_relay",
           "exec_in_step", "locate", "open_relay", "open_shell_step"]

#: how long past an exec's own timeout the server waits for its step (srun, the node)
STEP_SLACK_S = 30.0
#: how long a relay step has to say whether it reached the port
STEP_START_S = 60.0
#: what the step runs: `worker_step` without the packages' __init__ (see that file)
STEP_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_step_main.py")


class StepRefused(Exception):
    """The step could not be made or refused: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class WorkerStep:
    """Where a running worker's step goes, and how to start it."""

    job: str  # Slurm's job id (numeric: srun takes no array or het form)
    node: str
    argv_head: tuple[str, ...]  # srun and its options, the step's interpreter and module
    ids: tuple[str, ...]  # worker_step's options naming the worker
    env: dict[str, str]  # srun's environment (SLURM_CONF...)

    def argv(self, action: str, *rest: str, srun_opts: Sequence[str] = ()) -> list[str]:
        srun, *step = self.argv_head
        return [srun, *srun_opts, *step, action, *self.ids, *rest]


def locate(backend: SlurmBackend, workload_id: str, attempt: int, worker: int) -> WorkerStep:
    """The step for that worker of that attempt; LookupError (409: not running) when its job
    is not known yet or its process has not started or has ended; StepRefused for what this
    backend cannot reach."""
    try:
        record = backend.records.find(workload_id, attempt)
    except Exception as e:  # UnknownAttempt: never launched here
        raise LookupError(str(e)) from None
    where = {a.worker: a.node_id for a in record.spec.assignments}
    if worker not in where:
        raise LookupError(f"{workload_id} (attempt {attempt}) has no worker {worker}")
    if record.spec.image:
        raise StepRefused(501, "an image: worker on Slurm runs in a pyxis container, which "
                          "exec, ssh and port-forward do not enter; use `corral logs`")
    wdir = record.dir / f"worker-{worker}"
    job = record.engine["jobs"].get(str(worker)) or taken_by(record, worker)
    if job is None or not (wdir / CHILD_RECORD).exists():
        raise LookupError(f"worker {worker} of {workload_id} has not started on Slurm yet")
    if (wdir / EXIT_RECORD).exists():
        raise LookupError(f"worker {worker} of {workload_id} (attempt {attempt}) has ended")
    env = {k: v for k, v in backend.client_env.items() if k not in RESERVED}
    srun = str(Path(backend.bin_dir) / "srun") if backend.bin_dir else "srun"
    numeric, *component = _job_id(backend, job)
    head = (srun, f"--jobid={numeric}", *component, "--overlap", "--nodes=1", "--ntasks=1",
            f"--nodelist={where[worker]}", "--job-name=corral-step", "--quiet",
            backend.python, "-I", "-S", STEP_MAIN)
    ids = ("--work-dir", str(backend.records.root), "--workload", workload_id,
           "--attempt", str(attempt), "--worker", str(worker))
    return WorkerStep(numeric, where[worker], head, ids, env)


def _job_id(backend: SlurmBackend, job: str) -> list[str]:
    """srun's ``--jobid`` (a number) and what else names the job: a component of a
    heterogeneous job (``<leader>+<offset>``) is the leader's id and ``--het-group=<offset>``
    (srun refuses a component's own id: "not heterogeneous job leader"); an array task's
    (``<array>_<task>``) own id is asked of squeue."""
    if job.isdigit():
        return [job]
    leader, plus, offset = job.partition("+")
    if plus and leader.isdigit() and offset.isdigit():
        return [leader, f"--het-group={offset}"]
    out = backend._slurm("squeue", "-h", "-j", job, "-o", "%A", check=False).stdout.split()
    if not out or not out[0].isdigit():
        raise LookupError(f"Slurm no longer knows job {job}: the worker has ended")
    return [out[0]]


def _srun_failed(step: WorkerStep, stderr: str) -> StepRefused:
    last = (stderr.strip().splitlines() or ["no message"])[-1]
    return StepRefused(409, f"Slurm made no step in job {step.job} on {step.node}: {last}")


def exec_in_step(step: WorkerStep, argv: list[str], *, timeout_s: float,
                 max_bytes: int) -> ExecResult:
    """Run `argv` beside the worker (`worker_step exec`); StepRefused with the status the API
    answers: 409 (no process, no step), 422 (not found or not executable), 504 (no answer)."""
    cmd = step.argv("exec", "--timeout", repr(timeout_s), "--max-bytes", str(max_bytes),
                    "--", *argv, srun_opts=("-u",))
    try:
        done = subprocess.run(cmd, env=step.env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout_s + STEP_SLACK_S, check=False)
    except subprocess.TimeoutExpired:
        raise StepRefused(504, f"the step on {step.node} did not answer within "
                          f"{timeout_s + STEP_SLACK_S:g} s: is the node responding? "
                          "(`corral nodes`)") from None
    except FileNotFoundError:
        raise StepRefused(503, f"{step.argv_head[0]} is not installed on the control "
                          "plane's host") from None
    try:
        answer = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise _srun_failed(step, done.stderr.decode(errors="replace")) from None
    if "error" in answer:
        raise StepRefused(409 if answer["error"] == "conflict" else 422, answer["message"])
    return ExecResult(answer["exit_code"], answer["stdout"], answer["stderr"],
                      answer["timed_out"], answer["truncated"])


def _take_terminal() -> None:
    import fcntl
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def open_shell_step(step: WorkerStep, rows: int, cols: int) -> Shell:
    """``srun --pty`` on a new local terminal (its master side the caller's, as a local
    shell's): srun forwards keystrokes, output, the terminal's size (it watches SIGWINCH,
    which a resize of this terminal sends it) and the shell's exit status."""
    master, slave = os.openpty()
    resize(master, rows, cols)
    env = {**step.env, "TERM": step.env.get("TERM", "xterm-256color")}
    try:
        proc = subprocess.Popen(
            step.argv("shell", srun_opts=("--pty",)), env=env, stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True,
            # preexec_fn after fork in a threaded server: one ioctl, no lock
            preexec_fn=_take_terminal)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return Shell(proc, master)


async def open_relay(step: WorkerStep, port: int) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, asyncio.subprocess.Process]:
    """The relay step started and connected to `port` on the worker's node: its output (the
    port's bytes), its input, and the srun process (the caller ends it); StepRefused with the
    step's own reason (403: not the worker's port, 409: no process, 502: cannot connect)."""
    proc = await asyncio.create_subprocess_exec(
        *step.argv("relay", "--port", str(port), srun_opts=("-u",)), env=step.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), STEP_START_S)
    except TimeoutError:
        await end_relay(proc)
        raise StepRefused(504, f"the relay step on {step.node} did not start within "
                          f"{STEP_START_S:g} s") from None
    if line == b"ok\n":
        return proc.stdout, proc.stdin, proc
    await end_relay(proc)
    status, _, reason = line.decode(errors="replace").strip().partition(" ")
    if status.isdigit() and reason:
        raise StepRefused(int(status), reason)
    raise _srun_failed(step, (await proc.stderr.read()).decode(errors="replace"))


async def end_relay(proc: asyncio.subprocess.Process, wait_s: float = 5.0) -> None:
    """Close the step's input (it half-closes the connection and leaves once the port has
    answered), then end srun if it lingers (srun passes SIGTERM on to the step)."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    for stop in (proc.terminate, proc.kill):
        try:
            await asyncio.wait_for(proc.wait(), wait_s)
            return
        except TimeoutError:
            if proc.returncode is None:
                stop()
    await proc.wait()
