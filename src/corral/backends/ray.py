"""The Ray backend: each worker of a gang is a process started by corral's host actor on its
planned node, and its GPUs are held in Ray by a placement group pinned to that node.

    control plane                           Ray node (the planned one)
    RayBackend.launch ──start(place)──────> NodeHost, one per node (corral.backends.ray_worker)
                      (node affinity)          └─ local_runner ── the user's command
                      ──placement group───> bundles {GPU: share}, pinned by ray.io/node-id
    RayBackend.poll   ──statuses(places)──> one call per node: exit.json / runner liveness
                      ──ray.nodes()───────> node alive?  (dead -> workers LOST, NodeLost)
    RayBackend.stop   ──stop(place)───────> deadline file, SIGTERM, SIGKILL at the deadline

Placement: corral decides; Ray executes. The host actor of a node is detached, named
``corral-host/<ray node id>`` in the namespace ``corral``, made on first use with
``NodeAffinitySchedulingStrategy(node, soft=False)`` (a hard pin) and no resources of its own,
and lives on: a worker costs one ``Popen`` of the supervisor in it, not a new actor process that
imports Ray (how Ray's own tasks reuse pooled workers; the agent backend works the same way). The
planned share is held in Ray's accounting by one placement group per attempt, a bundle per
worker with GPUs (``{"GPU": n}`` or the fraction 0.25 for a quarter of one device, a vendor's
own resource for others) pinned with ``bundle_label_selector`` ``ray.io/node-id``, so no other
Ray user can take those GPUs; it is removed on release. CUDA_VISIBLE_DEVICES is the plan's device
list (the environment contract), not ids Ray picked: corral's plan is what the rest of the pool
is scheduled against.

Identity and re-adoption: a worker is named by its place on its node (work dir of the launch,
see `corral.backends.ray_worker`), and the host answers from the runner's records there, so a
new RayBackend over the same work dir finds running work again through the hosts (by name), and
a host that was recreated still answers for work started by the last one. Ends are persisted as
soon as they are seen (`corral.backends.records`), so a worker that finished before its node
died is still reported as finished.

Node death: ``ray.nodes()`` is read on every poll; a worker whose node is not Alive is LOST
(NodeLost) at once, without waiting for a host call to time out. A host that died (its calls
fail) makes its node's unfinished workers LOST (ProcessGone); their supervisors run in their own
sessions and are fenced by the deadline backstop.

Progress: each worker gets CORRAL_PROGRESS_FILE on its node (`corral.backends.progress`); the
control loop's progress collector asks `progress(workload, attempt)`, one host call per node
of the attempt, and records what the workers wrote, as for the local backend and agents.

Logs: streamed from the host (`read_logs` reads the node-local file through it) and collected
into the control plane's work dir when the attempt is released, with the node's records removed
in the same call; a node that died takes its uncollected log with it.
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
from corral.backends.changes import ChangeFeed, Delta
from corral.backends.environment import worker_environment
from corral.backends.errors import (
    BackendUnavailable,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd
from corral.backends.progress import Progress
from corral.backends.ray_nodes import RayNode, ray_inventory, read_ray_nodes, view_ray_nodes
from corral.backends.records import (
    AttemptRecord,
    AttemptRecords,
    ended_attempt,
    statuses,
    to_stop,
)
from corral.core.model import Node

__all__ = ["NAMESPACE", "RayBackend", "actor_name"]

log = logging.getLogger(__name__)

NAMESPACE: Final = "corral"
NODE_ID_LABEL: Final = "ray.io/node-id"  # Ray's own label of every node (placement groups)
Key = tuple[str, int, int]


def actor_name(workload_id: str, attempt: int, worker: int) -> str:
    """A worker's name in Ray (its placement group's bundle, messages)."""
    return f"{workload_id}/{attempt}/{worker}"


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # an optional extra
        raise BackendUnavailable("the Ray backend needs the ray package: pip install "
                                 "'corral[ray]'") from e
    return ray


class RayBackend(Backend, InventorySource, LogSource):
    """Runs workers through corral's host actor on each Ray node. See the module docstring.

    address: the cluster (``ray.init(address=...)``) when this process is not attached yet;
    an attached process is used as is (and not detached by `close`). work_dir: the control
    plane's records (one backend per work dir). node_root: where actors keep records and logs
    on each node. status_wait_s: how long one poll waits for the hosts' answers; a worker whose
    host has not answered keeps its last known state, and its answer is taken by a later poll
    (a host being created answers seconds later). poll_timeout_s: how long log collection waits
    for a host. kill_slack_s: a worker still not ended this long after its stop deadline has
    what is left of it killed by its host.
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
        self._hosts: dict[str, Any] = {}  # Ray node id -> its host's handle
        # outstanding statuses() call per Ray node: (the call, the workers it asked about)
        self._asked: dict[str, tuple[Any, list[Key]]] = {}
        self._last: dict[Key, dict[str, Any]] = {}  # last answer per worker
        self._host_class: Any = None
        self._changes = ChangeFeed()  # poll_changes: the last report, to diff against

    def close(self) -> None:
        """Detach from Ray if this backend attached. Actors keep running (they are detached)."""
        if self._owns_connection:
            _ray().shutdown()
            self._owns_connection = False

    @property
    def packaging_fields(self) -> frozenset[str]:
        """What `corral.control.packaging` may accept: setup, and image where podman runs on
        this host (the nodes are taken to be alike; a node without it fails the launch,
        naming image: `ray_worker`)."""
        from corral.backends.containers import detect_runtime

        return frozenset({"setup", "image"} if detect_runtime() else {"setup"})

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        self._launch(spec, None)

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """`launch` for a batch: Ray's node table read once, and every start of the batch sent
        without waiting for the one before (``.remote()`` returns at once; each host starts its
        node's workers in order). Returns each attempt's error, in order; None where it was
        launched."""
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
        started: list[int] = []
        try:
            vendors = {a.worker: node_vendor(nodes[a.node_id].node) for a in spec.assignments}
            self._reserve(record, vendors)
            master = None  # worker 0's start: its result is the rendezvous the others get
            for a in sorted(spec.assignments, key=lambda a: a.worker):
                call = self._start(record, a, master, vendors[a.worker])
                started.append(a.worker)
                master = master or call
        except Exception as e:  # any Ray error: the gang must not be left half-started
            for worker in started:
                with contextlib.suppress(Exception):
                    self._host_of(record, worker).reap.remote(self._place(record, worker), True)
            self._unreserve(record)
            record.end_launch_failed(e)
            raise LaunchError(f"{spec.workload_id} attempt {spec.attempt}: Ray refused a worker: "
                              f"{e}; the started workers were killed; relaunch with a new "
                              "attempt") from e

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        record = to_stop(self._attempts, workload_id, attempt, grace_seconds)
        if record is None:
            return
        stop = record.request_stop(grace_seconds, reason) or record.stop()
        assert stop is not None
        # Sent again on every call: the actor never signals twice nor extends its deadline, and
        # a control plane that crashed between recording the stop and sending it still sends it.
        remaining = max(0.0, stop.deadline - time.time())
        for a in record.spec.assignments:
            if a.worker in record.ends:
                continue
            with contextlib.suppress(Exception):  # fire and forget; poll sees the effect
                self._host_of(record, a.worker).stop.remote(self._place(record, a.worker),
                                                            remaining)

    def poll(self, now: float) -> list[WorkerStatus]:
        if not self._attempts:
            return []
        alive = self._alive_nodes()
        self._ask_everyone(alive)
        answers = self._collect()
        return statuses(self._attempts, now,
                        lambda record, a: self._observe(record, a.worker, alive, answers))

    def poll_changes(self, now: float) -> Delta:
        """`poll`, as only the attempts whose report changed since the last call, and those no
        longer reported (`corral.backends.changes`): the loop reconciles what moved."""
        return self._changes.delta(self.poll(now))

    def release(self, workload_id: str, attempt: int) -> None:
        record = ended_attempt(self._attempts, workload_id, attempt, self.poll)
        if record is None:
            return
        for a in record.spec.assignments:
            self._collect_log_and_reap(record, a.worker)
        self._unreserve(record)
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
        try:
            chunk, nxt = _ray().get(self._host_of(record, worker).read_log.remote(
                self._place(record, worker), offset, max_bytes), timeout=self.poll_timeout_s)
        except Exception:  # the host or its node is gone: nothing more to read
            return b"", offset
        return chunk, nxt

    def progress(self, workload_id: str, attempt: int) -> dict[int, Progress]:
        """What the workers of an attempt last wrote to their CORRAL_PROGRESS_FILE, by worker;
        a worker that wrote nothing, or whose node does not answer, is left out."""
        record = self._attempts.get((workload_id, attempt))
        if record is None:
            return {}
        by_host: dict[str, list[int]] = {}
        for a in record.spec.assignments:
            by_host.setdefault(record.engine["ray_nodes"][str(a.worker)], []).append(a.worker)
        out: dict[int, Progress] = {}
        for ray_node, workers in sorted(by_host.items()):
            try:
                answers = _ray().get(self._host(ray_node).progress.remote(
                    [self._place(record, w) for w in workers]), timeout=self.poll_timeout_s)
            except Exception:  # the host or its node is gone: nothing to report
                continue
            for worker, found in zip(workers, answers, strict=False):
                if found is not None:
                    out[worker] = Progress(int(found["steps"]), float(found["steps_per_s"]),
                                           found.get("total_steps"))
        return out

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

    def _place(self, record: AttemptRecord, worker: int) -> tuple[Any, ...]:
        """The worker's place on its node (`corral.backends.ray_worker.WorkerPlace`)."""
        return (self.node_root, record.spec.workload_id, record.spec.attempt,
                record.engine["token"], worker)

    def _host(self, ray_node: str) -> Any:
        """The host actor of a Ray node: found by name, or made (detached, pinned, no
        resources of its own; ``get_if_exists``: two control planes make one)."""
        handle = self._hosts.get(ray_node)
        if handle is None:
            ray = _ray()
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from corral.backends.ray_worker import NodeHost, host_name

            if self._host_class is None:  # made once: each ray.remote() wraps and exports anew
                self._host_class = ray.remote(NodeHost)
            handle = self._hosts[ray_node] = self._host_class.options(
                name=host_name(ray_node), namespace=self.namespace, lifetime="detached",
                get_if_exists=True, max_restarts=0, max_task_retries=0, num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray_node, soft=False),
            ).remote()
        return handle

    def _host_of(self, record: AttemptRecord, worker: int) -> Any:
        return self._host(record.engine["ray_nodes"][str(worker)])

    def _start(self, record: AttemptRecord, a: Any, master: Any, vendor: Vendor) -> Any:
        """Send worker `a`'s start to its node's host; the call (worker 0's result is the
        rendezvous, handed to the others' starts as `master`)."""
        spec = record.spec
        env = worker_environment(spec, a, master_addr="", master_port=0, deadline_file="",
                                 vendor=vendor)
        return self._host_of(record, a.worker).start.remote(
            self._place(record, a.worker), list(spec.argv()), env, spec.working_dir, master,
            spec.setup, spec.image)  # issue 13: setup by the runner; image: podman on the node

    def _reserve(self, record: AttemptRecord, vendors: Mapping[int, Vendor]) -> None:
        """Hold the attempt's GPUs in Ray's accounting: a placement group with a bundle per
        worker that has GPUs, pinned to its node (see the module docstring). Not waited for:
        corral already reserved the capacity; Ray commits the group while the workers start."""
        from ray.util.placement_group import placement_group

        bundles, selectors = [], []
        for a in sorted(record.spec.assignments, key=lambda a: a.worker):
            share = len(a.devices) if a.milli_per_device >= 1000 else a.milli_per_device / 1000
            num_gpus, custom = ray_request(vendors[a.worker], share if a.devices else 0)
            bundle = {k: float(v) for k, v in {"GPU": num_gpus, **custom}.items() if v}
            if bundle:
                bundles.append(bundle)
                selectors.append({NODE_ID_LABEL: record.engine["ray_nodes"][str(a.worker)]})
        if bundles:
            group = placement_group(bundles, strategy="PACK", lifetime="detached",
                                    bundle_label_selector=selectors)
            record.engine["placement_group"] = group.id.hex()
            AttemptRecords.save(record)

    def _unreserve(self, record: AttemptRecord) -> None:
        group_id = record.engine.get("placement_group")
        if not group_id:
            return
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        with contextlib.suppress(Exception):  # already gone (a release done twice)
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group_id))))

    # --- observing -----------------------------------------------------------------------------

    def _ask_everyone(self, alive: dict[str, bool]) -> None:
        """Send statuses() to the host of every alive node with a worker not ended, unless an
        earlier call to it is still unanswered (never pile calls up behind a slow host)."""
        by_node: dict[str, list[Key]] = {}
        for record in self._attempts.values():
            for a in record.spec.assignments:
                node = record.engine["ray_nodes"][str(a.worker)]
                if a.worker not in record.ends and alive.get(node, False):
                    by_node.setdefault(node, []).append((*record.key, a.worker))
        for node, keys in by_node.items():
            if node in self._asked:
                continue
            places = [self._place(self._attempts[k[:2]], k[2]) for k in keys]
            with contextlib.suppress(Exception):  # a host that cannot be asked: no answer
                self._asked[node] = (self._host(node).statuses.remote(places), keys)

    def _collect(self) -> dict[Key, Any]:
        """Answers that arrived within status_wait_s, per worker: a dict, None (its host never
        started it), or the exception Ray raised (the host is gone)."""
        if not self._asked:
            return {}
        ray = _ray()
        refs = [ref for ref, _ in self._asked.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.status_wait_s)
        ready_set = set(ready)
        answers: dict[Key, Any] = {}
        for node, (ref, keys) in list(self._asked.items()):
            if ref not in ready_set:
                continue
            del self._asked[node]
            try:
                answers.update(zip(keys, ray.get(ref), strict=True))
            except Exception as e:  # RayActorError and kin: the host is gone
                self._hosts.pop(node, None)  # the next use makes a new one
                answers.update((k, e) for k in keys)
        return answers

    def _observe(self, record: AttemptRecord, worker: int, alive: dict[str, bool],
                 answers: dict[Key, Any]) -> WorkerEnd:
        known = record.ends.get(worker)
        if known is not None:
            return known
        key = (*record.key, worker)
        node = record.engine["ray_nodes"][str(worker)]
        if not alive.get(node, False):
            self._asked.pop(node, None)
            return record.end(worker, exits.lost(
                base.NODE_LOST, f"Ray node {node[:12]} is dead (ray.nodes() Alive false)",
                time.time()))
        answer: Any = answers.get(key, self._last.get(key))
        if key in answers and not isinstance(answer, Exception):
            self._last[key] = answer
        end = self._interpret(record, worker, answer, answered=key in answers)
        if end.state.ended:
            self._last.pop(key, None)
            return record.end(worker, end)
        return self._enforce_deadline(record, worker, end)

    def _interpret(self, record: AttemptRecord, worker: int, answer: Any, *,
                   answered: bool) -> WorkerEnd:
        """answered: whether `answer` came from this poll (None then means the host has never
        started the worker), else it is the last one known."""
        stop = record.stop()
        if isinstance(answer, Exception):
            if stop is not None:
                return WorkerEnd(WorkerState.STOPPED, base.KILLED_AFTER_GRACE, None, time.time(),
                                 f"{stop.reason} (its host actor was killed)")
            return exits.lost(base.PROCESS_GONE, f"the worker's Ray host actor died: "
                              f"{type(answer).__name__}", time.time())
        if answer is None:
            if answered and time.time() - record.launched_at > 5:
                return exits.lost(base.PROCESS_GONE, "its node's host never started it (the "
                                  "start failed, or its records are gone)")
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
        with contextlib.suppress(Exception):
            self._host_of(record, worker).reap.remote(self._place(record, worker))
        started = end.state == WorkerState.RUNNING
        return record.end(worker, WorkerEnd(
            WorkerState.STOPPED, base.KILLED_AFTER_GRACE if started else base.STOPPED_BEFORE_START,
            -9 if started else None, time.time(), f"{stop.reason} (corral killed it after the "
            "deadline)"))

    def _collect_log_and_reap(self, record: AttemptRecord, worker: int) -> None:
        """The worker's log into the work dir and its node's records removed: one host call
        for a log under 16 MiB (`NodeHost.finish`)."""
        ray = _ray()
        path = record.log_path(worker)
        path.parent.mkdir(parents=True, exist_ok=True)
        place = self._place(record, worker)
        with contextlib.suppress(Exception), open(path, "ab") as out:
            offset, finished = 0, False
            while not finished:
                chunk, offset, finished = ray.get(
                    self._host_of(record, worker).finish.remote(place, offset, 16 << 20),
                    timeout=self.poll_timeout_s)
                out.write(chunk)

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
