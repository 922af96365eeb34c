"""What runs on a Ray node for one corral worker: a detached actor that supervises the runner.

The Ray backend (`corral.backends.ray`) creates one `WorkerHost` actor per worker, pinned to the
planned node. The actor starts the same supervisor the local backend uses
(`corral.backends.local_runner`), so the preemption contract is identical everywhere: the
deadline file appears first, then SIGTERM to the worker's process group, then SIGKILL at the
deadline, and the runner records the exit code in ``exit.json``. The actor only adds what the
control plane cannot do from afar: it owns the node-local record dir and log, answers status and
log reads, and forwards stop requests.

Node-local layout (``root`` defaults to ``<tmp>/corral-ray``)::

    <root>/<workload>/<attempt>-<launch>/worker-<i>/   runner records (runner.json, child.json, exit.json)
    <root>/<workload>/<attempt>-<launch>/worker-<i>/preempt-deadline   CORRAL_PREEMPT_DEADLINE_FILE
    <root>/<workload>/<attempt>-<launch>/worker-<i>.log   the worker's stdout and stderr

``<launch>`` is a random token of the launch, so that two control planes (or two test runs) that
reuse a workload id on one machine never read each other's records.

Rendezvous: worker 0's actor picks a port free on its node; the others ask it (an actor call made
inside their constructor, so the control plane never waits on it).

This module imports nothing from Ray at import time and is plain Python: the backend wraps
`WorkerHost` with ``ray.remote`` when it creates actors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from corral.backends import local_runner
from corral.backends.environment import (
    CORRAL_CHECKPOINT_DIR,
    CORRAL_MASTER_ADDR,
    CORRAL_MASTER_PORT,
    CORRAL_PREEMPT_DEADLINE_FILE,
    RESERVED,
    format_deadline,
)
from corral.backends.local_runner import (
    CHILD_RECORD,
    EXIT_RECORD,
    kill_group,
    read_deadline,
    read_identity,
    read_json,
    write_text_atomic,
)

__all__ = ["DEADLINE_FILE", "RENDEZVOUS_TIMEOUT_S", "WorkerHost", "default_root"]

DEADLINE_FILE = "preempt-deadline"
RENDEZVOUS_TIMEOUT_S = 120.0


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "corral-ray"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host else "0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


def _node_address() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


class WorkerHost:
    """One worker's supervisor on its Ray node. Created by the backend as a detached, named actor.

    Contract of the constructor: returns once the runner process was started (or recorded as not
    startable); it never raises for a bad command, which the runner reports (exit 127).
    `master` is worker 0's actor handle (None for worker 0 itself).
    """

    def __init__(self, workload_id: str, attempt: int, worker: int, argv: list[str],
                 env: dict[str, str], cwd: str | None, master: Any = None,
                 root: str | None = None, launch_token: str = "") -> None:
        base = Path(root) if root else default_root()
        self.attempt_dir = base / workload_id / f"{attempt}-{launch_token}"
        self.dir = self.attempt_dir / f"worker-{worker}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.attempt_dir / f"worker-{worker}.log"
        self.deadline_file = self.dir / DEADLINE_FILE
        self.address = _node_address()
        self.node = _node_id()
        if master is None:
            self.port = _free_port(self.address)
            master_addr, master_port = self.address, self.port
        else:
            import ray

            master_addr, master_port = ray.get(master.rendezvous.remote(),
                                               timeout=RENDEZVOUS_TIMEOUT_S)
            self.port = 0
        # Only the contract's names are dropped: other CORRAL_* variables of the node (a test
        # harness's markers, say) stay, as any variable of the node's environment would.
        full_env = {k: v for k, v in os.environ.items() if k not in RESERVED}
        full_env.update(env)
        full_env[CORRAL_MASTER_ADDR] = master_addr
        full_env[CORRAL_MASTER_PORT] = str(master_port)
        full_env[CORRAL_PREEMPT_DEADLINE_FILE] = str(self.deadline_file)
        if env.get(CORRAL_CHECKPOINT_DIR):
            with contextlib.suppress(OSError):  # the worker reports it if it cannot write there
                Path(env[CORRAL_CHECKPOINT_DIR]).mkdir(parents=True, exist_ok=True)
        self.runner = self._spawn(argv, full_env, cwd)

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str | None
               ) -> subprocess.Popen[bytes]:
        runner_argv = [*local_runner.runner_argv(sys.executable), "--record-dir", str(self.dir),
                       "--deadline-file", str(self.deadline_file), "--cwd", cwd or "", "--",
                       *argv]
        with open(self.log_path, "ab") as log:
            # start_new_session: the runner must not get the signals Ray sends this actor's group.
            return subprocess.Popen(runner_argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def rendezvous(self) -> tuple[str, int]:
        return self.address, self.port

    def status(self) -> dict[str, Any]:
        """{state: starting|running|ended, exit: the runner's exit record or None, node: the
        Ray node id it runs on}.

        `ended` with exit None means the runner died without recording (it was killed).
        """
        alive = self.runner.poll() is None
        exit_record = read_json(self.dir / EXIT_RECORD)
        if alive and exit_record is None:
            started = (self.dir / CHILD_RECORD).exists()
            return {"state": "running" if started else "starting", "exit": None,
                    "node": self.node}
        if exit_record is None:
            exit_record = read_json(self.dir / EXIT_RECORD)  # written just before it exited
        return {"state": "ended", "exit": exit_record, "node": self.node}

    def stop(self, grace_seconds: float) -> float:
        """The preemption contract on this node: deadline file, then SIGTERM to the runner (which
        signals the worker's group and kills it at the deadline). Never extends a deadline.
        Returns the deadline in force (unix seconds on this node)."""
        deadline = time.time() + max(0.0, grace_seconds)
        previous = read_deadline(self.deadline_file)
        if previous is not None and previous <= deadline:
            return previous
        write_text_atomic(self.deadline_file, format_deadline(deadline))
        if self.runner.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.runner.send_signal(signal.SIGTERM)
        return deadline

    def read_log(self, offset: int, max_bytes: int) -> tuple[bytes, int]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        return chunk, offset + len(chunk)

    def reap(self, remove: bool = False) -> None:
        """Kill whatever is left of the worker and its runner; `remove` deletes the node-local
        records and log (the backend has collected the log by then)."""
        child = read_identity(self.dir / CHILD_RECORD)
        if child is not None and local_runner.is_alive(child):
            kill_group(child.pid, signal.SIGKILL)
        if self.runner.poll() is None:
            kill_group(self.runner.pid, signal.SIGKILL)
            self.runner.wait()
        if remove:
            shutil.rmtree(self.attempt_dir / self.dir.name, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.attempt_dir.rmdir()  # only once every worker of the attempt is gone
