"""What runs on a Ray node for corral: one host actor per node that starts and answers for the
supervisors of every corral worker placed there.

The Ray backend (`corral.backends.ray`) creates one `NodeHost` actor per Ray node it places work
on: detached, named ``corral-host/<ray node id>``, pinned to its node. For each worker the host
starts the same supervisor the local backend uses (`corral.backends.local_runner`) as a process,
so the preemption contract is identical everywhere: the deadline file appears first, then
SIGTERM to the worker's process group, then SIGKILL at the deadline, and the runner records the
exit code in ``exit.json``. The host only adds what the control plane cannot do from afar: it
starts runners on its node, answers status and log reads from the runners' node-local records,
and forwards stop requests.

Why a host per node and not an actor per worker: a Ray actor is a Python process of its own
that imports Ray (about a second of CPU here) before it can start the runner, while Ray's own
tasks reuse pooled processes; and a poll made one call per worker. A host starts a runner with
one ``Popen`` and answers every worker of its node in one call (`NodeHost.statuses`).

The host keeps no state that matters: every answer is read from the worker's directory (the
runner's records: ``spawn.json`` written by the host right after it started the runner, then
``runner.json``, ``child.json``, ``exit.json``), so a control plane that restarts, or a host that
is recreated, finds running work again by its directory.

Node-local layout (``root`` defaults to ``<tmp>/corral-ray``)::

    <root>/<workload>/<attempt>-<launch>/worker-<i>/   runner records (spawn, runner, child, exit)
    <root>/<workload>/<attempt>-<launch>/worker-<i>/preempt-deadline   CORRAL_PREEMPT_DEADLINE_FILE
    <root>/<workload>/<attempt>-<launch>/worker-<i>.log   the worker's stdout and stderr
    <root>/<workload>/<attempt>-<launch>/progress-<i>/progress.json   CORRAL_PROGRESS_FILE
    <root>/<workload>/<attempt>-<launch>/rendezvous.json   worker 0's address and port

``<launch>`` is a random token of the launch, so that two control planes (or two test runs) that
reuse a workload id on one machine never read each other's records.

Rendezvous: the host of worker 0 picks a port free on its node and returns it from `start`; the
backend hands that call's result to the other workers' `start` calls, which Ray runs once it is
there, so the control plane never waits on it.

This module imports nothing from Ray at import time and is plain Python: the backend wraps
`NodeHost` with ``ray.remote`` when it creates hosts.
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

from corral.backends import elastic_world, local_runner
from corral.backends.containers import (
    ContainerWorker,
    Mount,
    container_name,
    detect_runtime,
    node_container,
    runtime_problem,
)
from corral.backends.environment import (
    CORRAL_CHECKPOINT_DIR,
    CORRAL_MASTER_ADDR,
    CORRAL_MASTER_PORT,
    CORRAL_PREEMPT_DEADLINE_FILE,
    CORRAL_PROGRESS_FILE,
    RESERVED,
    format_deadline,
)
from corral.backends.errors import InvalidLaunchSpec
from corral.backends.local_runner import (
    CHILD_RECORD,
    EXIT_RECORD,
    SPAWN_RECORD,
    kill_group,
    read_deadline,
    read_identity,
    read_json,
    write_identity,
    write_json_atomic,
    write_text_atomic,
)
from corral.backends.progress import progress_path, read_progress_file

__all__ = ["DEADLINE_FILE", "HOST_PREFIX", "NodeHost", "WorkerPlace", "default_root",
           "host_name"]

DEADLINE_FILE = "preempt-deadline"
RENDEZVOUS_FILE = "rendezvous.json"
HOST_PREFIX = "corral-host/"


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / "corral-ray"


def host_name(ray_node_id: str) -> str:
    """The detached actor's name of the host on a Ray node."""
    return HOST_PREFIX + ray_node_id


#: the contract variables `NodeHost.start` adds on the node (a container gets them by name)
_ADDED = (CORRAL_MASTER_ADDR, CORRAL_MASTER_PORT, CORRAL_PREEMPT_DEADLINE_FILE,
          CORRAL_PROGRESS_FILE)
_VOLUME_ENV = "CORRAL_VOLUME_"  # corral.spec.packaging.VOLUME_ENV_PREFIX: a volume's path


def _container(place: tuple[Any, ...], image: str, argv: list[str], env: dict[str, str],
               names: set[str], cwd: str, setup: str | None) -> ContainerWorker:
    """The worker as `podman run` on this node; its GPUs are the CUDA_VISIBLE_DEVICES it was
    given, its volumes the CORRAL_VOLUME_* paths (on Ray a volume's mount is its host path)."""
    runtime = detect_runtime()
    if runtime is None:
        raise InvalidLaunchSpec("image", f"this Ray node cannot run containers: "
                                f"{runtime_problem()}")
    where = WorkerPlace(*place)
    devices = [int(d) for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.isdigit()]
    return node_container(
        runtime, image, argv, name=container_name(where.attempt_dir, *place[1:3], place[4]),
        contract_env={k: env[k] for k in names if k in env}, attempt_dir=where.attempt_dir,
        progress_dir=where.progress_file.parent, cwd=cwd, checkpoint_dir=env.get(
            CORRAL_CHECKPOINT_DIR) or None, volumes=[Mount(p, p) for k, p in env.items()
                                                    if k in names and k.startswith(_VOLUME_ENV)],
        devices=devices, setup=setup)


