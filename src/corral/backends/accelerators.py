"""Accelerators beyond NVIDIA: who makes a device, what kind it is, and how each engine names it.

One row per vendor (`VENDORS`): the kind of device, the environment variables its runtime reads
to see only the devices a worker was given, and the resource name on each engine. Pure data and
pure functions: nothing here touches hardware (discovery and health through each vendor's library
live beside: `nvml.py`, `amdsmi_probe.py`). Vendor and model names: `corral.core.vendors`.

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

Wired: `environment.worker_environment(..., vendor=)` hands out the node's vendor's variables
(the local and agent backends look the vendor up with `node_vendor`; Kubernetes from the device
plugin resource the node offers, `kubernetes_vendor`); Kubernetes asks for `kubernetes_resource`,
Ray for `ray_request`, Slurm for `slurm_gres_name` (issue 17).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from corral.core.model import LABEL_VENDOR, Node
from corral.core.vendors import DEVICE_VARIABLES, PREFIXES, Vendor, vendor_of

__all__ = [
    "DEVICE_VARIABLES",
    "VENDORS",
    "DeviceKind",
    "Vendor",
    "VendorInfo",
    "device_env",
    "kubernetes_vendor",
    "node_vendor",
    "ray_devices",
    "ray_request",
    "slurm_gres_name",
    "vendor_of",
    "vendors_by_node",
]


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
    #: the node label its Kubernetes device plugin's feature discovery gives the model
    kubernetes_model_label: str = ""

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Model name prefixes (lower case) that identify this vendor's devices."""
        return PREFIXES[self.vendor]


VENDORS: Final[dict[Vendor, VendorInfo]] = {
    Vendor.NVIDIA: VendorInfo(Vendor.NVIDIA, DeviceKind.GPU, "nvidia.com/gpu", "GPU", "gpu",
                              "nvidia.com/gpu.product"),
    Vendor.AMD: VendorInfo(Vendor.AMD, DeviceKind.GPU, "amd.com/gpu", "GPU", "gpu",
                           "amd.com/gpu.product-name"),
    Vendor.INTEL: VendorInfo(Vendor.INTEL, DeviceKind.GAUDI, "habana.ai/gaudi", "HPU", "gaudi"),
    Vendor.AWS: VendorInfo(Vendor.AWS, DeviceKind.NEURON_CORE, "aws.amazon.com/neuroncore",
                           "neuron_cores", "neuron"),
    Vendor.GOOGLE: VendorInfo(Vendor.GOOGLE, DeviceKind.TPU_CHIP, "google.com/tpu", "TPU", "tpu",
                              "cloud.google.com/gke-tpu-accelerator"),
}

def node_vendor(node: Node) -> Vendor:
    """The vendor of a node's accelerators: its `corral.dev/vendor` label (a pool file's
    `vendor:`, an agent's registration), else read from its model's name.

    >>> str(node_vendor(Node("n", "p", "MI300X", 8, 196608, 0, 0)))
    'amd'
    """
    given = node.label(LABEL_VENDOR)
    try:
        return Vendor(given) if given else vendor_of(node.gpu_model)
    except ValueError:  # a label no vendor has: the model's name decides
        return vendor_of(node.gpu_model)


def vendors_by_node(nodes: Iterable[Node]) -> dict[str, Vendor]:
    """node id -> vendor, for a backend to look its workers' nodes up in."""
    return {n.id: node_vendor(n) for n in nodes}


def kubernetes_vendor(capacity: Mapping[str, str]) -> Vendor | None:
    """The vendor whose device plugin resource a Kubernetes node offers (capacity > 0), None for
    a node without accelerators. One vendor per node: the first in `VENDORS`' order wins."""
    for info in VENDORS.values():
        count = capacity.get(info.kubernetes_resource, "0") or "0"
        if count.isdigit() and int(count) > 0:
            return info.vendor
    return None


def ray_request(vendor: Vendor, share: float) -> tuple[float, dict[str, float]]:
    """(num_gpus, resources) a Ray actor asks for `share` devices of `vendor`: Ray's built-in
    `GPU` for NVIDIA and AMD (Ray's AMD accelerator manager sets ROCR_VISIBLE_DEVICES for it),
    a custom resource for the others (`neuron_cores`, `TPU`, `HPU`, as Ray's accelerator
    managers name them).

    >>> ray_request(Vendor.AMD, 2), ray_request(Vendor.AWS, 2)
    ((2, {}), (0, {'neuron_cores': 2}))
    """
    info = VENDORS[vendor]
    if info.ray_resource == "GPU":
        return share, {}
    return 0, ({info.ray_resource: share} if share else {})


def ray_devices(resources: Mapping[str, float]) -> tuple[Vendor | None, int]:
    """(vendor, count) of the accelerators a Ray node's resources offer: Ray's `GPU` (vendor
    None: NVIDIA's or AMD's, the model decides), else the first custom resource of another
    vendor (`neuron_cores`, `TPU`, `HPU`).

    >>> ray_devices({"GPU": 4.0, "CPU": 8.0}), ray_devices({"neuron_cores": 32.0})
    ((None, 4), (<Vendor.AWS: 'aws'>, 32))
    """
    if resources.get("GPU", 0):
        return None, int(resources["GPU"])
    for info in VENDORS.values():
        if info.ray_resource != "GPU" and resources.get(info.ray_resource, 0):
            return info.vendor, int(resources[info.ray_resource])
    return None, 0


def slurm_gres_name(vendor: Vendor) -> str:
    """The GRES name a Slurm site gives `vendor`'s devices: `gpu` for NVIDIA and AMD (Slurm's
    gres.conf AutoDetect=nvml / rsmi), the vendor's own name otherwise."""
    return VENDORS[vendor].slurm_gres


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
