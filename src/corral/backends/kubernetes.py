"""The Kubernetes backend: each worker of a gang is a pod bound to its planned node.

    control plane                                   API server / kubelet
    launch  ── create pod per worker ─────────────> spec.nodeName = planned node (bound by
                (labels + annotations: corral ids)   corral, not by kube-scheduler), restartPolicy
                                                     Never, GPUs as the device plugin's resource
    poll    ── list pods (label selector) ────────> phase, container exit code
            ── list nodes ────────────────────────> Ready? (NotReady -> workers LOST, NodeLost)
    poll_changes ── one list, then a watch of pods and of nodes (kubernetes_watch.Informer):
                    each step observes only the attempts whose pods or nodes changed, those
                    being stopped (their kill deadline) and those just launched
    stop    ── patch annotation (deadline) ───────> the downward-API file CORRAL_PREEMPT_DEADLINE_FILE
            ── delete pod, gracePeriodSeconds ────> kubelet: SIGTERM, SIGKILL after the grace

Binding: setting ``spec.nodeName`` skips kube-scheduler, the way gang schedulers that decide
placement themselves bind pods (Volcano, KAI-Scheduler bind through the binding API after their
own decision). The kubelet still admits the pod: a node without the free GPUs rejects it
(reported LOST, "OutOf..."), never runs it twice.

Identity: pod ``corral-<workload>-<attempt>-<worker>``, labels ``app.kubernetes.io/managed-by=
corral``, ``corral.io/workload``, ``corral.io/attempt``, ``corral.io/worker``, annotations with
the exact workload id, queue and planned devices. Records on the control plane's disk
(`corral.backends.records`) make launch idempotent and keep ends after pods are deleted.

GPUs: the device plugin chooses the devices and exposes them inside the container numbered from
0, so CUDA_VISIBLE_DEVICES is ``0..n-1`` (the container's view); the plan's indices are in the
annotation ``corral.io/devices``. On another vendor's node the pod asks for that vendor's
resource (``amd.com/gpu``, ``habana.ai/gaudi``, ``aws.amazon.com/neuroncore``,
``google.com/tpu``) and gets that vendor's variables (ROCR_VISIBLE_DEVICES and so on), never
CUDA_VISIBLE_DEVICES; ``gpu_resource`` pins one resource for every node instead. A share of a GPU asks for `shared_gpu_resource` (a time-sliced
or MPS device plugin's resource, `shares_per_gpu` of them per GPU) when configured, else a whole
GPU (said in the pod's ``corral.io/note`` annotation).

The preemption contract, as far as Kubernetes allows: the deadline is written first, as a pod
annotation exposed through a downward-API volume at CORRAL_PREEMPT_DEADLINE_FILE (the file
exists but is empty until a stop); then the pod is deleted with gracePeriodSeconds = the grace,
so the kubelet sends SIGTERM and SIGKILLs at the deadline. The kubelet refreshes downward-API
files on its own sync period (up to about a minute), so the file may fill in after SIGTERM came:
a worker that finds it empty should assume the grace it was submitted with.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from corral.backends import base, exits
from corral.backends.accelerators import Vendor, device_env
from corral.backends.base import (
    Backend,
    InventorySource,
    LaunchSpec,
    LogSource,
    WorkerState,
    WorkerStatus,
)
from corral.backends.changes import ChangeFeed, Delta
from corral.backends.environment import (
    format_deadline,
    worker_environment,
)
from corral.backends.errors import (
    BackendError,
    BackendUnavailable,
    InvalidLaunchSpec,
    InvalidRequest,
    LaunchError,
    UnknownAttempt,
)
from corral.backends.exits import WorkerEnd
from corral.backends.kubernetes_objects import (
    ANNOTATION_DEADLINE,
    ANNOTATION_WORKLOAD,
    LABEL_ATTEMPT,
    LABEL_MANAGED,
    LABEL_WORKER,
    LABEL_WORKLOAD,
    node_ready,
    node_resource,
    pod_end,
    pod_name,
    pod_volumes,
    service_name,
    to_node,
    with_setup,
    workload_label,
)
from corral.backends.kubernetes_watch import Informer
from corral.backends.records import (
    AttemptRecord,
    AttemptRecords,
    ended_attempt,
    statuses,
    to_stop,
)
from corral.core.model import Node

__all__ = ["DEADLINE_MOUNT", "KubernetesBackend"]

Key = tuple[str, int]

DEADLINE_MOUNT: Final = "/etc/corral"
RENDEZVOUS_PORT: Final = 29500  # each pod has its own IP: a fixed port cannot clash
DEADLINE_NAME: Final = "preempt-deadline"
MANAGED: Final = "corral"


def _client() -> Any:
    try:
        from kubernetes import client
    except ImportError as e:  # an optional extra
        raise BackendUnavailable("the Kubernetes backend needs the kubernetes package: "
                                 "pip install 'corral[k8s]'") from e
    return client


def default_api_client() -> Any:
    """An ApiClient from the in-cluster service account, else from KUBECONFIG/~/.kube/config."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as e:
            raise BackendUnavailable(f"no Kubernetes configuration: {e}; set KUBECONFIG or run "
                                     "in a cluster") from e
    return _client().ApiClient()


