"""Ray's node table as corral's pool: one provider, one corral node per Ray node. Pure.

A Ray node becomes a `Node` with:

- id: the node label ``corral.io/node-id`` when the operator set one (``ray start --labels``),
  else ``<prefix><first 12 hex digits of the Ray node id>``. Ray node ids are random per raylet
  start, so a restarted machine is a new node; that is what it is to the scheduler too.
- GPUs: the ``GPU`` resource; the model from the ``accelerator_type:<model>`` resource;
  memory per GPU from the label ``corral.io/gpu-memory-mib``, else from the table below (Ray
  does not report GPU memory), else 0 (then only whole GPUs and milli shares can be asked).
- CPU and RAM: the ``CPU`` and ``memory`` resources.
- topology: labels ``corral.io/region``, ``corral.io/zone``, ``corral.io/rack``,
  ``corral.io/nvlink-domain`` when set.
- health: UNHEALTHY for a node Ray reports dead (Alive false), else HEALTHY; GPU health comes
  from a probe, not from Ray (see `corral.control.health`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from corral.backends.accelerators import ray_devices
from corral.core.model import LABEL_VENDOR, CapacityKind, Health, Node

__all__ = ["GPU_MEMORY_MIB", "NODE_ID_LABEL", "RayNode", "ray_inventory", "read_ray_nodes",
           "view_ray_nodes"]

NODE_ID_LABEL: Final = "corral.io/node-id"
# Ray's accelerator type names (ray.util.accelerators) -> MiB per device.
GPU_MEMORY_MIB: Final = {
    "H100": 81559, "H200": 143771, "A100-80G": 81920, "A100-40G": 40960, "A100": 40960,
    "L4": 23034, "A10G": 23028, "T4": 15360, "V100": 16384, "L40S": 46068,
}
_ACCELERATOR = "accelerator_type:"


@dataclass(frozen=True, slots=True)
class RayNode:
    ray_id: str
    alive: bool
    gpus: int
    node: Node


def read_ray_nodes(ray: Any) -> list[dict[str, Any]]:
    """``ray.nodes()``: a list of dicts with NodeID, Alive, Resources, Labels..."""
    nodes: list[dict[str, Any]] = ray.nodes()
    return nodes


def view_ray_nodes(
    raw: list[dict[str, Any]], *, provider: str = "ray", prefix: str = "ray-",
    gpu_memory_mib: Mapping[str, int] | None = None,
) -> list[RayNode]:
    """Every node of Ray's table, alive or dead, sorted by corral id. A node id seen twice
    (Ray keeps dead entries) keeps its alive entry."""
    memory_table = {**GPU_MEMORY_MIB, **(gpu_memory_mib or {})}
    by_id: dict[str, RayNode] = {}
    for entry in raw:
        node = _one(entry, provider, prefix, memory_table)
        if node.node.id not in by_id or node.alive:
            by_id[node.node.id] = node
    return [by_id[k] for k in sorted(by_id)]


def ray_inventory(raw: list[dict[str, Any]], **kwargs: Any) -> list[Node]:
    return [n.node for n in view_ray_nodes(raw, **kwargs)]


def _one(entry: dict[str, Any], provider: str, prefix: str,
         memory_table: Mapping[str, int]) -> RayNode:
    resources: dict[str, float] = entry.get("Resources") or {}
    labels: dict[str, str] = {str(k): str(v) for k, v in (entry.get("Labels") or {}).items()}
    ray_id = str(entry["NodeID"])
    alive = bool(entry.get("Alive"))
    vendor, gpus = ray_devices(resources)  # Ray's GPU, or Neuron cores, TPUs, HPUs (issue 17)
    if vendor is not None:
        labels[LABEL_VENDOR] = str(vendor)
    models = sorted(k[len(_ACCELERATOR):] for k in resources if k.startswith(_ACCELERATOR))
    model = models[0] if models else ("none" if gpus == 0 else "unknown")
    memory = labels.get("corral.io/gpu-memory-mib")
    node = Node(
        id=labels.get(NODE_ID_LABEL) or f"{prefix}{ray_id[:12]}", provider=provider,
        gpu_model=model, gpu_count=gpus,
        gpu_memory_mib=int(memory) if memory and memory.isdigit() else memory_table.get(model, 0),
        cpu_milli=int(resources.get("CPU", 0) * 1000),
        memory_mib=int(resources.get("memory", 0)) // 2**20,
        capacity_kind=CapacityKind.OWNED,
        region=labels.get("corral.io/region", "default"),
        zone=labels.get("corral.io/zone", "default"),
        rack=labels.get("corral.io/rack", ""),
        nvlink_domain=labels.get("corral.io/nvlink-domain", ""),
        health=Health.HEALTHY if alive else Health.UNHEALTHY,
        labels=tuple(sorted({**labels, "ray.io/node-id": ray_id,
                             "ray.io/address": str(entry.get("NodeManagerAddress", ""))}.items())),
    )
    return RayNode(ray_id, alive, gpus, node)
