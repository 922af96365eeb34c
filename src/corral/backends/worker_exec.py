"""`corral exec`: run a command beside a running worker of the local backend, as it runs.

The worker's process is found from its runner's records (`<work>/<workload>/<attempt>/
worker-<i>/child.json`, checked alive by its start time, not by pid alone); the command then
gets that process's own environment (`/proc/<pid>/environ`: CUDA_VISIBLE_DEVICES, CORRAL_*,
secrets as the worker sees them), working directory and user, so what it sees is what the
worker sees (`kubectl exec` into the worker's container, without a container). A worker of an
`image:` is `podman run`: the command then runs inside its container (`podman exec`: the
container's env, workdir and user; at the timeout the podman client is killed, a command that
ignores that lives on in the container until the worker ends). Not interactive: no terminal,
standard input empty; at most `timeout_s`, then its process group is killed; each output stream
kept to `max_bytes` (the rest dropped, said so).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from corral.backends.local_runner import CHILD_RECORD, is_alive, read_identity

__all__ = ["ExecResult", "container_of", "exec_beside", "worker_pid"]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool


def worker_pid(work_dir: Path, workload_id: str, attempt: int, worker: int) -> int:
    """The live process of that worker; LookupError when it is not running here."""
    record = work_dir / workload_id / str(attempt) / f"worker-{worker}" / CHILD_RECORD
    who = read_identity(record)
    if who is None or not is_alive(who):
        raise LookupError(f"worker {worker} of {workload_id} (attempt {attempt}) has no live "
                          "process on this host")
    return who.pid


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def container_of(pid: int) -> tuple[list[str], str] | None:
    """(runtime command with its global options, container name) when process `pid` is an
    `image:` worker's `podman [options] run --name corral-...` (`corral.backends.containers`);
    None for a plain process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in argv]
    if os.path.basename(words[0]) != "podman" or "run" not in words:
        return None
    run = words.index("run")
    name = words[words.index("--name", run) + 1] if "--name" in words[run:] else ""
    return (words[:run], name) if name.startswith("corral-") else None


def exec_beside(pid: int, argv: list[str], *, timeout_s: float, max_bytes: int) -> ExecResult:
    """Run `argv` with the environment, cwd and user of process `pid`; inside its container
    (`podman exec`, which gives the container's env, workdir and user) when it runs in one."""
    env, cwd = _environ(pid), os.readlink(f"/proc/{pid}/cwd")
    box = container_of(pid)
    if box is not None:
        argv = [*box[0], "exec", box[1], *argv]
    st = os.stat(f"/proc/{pid}")
    as_other = os.geteuid() == 0 and st.st_uid != 0
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
        user=st.st_uid if as_other else None, group=st.st_gid if as_other else None,
        extra_groups=[] if as_other else None)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    truncated = len(out) > max_bytes or len(err) > max_bytes
    return ExecResult(None if timed_out else proc.returncode,
                      out[:max_bytes].decode(errors="replace"),
                      err[:max_bytes].decode(errors="replace"), timed_out, truncated)
