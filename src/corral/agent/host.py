"""What a host declares when it joins: its GPUs (NVML where present, else amdsmi, else the
flags), CPU, RAM, where it is and what it costs. Flags always win over detection (a host may
offer fewer GPUs than it has). The vendor of its accelerators goes in its labels
(`corral.dev/vendor`: `--vendor`, else the library that found them); without either, the
server reads it from the model's name (`corral.core.vendors`). Whether `image:` can run here
goes in its labels too (`corral.dev/container-runtime`: `podman`, or `none`), found once at
start by the local backend's own probe (`corral.backends.containers.detect_runtime`)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.agent.protocol import HostFacts
from corral.backends.containers import ContainerRuntime
from corral.core.model import LABEL_CONTAINER_RUNTIME, LABEL_VENDOR, NO_CONTAINER_RUNTIME

__all__ = ["Declared", "container_label", "detect_address", "host_facts"]


@dataclass(frozen=True)
class Declared:
    """What the operator said on the command line (None: detect)."""

    gpus: int | None = None
    gpu_model: str | None = None
    gpu_memory_mib: int | None = None
    cpu_milli: int | None = None
    memory_mib: int | None = None
    provider: str = "agent"
    region: str = "default"
    zone: str = "default"
    rack: str = ""
    instance_type: str = ""
    instance_id: str = ""
    price_per_gpu_hour: float = 0.0
    capacity_kind: str = "owned"
    address: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    vendor: str | None = None  # nvidia, amd, intel, aws, google (None: detect or infer)


def detect_address() -> str:
    """The address other hosts reach this one at: the host name's, else the loopback."""
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def _machine() -> tuple[int, int]:
    cpu = (os.cpu_count() or 1) * 1000
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        memory = 0
    return cpu, memory


def container_label(runtime: ContainerRuntime | None) -> dict[str, str]:
    """The host's container runtime as its label: the program's name (`podman`; a wrapper
    taking podman's arguments, as tests use, is named for it), or `none`."""
    name = Path(runtime.program).name if runtime is not None else NO_CONTAINER_RUNTIME
    return {LABEL_CONTAINER_RUNTIME: name}


def host_facts(declared: Declared, *, gpus: Callable[[], list[Any]] | None = None,
               version: str = "", containers: ContainerRuntime | None = None) -> HostFacts:
    """The facts to join with. `gpus`: the NVML probe (`corral.backends.nvml.local_gpus`),
    asked only when the GPU count is not declared. `containers`: what runs `image:` here
    (`detect_runtime()`'s answer; None: nothing)."""
    found: list[Any] = []
    vendor = declared.vendor
    if declared.gpus is None:
        found, detected = _detect(gpus)
        vendor = vendor or detected
    count = declared.gpus if declared.gpus is not None else len(found)
    model = declared.gpu_model or (found[0].name if found else ("none" if count == 0
                                                               else "unknown"))
    memory = declared.gpu_memory_mib if declared.gpu_memory_mib is not None else min(
        (g.memory_mib for g in found), default=0)
    cpu, ram = _machine()
    return HostFacts(
        gpus=count, gpu_model=model, gpu_memory_mib=memory,
        cpu_milli=declared.cpu_milli if declared.cpu_milli is not None else cpu,
        memory_mib=declared.memory_mib if declared.memory_mib is not None else ram,
        provider=declared.provider, region=declared.region, zone=declared.zone,
        rack=declared.rack, instance_type=declared.instance_type,
        instance_id=declared.instance_id, price_per_gpu_hour=declared.price_per_gpu_hour,
        capacity_kind=declared.capacity_kind, address=declared.address or detect_address(),
        hostname=socket.gethostname(), labels={**declared.labels, **(
            {LABEL_VENDOR: vendor} if vendor else {}), **container_label(containers)},
        version=version)


def _detect(gpus: Callable[[], list[Any]] | None) -> tuple[list[Any], str | None]:
    """(GPUs, vendor) from `gpus` when given (tests), else NVML, else amdsmi."""
    if gpus is not None:
        return gpus(), None
    from corral.backends.nvml import local_gpus

    found = local_gpus()
    if found:
        return found, "nvidia"
    from corral.backends.amdsmi_probe import local_amd_gpus

    amd = local_amd_gpus()
    return amd, "amd" if amd else None
