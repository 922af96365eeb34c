"""Vendors, device kinds, per-vendor device hand-out and engine resource names."""

from __future__ import annotations

import pytest

from corral.backends.accelerators import VENDORS, DeviceKind, Vendor, device_env, vendor_of


@pytest.mark.parametrize(("model", "vendor"), [
    ("H100", Vendor.NVIDIA), ("A100-80GB", Vendor.NVIDIA), ("L4", Vendor.NVIDIA),
    ("MI300X", Vendor.AMD), ("amd-mi250", Vendor.AMD), ("Gaudi3", Vendor.INTEL),
    ("trn2", Vendor.AWS), ("Inferentia2", Vendor.AWS), ("v5p", Vendor.GOOGLE),
    ("tpu-v6e", Vendor.GOOGLE), ("unknown-model", Vendor.NVIDIA),
])
def test_vendor_of_model(model: str, vendor: Vendor) -> None:
    assert vendor_of(model) is vendor


@pytest.mark.parametrize(("vendor", "devices", "env"), [
    (Vendor.NVIDIA, [0, 3], {"CUDA_VISIBLE_DEVICES": "0,3"}),
    (Vendor.AMD, [5], {"ROCR_VISIBLE_DEVICES": "5", "HIP_VISIBLE_DEVICES": "0"}),
    (Vendor.INTEL, [4, 5], {"HABANA_VISIBLE_MODULES": "4,5", "HABANA_VISIBLE_DEVICES": "4,5"}),
    (Vendor.AWS, [2, 3], {"NEURON_RT_VISIBLE_CORES": "2-3"}),
    (Vendor.AWS, [1, 3], {"NEURON_RT_VISIBLE_CORES": "1,3"}),
    (Vendor.AWS, [7], {"NEURON_RT_VISIBLE_CORES": "7"}),
    (Vendor.GOOGLE, [0, 1, 2, 3], {"TPU_VISIBLE_CHIPS": "0,1,2,3"}),
], ids=lambda v: str(v))
def test_device_env(vendor: Vendor, devices: list[int], env: dict[str, str]) -> None:
    assert device_env(vendor, devices) == env


def test_every_vendor_names_its_kind_and_engine_resources() -> None:
    assert {v: i.kubernetes_resource for v, i in VENDORS.items()} == {
        Vendor.NVIDIA: "nvidia.com/gpu", Vendor.AMD: "amd.com/gpu",
        Vendor.INTEL: "habana.ai/gaudi", Vendor.AWS: "aws.amazon.com/neuroncore",
        Vendor.GOOGLE: "google.com/tpu"}
    assert VENDORS[Vendor.GOOGLE].kind is DeviceKind.TPU_CHIP
    assert VENDORS[Vendor.AWS].kind is DeviceKind.NEURON_CORE


# --- where each backend and the spec meet the vendor (issue 17) -------------------------------


def test_a_node_is_of_its_labelled_vendor_else_its_models() -> None:
    from corral.backends.accelerators import node_vendor
    from corral.core.model import LABEL_VENDOR, Node

    amd = Node("a", "p", "MI300X", 8, 196608, 0, 0)
    declared = Node("b", "p", "virtual-gpu", 8, 1, 0, 0, labels=((LABEL_VENDOR, "intel"),))
    assert (node_vendor(amd), amd.label(LABEL_VENDOR)) == (Vendor.AMD, "amd")
    assert (node_vendor(declared), declared.label(LABEL_VENDOR)) == (Vendor.INTEL, "intel")


def test_a_pool_file_names_the_vendor_and_a_selector_may_ask_for_one() -> None:
    from corral.core.model import LABEL_VENDOR
    from corral.spec.labels import check_selector
    from corral.spec.pool import ProviderSpec

    provider = ProviderSpec.model_validate({"name": "lab", "node_groups": [
        {"name": "g", "gpu_model": "virtual-gpu", "gpus": 4, "gpu_memory": "64GiB",
         "vendor": "amd"}]})
    assert provider.nodes()[0].label(LABEL_VENDOR) == "amd"
    assert check_selector({LABEL_VENDOR: "amd"}) == {LABEL_VENDOR: "amd"}
    with pytest.raises(ValueError, match=r"corral\.dev/vendor is one of nvidia, amd, intel"):
        check_selector({LABEL_VENDOR: "acme"})


def test_ray_asks_gpus_for_nvidia_and_amd_and_custom_resources_for_the_others() -> None:
    from corral.backends.accelerators import ray_devices, ray_request
    from corral.backends.ray_nodes import ray_inventory

    assert ray_request(Vendor.NVIDIA, 0.5) == (0.5, {})
    assert ray_request(Vendor.GOOGLE, 4) == (0, {"TPU": 4})
    assert ray_request(Vendor.INTEL, 0) == (0, {})
    assert ray_devices({"HPU": 8.0}) == (Vendor.INTEL, 8)
    [node] = ray_inventory([{"NodeID": "f" * 40, "Alive": True,
                             "Resources": {"neuron_cores": 32.0, "CPU": 8.0}}])
    assert (node.gpu_count, node.label("corral.dev/vendor")) == (32, "aws")


@pytest.mark.parametrize(("gres", "devices", "milli", "asked", "vendor"), [
    ("gpu:mi300x:8", 2, 1000, "gpu:2", "amd"),  # AMD GPUs are gres/gpu (AutoDetect=rsmi)
    ("gpu:h100:8,shard:16", 1, 500, "shard:1", "nvidia"),
    ("gaudi:8", 2, 1000, "gaudi:2", "intel"),
    ("neuron:32", 4, 1000, "neuron:4", "aws"),
    ("tpu:v5e:4", 1, 500, "tpu:1", "google"),  # shares of a TPU do not exist: the whole chip
])
def test_slurm_asks_each_kind_under_its_gres_name(
        gres: str, devices: int, milli: int, asked: str, vendor: str) -> None:
    from corral.backends.slurm_parse import gres_request, parse_nodes, slurm_inventory

    [node] = parse_nodes(f"NodeName=n1 State=IDLE Gres={gres} CPUTot=8 RealMemory=1024")
    assert node.gpus > 0
    assert gres_request(devices, milli, node.shards_per_gpu, node.gres_name)[0] == asked
    [pool_node] = slurm_inventory([node])
    assert pool_node.label("corral.dev/vendor") == vendor
