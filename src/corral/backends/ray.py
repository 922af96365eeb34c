"""The Ray backend: each worker of a gang is a detached Ray actor pinned to its planned node.

    control plane                           Ray node (the planned one)
    RayBackend.launch ──actor per worker──> WorkerHost (corral.backends.ray_worker)
                      (node affinity,          └─ local_runner ── the user's command
                       num_gpus = share)
    RayBackend.poll   ──status()──────────> exit.json / runner liveness
                      ──ray.nodes()───────> node alive?  (dead -> workers LOST, NodeLost)
    RayBackend.stop   ──stop(grace)───────> deadline file, SIGTERM, SIGKILL at the deadline

Placement: corral decides; Ray executes. Each actor gets
``NodeAffinitySchedulingStrategy(node, soft=False)`` for the node the plan chose (a hard pin: it
never runs elsewhere) and asks Ray for the planned share as ``num_gpus`` (a whole count, or the
fraction 0.25 for a quarter of one device), so Ray's own accounting agrees and no other Ray user
can take those GPUs. CUDA_VISIBLE_DEVICES is the plan's device list (the environment contract),
not the ids Ray happened to pick: corral's plan is what the rest of the pool is scheduled against.

Identity and re-adoption: actors are detached and named ``<workload>/<attempt>/<worker>`` in the
namespace ``corral``, so they outlive a crashed control plane; a new RayBackend over the same
work dir finds them again with ``ray.get_actor``. Ends are persisted as soon as they are seen
(`corral.backends.records`), so a worker that finished before its node died is still reported
as finished.

Node death: ``ray.nodes()`` is read on every poll; a worker whose node is not Alive is LOST
(NodeLost) at once, without waiting for the actor call to time out.

Logs: streamed from the actor (`read_logs` reads the node-local file through it) and collected
into the control plane's work dir when the attempt is released; a node that died takes its
uncollected log with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from corral.backends import base, exits
from corral.backends.accelerators import Vendor, node_vendor, ray_request
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.environment import worker_environment
from corral.backends.errors import (
    BackendUnavailable,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd
from corral.backends.ray_nodes import RayNode, ray_inventory, read_ray_nodes, view_ray_nodes
from corral.backends.records import AttemptRecord, AttemptRecords, ended_attempt, statuses
from corral.core.model import Node

__all__ = ["NAMESPACE", "RayBackend", "actor_name"]

log = logging.getLogger(__name__)

NAMESPACE: Final = "corral"
Key = tuple[str, int, int]


def actor_name(workload_id: str, attempt: int, worker: int) -> str:
    return f"{workload_id}/{attempt}/{worker}"


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # an optional extra
        raise BackendUnavailable("the Ray backend needs the ray package: pip install "
                                 "'corral[ray]'") from e
    return ray


class RayBackend(Backend, InventorySource, LogSource):
    """Runs workers as detached actors on a Ray cluster. See the module docstring.

    address: the cluster (``ray.init(address=...)``) when this process is not attached yet;
    an attached process is used as is (and not detached by `close`). work_dir: the control
    plane's records (one backend per work dir). node_root: where actors keep records and logs
    on each node. status_wait_s: how long one poll waits for actor answers; a worker whose
    actor has not answered keeps its last known state, and its answer is taken by a later poll
    (an actor still starting, a new Python process on its node, answers seconds later: waiting
    the full poll_timeout_s for it held every poll of a launch wave). poll_timeout_s: how long
    log collection waits for an actor. kill_slack_s: a worker still not ended this long after
    its stop deadline has its actor killed.
    """

    name = "ray"

    def __init__(
        self, work_dir: str | os.PathLike[str], *, address: str | None = None,
        namespace: str = NAMESPACE, provider: str = "ray", node_prefix: str = "ray-",
        gpu_memory_mib: Mapping[str, int] | None = None, node_root: str | None = None,
        poll_timeout_s: float = 2.0, kill_slack_s: float = 5.0, status_wait_s: float = 0.2,
    ) -> None:
        ray = _ray()
        self._owns_connection = False
        if not ray.is_initialized():
            try:
                ray.init(address=address or "auto", log_to_driver=False)
            except (ConnectionError, RuntimeError) as e:
                raise BackendUnavailable(f"cannot reach the Ray cluster at {address or 'auto'}: "
                                         f"{e}; start it or fix the address") from e
            self._owns_connection = True
        self.namespace, self.provider, self.node_prefix = namespace, provider, node_prefix
        self.gpu_memory_mib = dict(gpu_memory_mib or {})
        self.node_root = node_root
        self.poll_timeout_s, self.kill_slack_s = poll_timeout_s, kill_slack_s
        self.status_wait_s = status_wait_s
        self.records = AttemptRecords(Path(work_dir))
        self._attempts: dict[tuple[str, int], AttemptRecord] = {
            r.key: r for r in self.records.scan()}
        self._handles: dict[Key, Any] = {}
        self._asked: dict[Key, Any] = {}  # outstanding status() call per worker
        self._last: dict[Key, dict[str, Any]] = {}  # last answer per worker
        self._actor_class: Any = None

    def close(self) -> None:
        """Detach from Ray if this backend attached. Actors keep running (they are detached)."""
        if self._owns_connection:
            _ray().shutdown()
            self._owns_connection = False

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        self._launch(spec, None)

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """`launch` for a batch: Ray's node table read once, and every actor of the batch
        created without waiting for the one before (``.remote()`` returns at once; Ray's GCS
        schedules the creations concurrently). Returns each attempt's error, in order; None
        where it was launched."""
        if not specs:
            return []
        try:
            nodes = self._nodes_by_corral_id()
        except BackendUnavailable as e:
            return [e for _ in specs]
        errors: list[Exception | None] = []
        for spec in specs:
            try:
                self._launch(spec, nodes)
            except Exception as e:  # handed back to the caller, per attempt
                errors.append(e)
            else:
                errors.append(None)
        return errors

    def _launch(self, spec: LaunchSpec, nodes: dict[str, RayNode] | None) -> None:
        AttemptRecords.check_id(spec, "Ray")
        if self.records.existing(spec) is not None:
            return
        if nodes is None:
            nodes = self._nodes_by_corral_id()
        pins = self._check_placement(spec, nodes)
        record = self.records.create(spec, {"namespace": self.namespace, "ray_nodes": pins,
                                            "token": secrets.token_hex(4)})
        self._attempts[record.key] = record
        created: list[Any] = []
        try:
            master = None
            for a in sorted(spec.assignments, key=lambda a: a.worker):
                handle = self._create_actor(record, a, pins[str(a.worker)], master,
                                            node_vendor(nodes[a.node_id].node))
                created.append(handle)
                master = master or handle
        except Exception as e:  # any Ray error: the gang must not be left half-started
            for handle in created:
                with contextlib.suppress(Exception):
                    _ray().kill(handle, no_restart=True)
            for a in spec.assignments:
                record.end(a.worker, exits.lost(base.LAUNCH_INTERRUPTED, f"launch failed: {e}"))
            raise LaunchError(f"{spec.workload_id} attempt {spec.attempt}: Ray refused a worker: "
                              f"{e}; the created workers were killed; relaunch with a new "
                              "attempt") from e

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        if grace_seconds < 0:
            raise InvalidRequest("grace_seconds", f"must be >= 0, got {grace_seconds}")
        record = self._attempts.get((workload_id, attempt))
        if record is None or record.all_ended:
            return
        stop = record.request_stop(grace_seconds, reason) or record.stop()
        assert stop is not None
        # Sent again on every call: the actor never signals twice nor extends its deadline, and
        # a control plane that crashed between recording the stop and sending it still sends it.
        remaining = max(0.0, stop.deadline - time.time())
        for a in record.spec.assignments:
            if a.worker in record.ends:
                continue
            handle = self._handle(record, a.worker)
            if handle is not None:
                handle.stop.remote(remaining)  # fire and forget; poll sees the effect

    def poll(self, now: float) -> list[WorkerStatus]:
        if not self._attempts:
            return []
        alive = self._alive_nodes()
        pending = self._ask_everyone(alive)
        answers = self._collect(pending)
        return statuses(self._attempts, now,
                        lambda record, a: self._observe(record, a.worker, alive, answers))

    def release(self, workload_id: str, attempt: int) -> None:
        record = ended_attempt(self._attempts, workload_id, attempt, self.poll)
        if record is None:
            return
        for a in record.spec.assignments:
            self._collect_log_and_kill(record, a.worker)
        AttemptRecords.mark_released(record)
        del self._attempts[record.key]

    # --- capabilities --------------------------------------------------------------------------

    def inventory(self) -> list[Node]:
        """Every Ray node as a corral node of one provider; dead nodes are UNHEALTHY."""
        return ray_inventory(self._ray_nodes(), provider=self.provider, prefix=self.node_prefix,
                             gpu_memory_mib=self.gpu_memory_mib)

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        if offset < 0 or max_bytes <= 0:
            raise InvalidRequest("offset", "offset must be >= 0 and max_bytes > 0")
        record = self._attempts.get((workload_id, attempt)) if attempt is not None else None
        record = record or self.records.find(workload_id, attempt)
        if not any(a.worker == worker for a in record.spec.assignments):
            raise UnknownAttempt(f"{workload_id} attempt {record.spec.attempt} has no worker "
                                 f"{worker}")
        collected = record.log_path(worker)
        if collected.exists():
            with open(collected, "rb") as f:
                f.seek(offset)
                chunk = f.read(max_bytes)
            return chunk, offset + len(chunk)
        handle = self._handle(record, worker)
        if handle is None:
            return b"", offset
        try:
            chunk, nxt = _ray().get(handle.read_log.remote(offset, max_bytes),
                                    timeout=self.poll_timeout_s)
        except Exception:  # the actor or its node is gone: nothing more to read
            return b"", offset
        return chunk, nxt

    # --- launching -----------------------------------------------------------------------------

    def _check_placement(self, spec: LaunchSpec, nodes: dict[str, RayNode]) -> dict[str, str]:
        """worker -> Ray node id; refuses unknown or dead nodes and impossible device lists."""
        pins: dict[str, str] = {}
        for a in spec.assignments:
            node = nodes.get(a.node_id)
            if node is None or not node.alive:
                state = "dead" if node is not None else "not in this Ray cluster"
                raise InvalidLaunchSpec(
                    "assignments", f"worker {a.worker}: node {a.node_id!r} is {state} "
                    f"(alive: {sorted(k for k, n in nodes.items() if n.alive)})")
            if any(d >= node.gpus for d in a.devices):
                raise InvalidLaunchSpec(
                    "assignments", f"worker {a.worker}: node {a.node_id} has {node.gpus} GPUs, "
                    f"the plan gives devices {list(a.devices)}")
            if a.milli_per_device < 1000 and len(a.devices) > 1:
                raise InvalidLaunchSpec(
                    "assignments", f"worker {a.worker}: a share of a GPU must be on one device, "
                    f"got {list(a.devices)}")
            pins[str(a.worker)] = node.ray_id
        return pins

    def _create_actor(self, record: AttemptRecord, a: Any, ray_node: str, master: Any,
                      vendor: Vendor = Vendor.NVIDIA) -> Any:
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from corral.backends.ray_worker import WorkerHost

        spec = record.spec
        env = worker_environment(spec, a, master_addr="", master_port=0, deadline_file="",
                                 vendor=vendor)
        share = len(a.devices) if a.milli_per_device >= 1000 else a.milli_per_device / 1000
        num_gpus, custom = ray_request(vendor, share if a.devices else 0)
        if self._actor_class is None:  # made once: each ray.remote() wraps and exports anew
            self._actor_class = ray.remote(WorkerHost)
        return self._actor_class.options(
            name=actor_name(spec.workload_id, spec.attempt, a.worker),
            namespace=self.namespace, lifetime="detached", max_restarts=0, max_task_retries=0,
            num_cpus=0, num_gpus=num_gpus, resources=custom,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray_node, soft=False),
        ).remote(spec.workload_id, spec.attempt, a.worker, list(spec.argv()), env,
                 spec.working_dir, master, self.node_root, record.engine["token"])

    # --- observing -----------------------------------------------------------------------------

    def _handle(self, record: AttemptRecord, worker: int) -> Any:
        key = (*record.key, worker)
        if key not in self._handles:
            name = actor_name(*key)
            try:
                self._handles[key] = _ray().get_actor(name, namespace=self.namespace)
            except ValueError:  # no such actor (never created, or dead and forgotten)
                return None
        return self._handles[key]

    def _ask_everyone(self, alive: dict[str, bool]) -> dict[Key, Any]:
        """Send status() to every worker that has not ended and whose node is alive, unless an
        earlier call is still unanswered (never pile calls up behind a slow actor)."""
        for record in self._attempts.values():
            for a in record.spec.assignments:
                key = (*record.key, a.worker)
                if a.worker in record.ends or key in self._asked:
                    continue
                if not alive.get(record.engine["ray_nodes"][str(a.worker)], False):
                    continue
                handle = self._handle(record, a.worker)
                if handle is not None:
                    self._asked[key] = handle.status.remote()
        return dict(self._asked)

    def _collect(self, pending: dict[Key, Any]) -> dict[Key, Any]:
        """Answers that arrived within status_wait_s: a dict, or the exception Ray raised."""
        if not pending:
            return {}
        ray = _ray()
        refs = list(pending.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.status_wait_s)
        ready_set = set(ready)
        answers: dict[Key, Any] = {}
        for key, ref in pending.items():
            if ref not in ready_set:
                continue
            del self._asked[key]
            try:
                answers[key] = ray.get(ref)
            except Exception as e:  # RayActorError and kin: the actor is gone
                answers[key] = e
        return answers

    def _observe(self, record: AttemptRecord, worker: int, alive: dict[str, bool],
                 answers: dict[Key, Any]) -> WorkerEnd:
        known = record.ends.get(worker)
        if known is not None:
            return known
        key = (*record.key, worker)
        node = record.engine["ray_nodes"][str(worker)]
        if not alive.get(node, False):
            self._asked.pop(key, None)
            return record.end(worker, exits.lost(
                base.NODE_LOST, f"Ray node {node[:12]} is dead (ray.nodes() Alive false)",
                time.time()))
        answer: Any = answers.get(key, self._last.get(key))
        if key in answers and not isinstance(answer, Exception):
            self._last[key] = answer
        end = self._interpret(record, worker, answer)
        if end.state.ended:
            self._last.pop(key, None)
            return record.end(worker, end)
        return self._enforce_deadline(record, worker, end)

    def _interpret(self, record: AttemptRecord, worker: int, answer: Any) -> WorkerEnd:
        stop = record.stop()
        if isinstance(answer, Exception):
            if stop is not None:
                return WorkerEnd(WorkerState.STOPPED, base.KILLED_AFTER_GRACE, None, time.time(),
                                 f"{stop.reason} (its actor was killed)")
            return exits.lost(base.PROCESS_GONE, f"the worker's Ray actor died: "
                              f"{type(answer).__name__}", time.time())
        if answer is None:
            if self._handle(record, worker) is None and time.time() - record.launched_at > 5:
                return exits.lost(base.PROCESS_GONE, "its Ray actor does not exist (never "
                                  "created, or died while no control plane watched)")
            return WorkerEnd(WorkerState.STARTING, base.STARTING)
        if answer["state"] == "starting":
            return WorkerEnd(WorkerState.STARTING, base.STARTING)
        if answer["state"] == "running":
            return WorkerEnd(WorkerState.RUNNING, base.RUNNING)
        if answer["exit"] is None:
            return exits.lost(base.PROCESS_GONE, "the worker's supervisor died without recording "
                              "an exit code", time.time())
        return exits.ended_from_record(answer["exit"], stop.reason if stop else "")

    def _enforce_deadline(self, record: AttemptRecord, worker: int, end: WorkerEnd) -> WorkerEnd:
        """Backstop: an actor that has not ended its worker by deadline + slack is killed."""
        stop = record.stop()
        if stop is None or time.time() < stop.deadline + self.kill_slack_s:
            return end
        handle = self._handle(record, worker)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.reap.remote()
                _ray().kill(handle, no_restart=True)
        started = end.state == WorkerState.RUNNING
        return record.end(worker, WorkerEnd(
            WorkerState.STOPPED, base.KILLED_AFTER_GRACE if started else base.STOPPED_BEFORE_START,
            -9 if started else None, time.time(), f"{stop.reason} (corral killed its actor after "
            "the deadline)"))

    def _collect_log_and_kill(self, record: AttemptRecord, worker: int) -> None:
        handle = self._handle(record, worker)
        if handle is None:
            return
        ray = _ray()
        path = record.log_path(worker)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception), open(path, "ab") as out:
            offset = 0
            while True:
                chunk, offset = ray.get(handle.read_log.remote(offset, 1 << 20),
                                        timeout=self.poll_timeout_s)
                if not chunk:
                    break
                out.write(chunk)
        with contextlib.suppress(Exception):
            ray.get(handle.reap.remote(True), timeout=self.poll_timeout_s)
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
        self._handles.pop((*record.key, worker), None)

    # --- the cluster ---------------------------------------------------------------------------

    def _ray_nodes(self) -> list[dict[str, Any]]:
        try:
            return read_ray_nodes(_ray())
        except Exception as e:  # the GCS is unreachable
            raise BackendUnavailable(f"cannot read Ray's node table: {e}") from e

    def _alive_nodes(self) -> dict[str, bool]:
        return {n["NodeID"]: bool(n["Alive"]) for n in self._ray_nodes()}

    def _nodes_by_corral_id(self) -> dict[str, RayNode]:
        nodes = view_ray_nodes(self._ray_nodes(), provider=self.provider,
                               prefix=self.node_prefix, gpu_memory_mib=self.gpu_memory_mib)
        return {n.node.id: n for n in nodes}