class KubernetesBackend(Backend, InventorySource, LogSource):
    """Runs workers as pods bound to their planned nodes. See the module docstring.

    api_client: a ``kubernetes.client.ApiClient`` (None: in-cluster config, else kubeconfig).
    image: the container image workers run in (corral does not build images).
    """

    name = "kubernetes"

    def __init__(
        self, work_dir: str | os.PathLike[str], *, image: str, namespace: str = "corral",
        api_client: Any = None, provider: str = "kubernetes",
        gpu_resource: str | None = None, shared_gpu_resource: str | None = None,
        shares_per_gpu: int = 0, gpu_memory_mib: Mapping[str, int] | None = None,
        kill_slack_s: float = 30.0, request_timeout_s: float = 30.0, watch: bool = True,
    ) -> None:
        if not image:
            raise InvalidRequest("image", "the Kubernetes backend needs a container image")
        client = _client()
        self.api = client.CoreV1Api(api_client or default_api_client())
        self.image, self.namespace, self.provider = image, namespace, provider
        self.gpu_resource, self.shared_gpu_resource = gpu_resource, shared_gpu_resource
        self.shares_per_gpu = shares_per_gpu
        self.gpu_memory_mib = dict(gpu_memory_mib or {})
        self.kill_slack_s, self.request_timeout_s = kill_slack_s, request_timeout_s
        self.records = AttemptRecords(Path(work_dir))
        self._attempts = {r.key: r for r in self.records.scan()}
        # poll_changes: the watches (started on first use), the last report to diff against,
        # and what happened here since the last call that the watches do not show
        self._watch = watch
        self._pods: Informer | None = None
        self._nodes: Informer | None = None
        self._changes = ChangeFeed()
        self._pod_of: dict[str, tuple[Key, int]] = {}  # pod name -> (attempt, worker)
        for record in self._attempts.values():
            self._index(record)
        self._fresh: set[Key] = set()  # launched since the last call
        self._stopping: set[Key] = set()  # their kill deadline: looked at every call
        self._released: list[Key] = []

    # --- Backend -------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> None:
        AttemptRecords.check_id(spec, "Kubernetes")
        if self.records.existing(spec) is not None:
            return
        nodes = {n.metadata.name: n for n in self._call("list nodes", self.api.list_node).items}
        self._check_placement(spec, nodes)
        names = {str(a.worker): pod_name(spec.workload_id, spec.attempt, a.worker)
                 for a in spec.assignments}
        record = self.records.create(spec, {"pods": names, "namespace": self.namespace,
                                            "service": service_name(spec.workload_id,
                                                                    spec.attempt)})
        self._attempts[record.key] = record
        self._index(record)
        self._fresh.add(record.key)
        created: list[str] = []
        try:
            self._call("create the rendezvous service", self.api.create_namespaced_service,
                       self.namespace, self._service(record))
            for a in sorted(spec.assignments, key=lambda a: a.worker):
                body = self._pod(record, a, nodes[a.node_id])
                pod = self._call("create a pod", self.api.create_namespaced_pod, self.namespace,
                                 body)
                created.append(names[str(a.worker)])
                if self._pods is not None and pod is not None:
                    self._pods.put(pod)  # seen now, not when its watch event comes
        except BackendError as e:
            for name in created:
                self._delete(name, 0)
            self._delete_service(record)
            record.end_launch_failed(e)
            raise LaunchError(f"{spec.workload_id} attempt {spec.attempt}: the API server "
                              f"refused a worker: {e}; the created pods were deleted; relaunch "
                              "with a new attempt") from e

    def stop(self, workload_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        record = to_stop(self._attempts, workload_id, attempt, grace_seconds)
        if record is None:
            return
        stop = record.request_stop(grace_seconds, reason)
        if stop is None:
            return
        self._stopping.add(record.key)
        patch = {"metadata": {"annotations": {ANNOTATION_DEADLINE: format_deadline(
            stop.deadline).strip()}}}
        for a in record.spec.assignments:
            if a.worker in record.ends:
                continue
            name = record.engine["pods"][str(a.worker)]
            # Deadline first (the annotation behind the downward-API file), signal second.
            self._call("annotate a pod", self.api.patch_namespaced_pod, name, self.namespace,
                       patch, missing_ok=True)
            self._delete(name, math.ceil(max(0.0, stop.deadline - time.time())))

    def poll(self, now: float) -> list[WorkerStatus]:
        if not self._attempts:
            return []
        pods = {p.metadata.name: p for p in self._call(
            "list pods", self.api.list_namespaced_pod, self.namespace,
            label_selector=f"{LABEL_MANAGED}={MANAGED}").items}
        ready = {n.metadata.name: node_ready(n)[0]
                 for n in self._call("list nodes", self.api.list_node).items}
        return statuses(self._attempts, now,
                        lambda record, a: self._observe(record, a.worker, a.node_id, pods, ready))

    def release(self, workload_id: str, attempt: int) -> None:
        record = ended_attempt(self._attempts, workload_id, attempt, self.poll)
        if record is None:
            return
        for a in record.spec.assignments:
            self._collect_log(record, a.worker)
            self._delete(record.engine["pods"][str(a.worker)], 0)
        self._delete_service(record)
        AttemptRecords.mark_released(record)
        del self._attempts[record.key]
        for name in record.engine["pods"].values():
            self._pod_of.pop(name, None)
        self._stopping.discard(record.key)
        self._fresh.discard(record.key)
        self._released.append(record.key)

    def poll_changes(self, now: float) -> Delta:
        """`poll`, as only what changed since the last call (`corral.backends.changes`), read
        from watches of pods and nodes instead of a list each step: the attempts whose pods or
        nodes had events, those being stopped and those just launched, and the attempts
        released since. The first call, a call after the watch had to list again, and every
        call while a watch is broken (then `poll` lists) report everything."""
        if not self._watch:
            return self._changes.delta(self.poll(now))
        pods_w, nodes_w = self._watches()
        pods, nodes = pods_w.objects(), nodes_w.objects()
        changed_pods, changed_nodes = pods_w.take_changed(), nodes_w.take_changed()
        gone, self._released = self._released, []
        if pods is None or nodes is None:
            return self._changes.delta(self.poll(now))  # a watch is broken: list for now
        ready = {name: node_ready(n)[0] for name, n in nodes.items()}
        everything = (changed_pods is None or changed_nodes is None
                      or not self._changes.started)
        if everything:
            keys = set(self._attempts)
        else:
            assert changed_pods is not None and changed_nodes is not None
            keys = ({self._pod_of[n][0] for n in changed_pods if n in self._pod_of}
                    | self._fresh | self._stopping | self._on_nodes(changed_nodes))
        self._fresh = set()
        report = self._observe_some(sorted(k for k in keys if k in self._attempts), now, pods,
                                    ready)
        if everything:
            return self._changes.delta(report)
        return self._changes.partial(report, gone)

    def close(self) -> None:
        """Stop the watches (they are daemon threads: a process that exits needs no call)."""
        for informer in (self._pods, self._nodes):
            if informer is not None:
                informer.close()

    # --- capabilities --------------------------------------------------------------------------

    def inventory(self) -> list[Node]:
        return [to_node(n, provider=self.provider, gpu_resource=self.gpu_resource,
                        gpu_memory_mib=self.gpu_memory_mib)
                for n in self._call("list nodes", self.api.list_node).items]

    def read_logs(
        self, workload_id: str, worker: int, offset: int = 0, *,
        attempt: int | None = None, max_bytes: int = 65536,
    ) -> tuple[bytes, int]:
        """The pod's log from `offset` (the API has no byte offsets: the whole log is read and
        cut); the collected copy once the attempt was released."""
        if offset < 0 or max_bytes <= 0:
            raise InvalidRequest("offset", "offset must be >= 0 and max_bytes > 0")
        record = self.records.find(workload_id, attempt)
        if str(worker) not in record.engine["pods"]:
            raise UnknownAttempt(f"{workload_id} attempt {record.spec.attempt} has no worker "
                                 f"{worker}")
        collected = record.log_path(worker)
        if collected.exists():
            data = collected.read_bytes()
        else:
            data = self._pod_log(record.engine["pods"][str(worker)])
        chunk = data[offset:offset + max_bytes]
        return chunk, offset + len(chunk)

    # --- launching -----------------------------------------------------------------------------

    def _check_placement(self, spec: LaunchSpec, nodes: dict[str, Any]) -> None:
        for a in spec.assignments:
            node = nodes.get(a.node_id)
            if node is None:
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id!r} "
                                        f"is not in the cluster ({sorted(nodes)})")
            gpus = to_node(node, gpu_resource=self.gpu_resource).gpu_count
            if a.devices and a.milli_per_device < 1000 and self.shared_gpu_resource and (
                    node_resource(node, self.gpu_resource)[0] != Vendor.NVIDIA):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} "
                                        f"is not NVIDIA's; {self.shared_gpu_resource} shares "
                                        "NVIDIA GPUs only")
            if any(d >= gpus for d in a.devices):
                raise InvalidLaunchSpec("assignments", f"worker {a.worker}: node {a.node_id} "
                                        f"has {gpus} GPUs, the plan gives {list(a.devices)}")

    def _gpu_request(self, a: Any, resource: str) -> tuple[dict[str, str], str]:
        """The pod's limits for worker `a` on a node whose devices are `resource`."""
        if not a.devices:
            return {}, ""
        if a.milli_per_device >= 1000:
            return {resource: str(len(a.devices))}, ""
        if self.shared_gpu_resource and self.shares_per_gpu > 0:
            k = math.ceil(a.milli_per_device * self.shares_per_gpu / 1000)
            return {self.shared_gpu_resource: str(k)}, ""
        return {resource: "1"}, (f"no shared GPU resource configured: a whole device "
                                 f"for {a.milli_per_device} milli")

    def _service(self, record: AttemptRecord) -> dict[str, Any]:
        """Headless: its DNS name resolves to worker 0's pod IP (as Kubeflow's training
        operator gives each gang a rendezvous name)."""
        spec = record.spec
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": record.engine["service"],
                             "labels": self._labels(spec, 0)},
                "spec": {"clusterIP": "None", "selector": self._labels(spec, 0),
                         "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}}

    def _pod(self, record: AttemptRecord, a: Any, node: Any) -> dict[str, Any]:
        spec = record.spec
        deadline_file = f"{DEADLINE_MOUNT}/{DEADLINE_NAME}"
        master = f"{record.engine['service']}.{self.namespace}.svc"
        vendor, resource = node_resource(node, self.gpu_resource)
        env = worker_environment(spec, a, master_addr=master, master_port=RENDEZVOUS_PORT,
                                 deadline_file=deadline_file, vendor=vendor)
        # the device plugin numbers the container's devices from 0: its view, in the vendor's
        # variables (the plan's node indices stay in the corral.io/devices annotation)
        env.update(device_env(vendor, range(len(a.devices))))
        command, setup_env = with_setup(spec.argv(), spec.setup)  # issue 13: setup, then command
        volumes, mounts = pod_volumes(spec.volumes, spec.shm_mib)  # issue 13: volumes, /dev/shm
        env.update(setup_env)
        limits, note = self._gpu_request(a, resource)
        annotations = {ANNOTATION_WORKLOAD: spec.workload_id, "corral.io/queue": spec.queue,
                       "corral.io/devices": ",".join(map(str, a.devices))}
        if note:
            annotations["corral.io/note"] = note
        container: dict[str, Any] = {
            "name": "worker", "image": spec.image or self.image,  # the spec's image first
            "command": command,
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
            "volumeMounts": [{"name": "corral", "mountPath": DEADLINE_MOUNT, "readOnly": True},
                             *mounts],
        }
        if limits:
            container["resources"] = {"limits": limits}
        if spec.working_dir:
            container["workingDir"] = spec.working_dir
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": record.engine["pods"][str(a.worker)], "annotations": annotations,
                         "labels": self._labels(spec, a.worker)},
            "spec": {"nodeName": a.node_id, "restartPolicy": "Never", "containers": [container],
                     "volumes": [{"name": "corral", "downwardAPI": {"items": [{
                         "path": DEADLINE_NAME, "fieldRef": {
                             "fieldPath": f"metadata.annotations['{ANNOTATION_DEADLINE}']"}}]}},
                         *volumes]},
        }

    @staticmethod
    def _labels(spec: LaunchSpec, worker: int) -> dict[str, str]:
        return {LABEL_MANAGED: MANAGED, LABEL_WORKLOAD: workload_label(spec.workload_id),
                LABEL_ATTEMPT: str(spec.attempt), LABEL_WORKER: str(worker)}

    # --- observing -----------------------------------------------------------------------------

    def _watches(self) -> tuple[Informer, Informer]:
        if self._pods is None or self._nodes is None:
            self._pods = Informer(self.api.list_namespaced_pod, self.namespace,
                                  label_selector=f"{LABEL_MANAGED}={MANAGED}",
                                  request_timeout_s=self.request_timeout_s, what="pods").start()
            self._nodes = Informer(self.api.list_node, request_timeout_s=self.request_timeout_s,
                                   what="nodes").start()
        return self._pods, self._nodes

    def _index(self, record: AttemptRecord) -> None:
        for worker, name in record.engine["pods"].items():
            self._pod_of[name] = (record.key, int(worker))

    def _on_nodes(self, names: set[str]) -> set[Key]:
        """The attempts with a worker on one of these nodes (nodes change rarely: a scan)."""
        if not names:
            return set()
        return {key for key, record in self._attempts.items()
                if any(a.node_id in names for a in record.spec.assignments)}

    def _observe_some(self, keys: list[Key], now: float, pods: dict[str, Any],
                      ready: dict[str, bool]) -> list[WorkerStatus]:
        """The workers of these attempts, from the watched pods. A pod missing from the watch
        is read once directly before it counts as gone: the watch may not have shown it yet."""
        out: list[WorkerStatus] = []
        for key in keys:
            record = self._attempts[key]
            for a in sorted(record.spec.assignments, key=lambda a: a.worker):
                name = record.engine["pods"][str(a.worker)]
                if name not in pods and a.worker not in record.ends:
                    pod = self._call("read a pod", self.api.read_namespaced_pod, name,
                                     self.namespace, missing_ok=True)
                    if pod is not None:
                        pods[name] = pod
                end = self._observe(record, a.worker, a.node_id, pods, ready)
                out.append(end.status(key[0], key[1], a.worker, a.node_id, now))
        return out

    def _observe(self, record: AttemptRecord, worker: int, node_id: str, pods: dict[str, Any],
                 ready: dict[str, bool]) -> WorkerEnd:
        known = record.ends.get(worker)
        if known is not None:
            return known
        name = record.engine["pods"][str(worker)]
        pod = pods.get(name)
        stop = record.stop()
        if pod is None:
            end = (WorkerEnd(WorkerState.STOPPED, base.STOPPED_IN_TIME, None, time.time(),
                             f"{stop.reason} (pod deleted)") if stop is not None else
                   exits.lost(base.PROCESS_GONE, f"pod {name} no longer exists", time.time()))
            return record.end(worker, end)
        end = pod_end(pod, stop_reason=stop.reason if stop else "",
                      node_lost=not ready.get(node_id, False))
        if end.state.ended:
            if end.reason == base.NODE_LOST:
                self._delete(name, 0)  # fence: force the API object away
            return record.end(worker, end)
        if stop is not None and time.time() >= stop.deadline + self.kill_slack_s:
            self._delete(name, 0)
        return end

    def _collect_log(self, record: AttemptRecord, worker: int) -> None:
        path = record.log_path(worker)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self._pod_log(record.engine["pods"][str(worker)]))

    def _pod_log(self, name: str) -> bytes:
        try:
            text = self._call("read a log", self.api.read_namespaced_pod_log, name,
                              self.namespace, container="worker", missing_ok=True)
        except BackendError:
            return b""
        return (text or "").encode()

    def _delete_service(self, record: AttemptRecord) -> None:
        # An orphaned headless Service holds no resources: a failure here is only logged.
        with contextlib.suppress(BackendError):
            self._call("delete the rendezvous service", self.api.delete_namespaced_service,
                       record.engine["service"], self.namespace, missing_ok=True)

    def _delete(self, name: str, grace_seconds: int) -> None:
        self._call("delete a pod", self.api.delete_namespaced_pod, name, self.namespace,
                   grace_period_seconds=grace_seconds, missing_ok=True)

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any
              ) -> Any:
        """One API call; 404 is None when `missing_ok`; other errors become backend errors."""
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, _request_timeout=self.request_timeout_s, **kwargs)
        except ApiException as e:
            if e.status == 404 and missing_ok:
                return None
            if e.status in (0, 429, 500, 502, 503, 504):
                raise BackendUnavailable(f"cannot {what}: API server said {e.status} "
                                         f"{e.reason}") from e
            raise BackendError(f"cannot {what}: {e.status} {e.reason}: {_message(e)}") from e
        except OSError as e:
            raise BackendUnavailable(f"cannot {what}: {e}") from e


def _message(e: Any) -> str:
    import json

    try:
        return str(json.loads(e.body).get("message", ""))
    except (TypeError, ValueError, AttributeError):
        return str(e.body or "")
