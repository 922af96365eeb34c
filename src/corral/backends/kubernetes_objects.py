"""Kubernetes objects <-> corral values (pure): nodes as pool nodes, pods as worker ends, and the
pod corral creates for a worker.

Works on the official client's model objects (``kubernetes.client.V1Node``, ``V1Pod``), and
builds pods as plain dicts in the API's own JSON shape, which the client sends as is.

Node mapping: devices from ``status.capacity[<resource>]``, the resource of whichever vendor's
device plugin the node runs (``nvidia.com/gpu``, ``amd.com/gpu``, ``habana.ai/gaudi``,
``aws.amazon.com/neuroncore``, ``google.com/tpu``; that vendor becomes its ``corral.dev/vendor``);
the model from the label that vendor's feature discovery sets (NVIDIA's GFD
``nvidia.com/gpu.product``, AMD's node labeller ``amd.com/gpu.product-name``, GKE's
``cloud.google.com/gke-tpu-accelerator``), memory from ``nvidia.com/gpu.memory`` (MiB) or the
backend's model table; region and zone from ``topology.kubernetes.io/{region,zone}``; ``spec.unschedulable``
(kubectl cordon) is a cordon; a Ready condition that is not "True" makes the node UNHEALTHY.

Packaging: a spec's `image` is the pod's image (the backend's own image otherwise); its `setup`
runs before the command through a shell prologue (`with_setup`) that, when setup fails, exits
with setup's code and leaves the container's termination message, which `pod_end` reports as
SetupFailed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from corral.backends import base, exits
from corral.backends.accelerators import VENDORS, Vendor, kubernetes_vendor
from corral.backends.base import WorkerState
from corral.backends.exits import WorkerEnd
from corral.core.model import LABEL_VENDOR, CapacityKind, Health, Node

__all__ = [
    "ANNOTATION_DEADLINE",
    "ANNOTATION_WORKLOAD",
    "LABEL_ATTEMPT",
    "LABEL_MANAGED",
    "LABEL_WORKER",
    "LABEL_WORKLOAD",
    "node_ready",
    "node_resource",
    "parse_cpu_milli",
    "parse_memory_mib",
    "pod_end",
    "pod_name",
    "pod_volumes",
    "service_name",
    "to_node",
    "with_setup",
    "workload_label",
]

LABEL_MANAGED: Final = "app.kubernetes.io/managed-by"
LABEL_WORKLOAD: Final = "corral.io/workload"
LABEL_ATTEMPT: Final = "corral.io/attempt"
LABEL_WORKER: Final = "corral.io/worker"
ANNOTATION_WORKLOAD: Final = "corral.io/workload-id"  # exact id (labels are length-limited)
ANNOTATION_DEADLINE: Final = "corral.io/preempt-deadline"
_MEMORY_UNITS: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
                        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")
# Pod and container reasons that say the machine or the kubelet failed, not the program.
_LOST_REASONS: Final = ("NodeLost", "Evicted", "NodeAffinity", "OutOf", "UnexpectedAdmission",
                        "Terminated", "Shutdown")


def parse_cpu_milli(q: str | None) -> int:
    """``"8"`` -> 8000, ``"500m"`` -> 500."""
    if not q:
        return 0
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def parse_memory_mib(q: str | None) -> int:
    """``"32Gi"`` -> 32768, ``"1024Mi"`` -> 1024, ``"1000000"`` (bytes) -> 0."""
    m = _QUANTITY.match(q or "")
    if not m:
        return 0
    return int(float(m[1]) * _MEMORY_UNITS.get(m[2], 1) // 2**20)


def node_ready(node: Any) -> tuple[bool, str]:
    for cond in (node.status.conditions or []) if node.status else []:
        if cond.type == "Ready":
            return cond.status == "True", cond.reason or f"Ready={cond.status}"
    return False, "no Ready condition"


def node_resource(node: Any, gpu_resource: str | None = None) -> tuple[Vendor, str]:
    """(vendor, device-plugin resource) of a Kubernetes node: the one given, else the one its
    capacity offers (`corral.backends.accelerators.kubernetes_vendor`), NVIDIA's by default."""
    capacity: dict[str, str] = dict((node.status.capacity or {}) if node.status else {})
    if gpu_resource is not None:
        given = next((i.vendor for i in VENDORS.values()
                      if i.kubernetes_resource == gpu_resource), Vendor.NVIDIA)
        return given, gpu_resource
    vendor = kubernetes_vendor(capacity) or Vendor.NVIDIA
    return vendor, VENDORS[vendor].kubernetes_resource


