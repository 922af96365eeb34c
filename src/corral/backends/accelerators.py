"""Accelerators beyond NVIDIA: who makes a device, what kind it is, and how each engine names it.

One row per vendor (`VENDORS`): the kind of device, the environment variables its runtime reads
to see only the devices a worker was given, and the resource name on each engine. Pure data and
pure functions: nothing here touches hardware (discovery and health through each vendor's library
live beside `nvml.py`; only `nvml.py` exists today).

Device hand-out, from each runtime's own documentation:

- NVIDIA GPU: `CUDA_VISIBLE_DEVICES` (CUDA runtime), indices in PCI bus order
  (`CUDA_DEVICE_ORDER=PCI_BUS_ID`, see `environment.py`).
- AMD GPU: `ROCR_VISIBLE_DEVICES`, read by the ROCm runtime and so by every user-mode ROCm
  application, recommended on Linux; `HIP_VISIBLE_DEVICES` for HIP applications (ROCm docs,
  "GPU isolation techniques", rocm.docs.amd.com/en/latest/conceptual/gpu-isolation.html). Both
  are set: ROCR selects among the node's devices and HIP then numbers what it sees from 0, so HIP
  gets 0..n-1 (setting the node's indices twice would hide devices).
- Intel Gaudi: `HABANA_VISIBLE_MODULES`, module ids, stable across reboots, read by the Gaudi
  software in a process (docs.habana.ai, "Multiple Workloads on a Single Docker"); and
  `HABANA_VISIBLE_DEVICES`, which habana-container-runtime reads when a container starts
  ("Multiple Dockers Each with a Single Workload"). corral's device indices are module ids on
  Gaudi nodes.
- AWS Neuron core: `NEURON_RT_VISIBLE_CORES`, a core index or range such as `2-3` (Neuron
  Runtime configuration guide, awsdocs-neuron.readthedocs-hosted.com). A Neuron device holds
  several cores; corral counts cores, as the runtime allocates them.
- Google TPU chip: `TPU_VISIBLE_CHIPS` (read by libtpu), with `TPU_CHIPS_PER_PROCESS_BOUNDS`
  and `TPU_PROCESS_BOUNDS` so that one process sees a box of chips of its own (Cloud TPU,
  "run multiple processes on a TPU VM"; vLLM's TPU platform uses the same variable). A process's
  chips must form a valid box: corral sets `1,1,1` bounds per chip for single-chip workers and
  leaves multi-chip layouts to the workload (TODO: topology-aware chip boxes).

Engine resource names: Kubernetes device-plugin resources (`nvidia.com/gpu`, `amd.com/gpu`,
`habana.ai/gaudi`, `aws.amazon.com/neuroncore`, `google.com/tpu`; the Neuron device plugin
also offers whole devices as `aws.amazon.com/neuron`, but corral counts cores); Ray's built-in `GPU` for
NVIDIA and AMD and `TPU`, custom resources for the others (Ray's neuron accelerator manager
names `neuron_cores`); Slurm GRES `gpu` with the model as its type, other kinds by their own
GRES name.

Not yet wired: `environment.worker_environment` still hands out `CUDA_VISIBLE_DEVICES` only, and
the backends still ask for GPUs by NVIDIA's names; `vendor_of` and `device_env` are what they will
call (issue 17).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


class Vendor(enum.StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    AWS = "aws"
    GOOGLE = "google"


class DeviceKind(enum.StrEnum):
    GPU = "gpu"
    GAUDI = "gaudi"
    NEURON_CORE = "neuron-core"
    TPU_CHIP = "tpu-chip"


@dataclass(frozen=True, slots=True)
class VendorInfo:
    vendor: Vendor
    kind: DeviceKind
    kubernetes_resource: str
    ray_resource: str
    slurm_gres: str
    #: model name prefixes (lower case) that identify this vendor's devices
    prefixes: tuple[str, ...]


VENDORS: Final[dict[Vendor, VendorInfo]] = {
    Vendor.NVIDIA: VendorInfo(Vendor.NVIDIA, DeviceKind.GPU, "nvidia.com/gpu", "GPU", "gpu",
                              ("nvidia", "h100", "h200", "b200", "a100", "a10", "l4", "l40",
                               "v100", "p100", "k80", "t4", "rtx", "gh200")),
    Vendor.AMD: VendorInfo(Vendor.AMD, DeviceKind.GPU, "amd.com/gpu", "GPU", "gpu",
                           ("amd", "mi", "instinct", "radeon")),
    Vendor.INTEL: VendorInfo(Vendor.INTEL, DeviceKind.GAUDI, "habana.ai/gaudi", "HPU", "gaudi",
                             ("gaudi", "hl-", "intel-gaudi")),
    Vendor.AWS: VendorInfo(Vendor.AWS, DeviceKind.NEURON_CORE, "aws.amazon.com/neuroncore",
                           "neuron_cores", "neuron", ("trainium", "inferentia", "trn", "inf")),
    Vendor.GOOGLE: VendorInfo(Vendor.GOOGLE, DeviceKind.TPU_CHIP, "google.com/tpu", "TPU", "tpu",
                              ("tpu", "v4", "v5e", "v5p", "v6e")),
}


def vendor_of(model: str) -> Vendor:
    """The vendor of a device model name, by its prefix; NVIDIA when none matches (the pools
    corral ran on before knew only NVIDIA, and their model names carry no vendor).

    >>> [str(vendor_of(m)) for m in ("H100", "MI300X", "Gaudi2", "trn1", "TPU-v5e", "mystery")]
    ['nvidia', 'amd', 'intel', 'aws', 'google', 'nvidia']
    """
    name = model.strip().lower()
    for info in sorted(VENDORS.values(), key=lambda i: i.vendor != Vendor.NVIDIA):
        if any(name.startswith(p) for p in info.prefixes if info.vendor != Vendor.NVIDIA):
            return info.vendor
    return Vendor.NVIDIA


def device_env(vendor: Vendor, devices: Sequence[int]) -> dict[str, str]:
    """The environment that shows a worker exactly `devices` (the node's indices) under
    `vendor`'s runtime (module docstring for each variable and its source).

    >>> device_env(Vendor.AMD, [2, 3])
    {'ROCR_VISIBLE_DEVICES': '2,3', 'HIP_VISIBLE_DEVICES': '0,1'}
    >>> device_env(Vendor.AWS, [4, 5, 6])
    {'NEURON_RT_VISIBLE_CORES': '4-6'}
    >>> device_env(Vendor.GOOGLE, [1])
    {'TPU_VISIBLE_CHIPS': '1', 'TPU_CHIPS_PER_PROCESS_BOUNDS': '1,1,1', 'TPU_PROCESS_BOUNDS': '1,1,1'}
    """
    listed = ",".join(str(d) for d in devices)
    if vendor == Vendor.NVIDIA:
        return {"CUDA_VISIBLE_DEVICES": listed}
    if vendor == Vendor.AMD:
        return {"ROCR_VISIBLE_DEVICES": listed,
                "HIP_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(devices)))}
    if vendor == Vendor.INTEL:
        return {"HABANA_VISIBLE_MODULES": listed, "HABANA_VISIBLE_DEVICES": listed}
    if vendor == Vendor.AWS:
        return {"NEURON_RT_VISIBLE_CORES": _cores(devices)}
    env = {"TPU_VISIBLE_CHIPS": listed}
    if len(devices) == 1:
        env |= {"TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1"}
    return env


def _cores(devices: Sequence[int]) -> str:
    """Neuron's core list: a range `a-b` when contiguous (its documented form), else a list."""
    ds = sorted(devices)
    if ds and ds == list(range(ds[0], ds[-1] + 1)) and len(ds) > 1:
        return f"{ds[0]}-{ds[-1]}"
    return ",".join(str(d) for d in ds)