def _write_world_file(env: dict[str, str]) -> None:
    """An elastic member's world file on this node, before its worker starts, as an agent
    writes it on its host (`corral.backends.elastic_world`): the control plane writes it only
    where it sees the checkpoint directory, which on a Ray cluster may be mounted on the nodes
    alone. A file of this generation or newer is left as it is (the control plane's lists the
    members; this one cannot)."""
    path = env.get(elastic_world.CORRAL_ELASTIC_WORLD_FILE, "")
    generation = env.get(elastic_world.CORRAL_ELASTIC_GENERATION, "")
    if not path or not generation.isdigit():
        return
    known = read_json(path)
    if known is not None and str(known.get("generation", "")).isdigit() and int(
            known["generation"]) >= int(generation):
        return
    elastic_world.write_from_env(env)


class WorkerPlace:
    """Where one worker's records and log live on its node (see the module docstring)."""

    def __init__(self, root: str | None, workload_id: str, attempt: int, token: str,
                 worker: int) -> None:
        self.attempt_dir = (Path(root) if root else default_root()) / workload_id / (
            f"{attempt}-{token}")
        self.dir = self.attempt_dir / f"worker-{worker}"
        self.log_path = self.attempt_dir / f"worker-{worker}.log"
        self.deadline_file = self.dir / DEADLINE_FILE
        #: the worker's CORRAL_PROGRESS_FILE (`corral.backends.progress`), read by `progress`
        self.progress_file = progress_path(self.attempt_dir, worker)


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


