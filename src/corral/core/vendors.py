"""Who makes an accelerator: the vendor of a device model, read from its name. Pure.

A node's vendor decides how its devices are handed to a worker and what each engine calls them
(`corral.backends.accelerators`). It is the node's `corral.dev/vendor` label when the pool file
or the agent's registration gave one (`vendor:` in a node group, `--vendor` or detection on a
host), else `vendor_of(gpu_model)`: so a workload may select `corral.dev/vendor: amd` on any node.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["DEVICE_VARIABLES", "PREFIXES", "Vendor", "vendor_of"]


class Vendor(enum.StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    AWS = "aws"
    GOOGLE = "google"


#: model name prefixes (lower case) that identify each vendor's devices; NVIDIA's are listed for
#: the record, but any name no other vendor claims is NVIDIA's (see `vendor_of`)
PREFIXES: Final[dict[Vendor, tuple[str, ...]]] = {
    Vendor.NVIDIA: ("nvidia", "h100", "h200", "b200", "a100", "a10", "l4", "l40", "v100", "p100",
                    "k80", "t4", "rtx", "gh200"),
    Vendor.AMD: ("amd", "mi", "instinct", "radeon"),
    Vendor.INTEL: ("gaudi", "hl-", "intel-gaudi"),
    Vendor.AWS: ("trainium", "inferentia", "trn", "inf"),
    Vendor.GOOGLE: ("tpu", "v4", "v5e", "v5p", "v6e"),
}


#: every variable some vendor's runtime reads to pick devices (`corral.backends.accelerators`
#: says which reads which): a worker gets its own vendor's and none of the others' (an AMD
#: worker inheriting CUDA_VISIBLE_DEVICES from the agent's shell would be told of devices it
#: does not have), and a spec's env may set none of them
DEVICE_VARIABLES: Final = frozenset({
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "HABANA_VISIBLE_MODULES", "HABANA_VISIBLE_DEVICES", "NEURON_RT_VISIBLE_CORES",
    "TPU_VISIBLE_CHIPS", "TPU_CHIPS_PER_PROCESS_BOUNDS", "TPU_PROCESS_BOUNDS",
})


def vendor_of(model: str) -> Vendor:
    """The vendor of a device model name, by its prefix; NVIDIA when none matches (the pools
    corral ran on before knew only NVIDIA, and their model names carry no vendor).

    >>> [str(vendor_of(m)) for m in ("H100", "MI300X", "Gaudi2", "trn1", "TPU-v5e", "mystery")]
    ['nvidia', 'amd', 'intel', 'aws', 'google', 'nvidia']
    """
    name = model.strip().lower()
    for vendor, prefixes in PREFIXES.items():
        if vendor != Vendor.NVIDIA and name.startswith(prefixes):
            return vendor
    return Vendor.NVIDIA
