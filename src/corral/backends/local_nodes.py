"""Which nodes the local backend offers: this machine as NVML sees it (one node, its GPUs), or
a declared virtual inventory on a machine without GPUs (`virtual_nodes`), sharing out this
machine's CPU and memory."""

from __future__ import annotations

import os
import socket

from corral.core.model import CapacityKind, Node

__all__ = ["detect_node", "machine_size", "virtual_nodes"]


def virtual_nodes(
    count: int = 2, gpus_per_node: int = 4, *, gpu_model: str = "virtual-gpu",
    gpu_memory_mib: int = 81920, prefix: str = "local", cpu_milli: int | None = None,
    memory_mib: int | None = None,
) -> list[Node]:
    """A declared inventory for a machine without GPUs: `count` nodes named prefix-0, prefix-1...

    cpu_milli, memory_mib: per node; None shares this machine's out evenly.
    """
    machine_cpu, machine_memory = machine_size()
    cpu = machine_cpu // count if cpu_milli is None else cpu_milli
    memory = machine_memory // count if memory_mib is None else memory_mib
    return [
        Node(id=f"{prefix}-{i}", provider="local", gpu_model=gpu_model, gpu_count=gpus_per_node,
             gpu_memory_mib=gpu_memory_mib, cpu_milli=cpu, memory_mib=memory,
             capacity_kind=CapacityKind.OWNED)
        for i in range(count)
    ]




def machine_size() -> tuple[int, int]:
    cpu_milli = (os.cpu_count() or 1) * 1000
    try:
        memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        memory_mib = 0
    return cpu_milli, memory_mib


def detect_node(node_id: str | None) -> Node:
    from corral.backends.nvml import local_gpus

    cpu_milli, memory_mib = machine_size()
    gpus = local_gpus()
    return Node(
        id=node_id or socket.gethostname(), provider="local",
        gpu_model=gpus[0].name if gpus else "none", gpu_count=len(gpus),
        gpu_memory_mib=min((g.memory_mib for g in gpus), default=0), cpu_milli=cpu_milli,
        memory_mib=memory_mib, capacity_kind=CapacityKind.OWNED)
