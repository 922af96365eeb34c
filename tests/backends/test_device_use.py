"""Measured GPU use (compute utilisation, memory in use) through the vendor probes.

No GPU here: NVML is the fake pynvml (`corral.testing.fake_pynvml`), amdsmi the fake module of
test_amdsmi_probe.py. What they cannot show is a real driver's answers: the sampling against a
real NVIDIA GPU is checked only on a machine that has one (none in CI).
"""

from __future__ import annotations

import sys

import pytest

from corral.backends.amdsmi_probe import AmdSmiHealthProbe
from corral.backends.device_use import DeviceUse
from corral.backends.health import FakeGpuHealthProbe
from corral.backends.nvml import NvmlHealthProbe

from .fake_pynvml import NVML_ERROR_DRIVER_NOT_LOADED, FakeGpu, FakeNvml
from .test_amdsmi_probe import LibraryError, RetCode, fake_amdsmi, mi300x

MIB = 2**20


def test_nvml_samples_utilisation_and_memory_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([FakeGpu(utilization_pct=3, memory_used_mib=1024, memory_mib=81559),
                     FakeGpu(utilization_pct=97, memory_used_mib=80000, memory_mib=81559)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        use = probe.sample(12.5)
    assert use == [DeviceUse(0, 12.5, 0.03, 1024 * MIB, 81559 * MIB),
                   DeviceUse(1, 12.5, 0.97, 80000 * MIB, 81559 * MIB)]


def test_memory_used_leaves_out_the_drivers_reserve_as_nvidia_smi_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """nvmlDeviceGetMemoryInfo_v2's used (seen on a real H200: v1 said 615 MiB used on the idle
    GPU, nvidia-smi 0); a driver without v2 answers v1's."""
    fake = FakeNvml([FakeGpu(memory_used_mib=100, memory_reserved_mib=615),
                     FakeGpu(memory_used_mib=100, memory_reserved_mib=615, memory_v2=False)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        assert [u.memory_used_bytes // MIB for u in probe.sample(0.0)] == [100, 715]


def test_a_device_that_errors_gives_no_sample_and_the_others_still_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([FakeGpu(utilization_pct=50), FakeGpu(lost=True),
                     FakeGpu(utilization_pct=None), FakeGpu(utilization_pct=10)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        assert [u.index for u in probe.sample(0.0)] == [0, 3]


def test_a_value_out_of_range_is_no_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sentinel (0xFFFFFFFF, as some drivers answer for "unknown") is not a percentage."""
    fake = FakeNvml([FakeGpu(utilization_pct=0xFFFFFFFF), FakeGpu(utilization_pct=100)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        assert [(u.index, u.utilization) for u in probe.sample(0.0)] == [(1, 1.0)]


def test_no_nvml_no_samples_never_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed
    with NvmlHealthProbe() as probe:
        assert probe.sample(0.0) == []
    monkeypatch.setitem(sys.modules, "pynvml",
                        FakeNvml([FakeGpu()], init_error=NVML_ERROR_DRIVER_NOT_LOADED).module())
    with NvmlHealthProbe() as probe:
        assert probe.sample(0.0) == []


def test_amdsmi_samples_gfx_activity_and_vram(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = {**mi300x(), "activity": {"gfx_activity": 88, "umc_activity": 40, "mm_activity": 0},
            "vram_usage": {"vram_total": 196608, "vram_used": 150000}}
    idle = {**mi300x(), "activity": {"gfx_activity": 0, "umc_activity": 0, "mm_activity": 0},
            "vram_usage": {"vram_total": 196608, "vram_used": 12}}
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi([busy, idle]))
    with AmdSmiHealthProbe() as probe:
        use = probe.sample(3.0)
    assert use == [DeviceUse(0, 3.0, 0.88, 150000 * MIB, 196608 * MIB),
                   DeviceUse(1, 3.0, 0.0, 12 * MIB, 196608 * MIB)]


@pytest.mark.parametrize("broken", [
    pytest.param({"activity": {"gfx_activity": "N/A"}}, id="activity-n/a"),
    pytest.param({"activity": None}, id="activity-unsupported"),
    pytest.param({"vram_usage": LibraryError(RetCode.STATUS_NOT_SUPPORTED)}, id="vram-error"),
])
def test_an_amd_device_that_cannot_answer_gives_no_sample(
        monkeypatch: pytest.MonkeyPatch, broken: dict[str, object]) -> None:
    good = {**mi300x(), "activity": {"gfx_activity": 5},
            "vram_usage": {"vram_total": 10, "vram_used": 1}}
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi([{**good, **broken}, good]))
    with AmdSmiHealthProbe() as probe:
        assert [u.index for u in probe.sample(0.0)] == [1]


def test_without_amdsmi_no_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with AmdSmiHealthProbe() as probe:
        assert probe.sample(0.0) == []


def test_the_fake_probe_answers_what_a_test_sets() -> None:
    probe = FakeGpuHealthProbe(use=[DeviceUse(0, 0.0, 0.5, 1, 2)])
    assert probe.sample(7.0) == [DeviceUse(0, 7.0, 0.5, 1, 2)]
    probe.available = False
    assert probe.sample(7.0) == []