def to_node(node: Any, *, provider: str = "kubernetes", gpu_resource: str | None = None,
            gpu_memory_mib: Mapping[str, int] | None = None) -> Node:
    """A pool node. gpu_resource: the device-plugin resource to count (None: whichever vendor's
    the node offers, `node_resource`); the node gets that vendor as `corral.dev/vendor`."""
    labels: dict[str, str] = dict(node.metadata.labels or {})
    capacity: dict[str, str] = dict((node.status.capacity or {}) if node.status else {})
    vendor, resource = node_resource(node, gpu_resource)
    gpus = int(capacity.get(resource, "0") or 0)
    model_label = VENDORS[vendor].kubernetes_model_label
    model = labels.get(model_label, "unknown" if gpus else "none") if model_label else (
        "unknown" if gpus else "none")
    memory = labels.get("nvidia.com/gpu.memory", "")
    if gpus:
        labels[LABEL_VENDOR] = str(vendor)
    ready, _ = node_ready(node)
    return Node(
        id=node.metadata.name, provider=provider, gpu_model=model, gpu_count=gpus,
        gpu_memory_mib=int(memory) if memory.isdigit() else (gpu_memory_mib or {}).get(model, 0),
        cpu_milli=parse_cpu_milli(capacity.get("cpu")),
        memory_mib=parse_memory_mib(capacity.get("memory")), capacity_kind=CapacityKind.OWNED,
        region=labels.get("topology.kubernetes.io/region", "default"),
        zone=labels.get("topology.kubernetes.io/zone", "default"),
        cordoned=bool(node.spec and node.spec.unschedulable),
        health=Health.HEALTHY if ready else Health.UNHEALTHY,
        labels=tuple(sorted(labels.items())))


def pod_name(workload_id: str, attempt: int, worker: int) -> str:
    """A DNS-1123 name: ``corral-<workload>-<attempt>-<worker>``, lower case, <= 63 chars; a
    long or odd id is cut and suffixed with a hash so that names stay distinct."""
    tail = f"-{attempt}-{worker}"
    clean = re.sub(r"[^a-z0-9-]", "-", workload_id.lower()).strip("-")
    name = f"corral-{clean}"
    if len(name) + len(tail) > 63 or clean != workload_id:
        digest = hashlib.sha256(workload_id.encode()).hexdigest()[:8]
        name = f"{name[:63 - len(tail) - 9].rstrip('-')}-{digest}"
    return f"{name}{tail}"


def service_name(workload_id: str, attempt: int) -> str:
    """The headless Service that gives worker 0 of an attempt a DNS name for the rendezvous."""
    return pod_name(workload_id, attempt, 0)[:-len("-0")] + "-rdzv"


def workload_label(workload_id: str) -> str:
    """A label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric at both ends) for the id."""
    if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", workload_id):
        return workload_id
    return pod_name(workload_id, 0, 0)[len("corral-"):-len("-0-0")]


def _exit_code(code: int | None) -> int | None:
    """A container's exit code as corral's convention: 128+n (a signal) becomes -n."""
    if code is not None and 128 < code < 160:
        return -(code - 128)
    return code