class NodeHost:
    """corral's host on one Ray node. Created by the backend as a detached, named actor.

    A worker is named by its place: (root, workload_id, attempt, token, worker), see
    `WorkerPlace`. `start` never raises for a bad command, which the runner reports (exit 127).
    """

    def __init__(self) -> None:
        self.address = _node_address()
        self.node = _node_id()
        self._runners: dict[Path, subprocess.Popen[bytes]] = {}  # reaped as they end

    def node_id(self) -> str:
        return self.node

    def start(self, place: tuple[Any, ...], argv: list[str], env: dict[str, str],
              cwd: str | None, master: tuple[str, int] | None,
              setup: str | None = None, image: str | None = None) -> tuple[str, int]:
        """Start one worker's runner (once: a second call for the same place starts nothing).
        Returns the rendezvous address: this node's and a free port for worker 0 (`master` None),
        else `master` as given. `setup`: the spec's setup lines, written here for the runner to
        run before the command. `image`: the worker runs in a podman container of it on this
        node, as on the local backend (`corral.backends.containers`; setup then runs in it)."""
        where = WorkerPlace(*place)
        where.dir.mkdir(parents=True, exist_ok=True)
        rendezvous = where.attempt_dir / RENDEZVOUS_FILE
        if master is None:
            known = read_json(rendezvous)
            master = (str(known["address"]), int(known["port"])) if known else (
                self.address, _free_port(self.address))
            write_json_atomic(rendezvous, {"address": master[0], "port": master[1]})
        if (where.dir / SPAWN_RECORD).exists():
            return master
        # Only the contract's names are dropped: other CORRAL_* variables of the node (a test
        # harness's markers, say) stay, as any variable of the node's environment would.
        full_env = {k: v for k, v in os.environ.items() if k not in RESERVED}
        full_env.update(env)
        full_env[CORRAL_MASTER_ADDR] = master[0]
        full_env[CORRAL_MASTER_PORT] = str(master[1])
        full_env[CORRAL_PREEMPT_DEADLINE_FILE] = str(where.deadline_file)
        # the progress contract, as the local backend and agents keep it: the folder is the
        # worker's (it writes a temporary file there and renames it over progress.json)
        where.progress_file.parent.mkdir(parents=True, exist_ok=True)
        full_env[CORRAL_PROGRESS_FILE] = str(where.progress_file)
        if env.get(CORRAL_CHECKPOINT_DIR):
            with contextlib.suppress(OSError):  # the worker reports it if it cannot write there
                Path(env[CORRAL_CHECKPOINT_DIR]).mkdir(parents=True, exist_ok=True)
        _write_world_file(env)
        setup_args: list[str] = []
        if setup is not None:
            setup_file = where.dir / "setup.sh"
            local_runner.write_text_atomic(setup_file, setup, mode=0o600)
            setup_args = ["--setup-file", str(setup_file)]
        tail = ["--", *argv]
        if image is not None:  # issue 13
            box = _container(place, image, argv, full_env, {*env, *_ADDED}, cwd or "", setup)
            full_env.update(box.env)
            setup_args, tail = [], ["--container", box.name, "--", *box.argv]
        runner_argv = [*local_runner.runner_argv(sys.executable), "--record-dir", str(where.dir),
                       "--deadline-file", str(where.deadline_file), "--cwd", cwd or "",
                       *setup_args, *tail]
        with open(where.log_path, "ab") as log:
            # start_new_session: the runner must not get the signals Ray sends this actor's group.
            runner = subprocess.Popen(runner_argv, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=full_env,
                                      start_new_session=True)
        self._runners[where.dir] = runner
        write_identity(where.dir / SPAWN_RECORD, runner.pid)
        return master

    def statuses(self, places: list[tuple[Any, ...]]) -> list[dict[str, Any] | None]:
        """`status` of each place, in order: one call answers every worker of this node."""
        self._reap_ended()
        return [self.status(place) for place in places]

    def status(self, place: tuple[Any, ...]) -> dict[str, Any] | None:
        """{state: starting|running|ended, exit: the runner's exit record or None, node: the
        Ray node id}; None where no runner was ever started for this place.

        `ended` with exit None means the runner died without recording (it was killed).
        """
        where = WorkerPlace(*place)
        exit_record = read_json(where.dir / EXIT_RECORD)
        if exit_record is not None:
            return {"state": "ended", "exit": exit_record, "node": self.node}
        runner = read_identity(where.dir / SPAWN_RECORD)
        if runner is None:
            return None
        self._reap(where.dir)
        if local_runner.is_alive(runner):
            started = (where.dir / CHILD_RECORD).exists()
            return {"state": "running" if started else "starting", "exit": None,
                    "node": self.node}
        # written just before it exited, or never (killed)
        return {"state": "ended", "exit": read_json(where.dir / EXIT_RECORD), "node": self.node}

    def progress(self, places: list[tuple[Any, ...]]) -> list[dict[str, Any] | None]:
        """What each worker last wrote to its CORRAL_PROGRESS_FILE, in order (`Progress`'s
        record), None where it wrote nothing that follows the contract."""
        out: list[dict[str, Any] | None] = []
        for place in places:
            found = read_progress_file(WorkerPlace(*place).progress_file)
            out.append(None if found is None else dict(found.as_record()))
        return out

    def stop(self, place: tuple[Any, ...], grace_seconds: float) -> float:
        """The preemption contract on this node: deadline file, then SIGTERM to the runner (which
        signals the worker's group and kills it at the deadline). Never extends a deadline.
        Returns the deadline in force (unix seconds on this node)."""
        where = WorkerPlace(*place)
        deadline = time.time() + max(0.0, grace_seconds)
        previous = read_deadline(where.deadline_file)
        if previous is not None and previous <= deadline:
            return previous
        where.dir.mkdir(parents=True, exist_ok=True)  # a stop before the start: never starts
        write_text_atomic(where.deadline_file, format_deadline(deadline))
        runner = read_identity(where.dir / SPAWN_RECORD)
        if runner is not None and local_runner.is_alive(runner):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(runner.pid, signal.SIGTERM)
        return deadline

    def read_log(self, place: tuple[Any, ...], offset: int, max_bytes: int) -> tuple[bytes, int]:
        try:
            with open(WorkerPlace(*place).log_path, "rb") as f:
                f.seek(offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        return chunk, offset + len(chunk)

    def finish(self, place: tuple[Any, ...], offset: int, max_bytes: int
               ) -> tuple[bytes, int, bool]:
        """The log from `offset`; once it is read to its end (a chunk under `max_bytes`), also
        `reap` with the records removed. (chunk, next offset, finished): the release of a
        worker in one round trip whatever its log's size up to `max_bytes`."""
        chunk, nxt = self.read_log(place, offset, max_bytes)
        if len(chunk) < max_bytes:
            self.reap(place, remove=True)
            return chunk, nxt, True
        return chunk, nxt, False

    def reap(self, place: tuple[Any, ...], remove: bool = False) -> None:
        """Kill whatever is left of the worker and its runner; `remove` deletes the node-local
        records and log (the backend has collected the log by then)."""
        where = WorkerPlace(*place)
        child = read_identity(where.dir / CHILD_RECORD)
        if child is not None and local_runner.is_alive(child):
            kill_group(child.pid, signal.SIGKILL)
        runner = read_identity(where.dir / SPAWN_RECORD)
        if runner is not None and local_runner.is_alive(runner):
            kill_group(runner.pid, signal.SIGKILL)
        self._reap(where.dir, wait=True)
        if remove:
            shutil.rmtree(where.dir, ignore_errors=True)
            shutil.rmtree(where.progress_file.parent, ignore_errors=True)
            where.log_path.unlink(missing_ok=True)
            if not any(where.attempt_dir.glob("worker-*")):  # every worker of it is gone
                (where.attempt_dir / RENDEZVOUS_FILE).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    where.attempt_dir.rmdir()

    def _reap(self, wdir: Path, wait: bool = False) -> None:
        """Collect a runner this host started once it ended (no zombie is left behind)."""
        runner = self._runners.get(wdir)
        if runner is None:
            return
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.wait(timeout=5)
        if runner.poll() is not None:
            del self._runners[wdir]

    def _reap_ended(self) -> None:
        for wdir in list(self._runners):
            self._reap(wdir)
