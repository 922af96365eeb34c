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