def pod_end(pod: Any, *, stop_reason: str = "", node_lost: bool = False) -> WorkerEnd:
    """Where the worker in `pod` stands. `node_lost`: its node is NotReady or gone."""
    phase = (pod.status.phase if pod.status else None) or "Pending"
    terminated = _terminated(pod)
    reason = (pod.status.reason if pod.status else None) or ""
    if phase in ("Succeeded", "Failed"):
        code = _exit_code(terminated.exit_code if terminated else None)
        finished = terminated.finished_at.timestamp() if terminated and terminated.finished_at \
            else None
        if stop_reason:
            killed = code == -9
            return WorkerEnd(WorkerState.STOPPED, base.KILLED_AFTER_GRACE if killed else
                             base.STOPPED_IN_TIME, code, finished, stop_reason)
        if phase == "Succeeded":
            return WorkerEnd(WorkerState.SUCCEEDED, base.EXITED, 0, finished)
        if reason.startswith(_LOST_REASONS) or terminated is None:
            return exits.lost(base.NODE_LOST if reason == "NodeLost" else base.PROCESS_GONE,
                              f"pod failed: {reason or 'no container status'} "
                              f"{pod.status.message or ''}".strip(), finished)
        why = terminated.reason or ""
        said = getattr(terminated, "message", None) or ""
        if said.startswith(SETUP_MESSAGE):
            return WorkerEnd(WorkerState.FAILED, base.SETUP_FAILED, code, finished, said.strip())
        signalled = code is not None and code < 0
        return WorkerEnd(WorkerState.FAILED, base.KILLED_BY_SIGNAL if signalled else base.EXITED,
                         code, finished, why if why not in ("Error", "Completed") else "")
    if node_lost:
        return exits.lost(base.NODE_LOST, f"node {pod.spec.node_name} is not Ready")
    if phase == "Running":
        return WorkerEnd(WorkerState.RUNNING, base.RUNNING)
    return WorkerEnd(WorkerState.STARTING, base.STARTING)


def pod_volumes(volumes: Any, shm_mib: int | None) -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts for a spec's `volumes` (a node's
    directory as hostPath, a claim as persistentVolumeClaim, read-only where asked) and its
    `shm_size` (/dev/shm as a memory-backed emptyDir of that size: the runtime's default is
    64 MiB, too small for PyTorch's data loader workers)."""
    pod: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for v in volumes:
        name = f"vol-{v['name']}"
        source = ({"hostPath": {"path": v["host_path"], "type": "Directory"}}
                  if v.get("host_path") else
                  {"persistentVolumeClaim": {"claimName": v["claim"],
                                             "readOnly": bool(v.get("read_only"))}})
        pod.append({"name": name, **source})
        mounts.append({"name": name, "mountPath": v["mount"],
                       "readOnly": bool(v.get("read_only"))})
    if shm_mib is not None:
        pod.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mib}Mi"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return pod, mounts


SETUP_ENV: Final = "CORRAL_SETUP"  # the setup lines, handed to the prologue in the environment
SETUP_MESSAGE: Final = "corral: setup exited"
# setup in a shell of its own (as the local runner runs it), then the command in its place; the
# termination message is what the kubelet keeps of a container's end besides its code
_PROLOGUE: Final = (f'/bin/sh -c "${SETUP_ENV}" || {{ rc=$?; echo "{SETUP_MESSAGE} $rc; the '
                    'command was not started" | tee /dev/termination-log >&2; exit "$rc"; }\n'
                    'exec "$@"')


def with_setup(argv: tuple[str, ...], setup: str | None) -> tuple[list[str], dict[str, str]]:
    """The container's command, and the variables it needs, for `argv` after `setup`."""
    if setup is None:
        return list(argv), {}
    return ["/bin/sh", "-c", _PROLOGUE, "corral-setup", *argv], {SETUP_ENV: setup}


def _terminated(pod: Any) -> Any:
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        if cs.state and cs.state.terminated:
            return cs.state.terminated
    return None
