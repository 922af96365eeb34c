"""GPU health beyond ECC: each check's severity (drain or warn) and reason sentence.

No GPU is used: NVML is `corral.testing.fake_pynvml`, a fake pynvml module injected into
sys.modules, which answers the same calls with the same constants and errors as nvidia-ml-py.
What the fake cannot show is whether a real driver sets these counters as documented.
"""

from __future__ import annotations

import sys

import pytest

from corral.backends.health import (
    Check,
    DeviceHealth,
    HealthThresholds,
    MemoryRepair,
    Severity,
    device_checks,
    node_verdict,
)
from corral.backends.nvml import NvmlHealthProbe
from corral.core.model import Health
from corral.testing.fake_pynvml import FakeGpu, FakeNvml


def probe_over(monkeypatch: pytest.MonkeyPatch, *gpus: FakeGpu) -> tuple[FakeNvml,
                                                                          NvmlHealthProbe]:
    fake = FakeNvml(gpus=list(gpus))
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    return fake, NvmlHealthProbe()


def names(checks: list[Check] | tuple[Check, ...]) -> list[tuple[str, Severity]]:
    return [(c.name, c.severity) for c in checks]


@pytest.mark.parametrize(("device", "expected", "says"), [
    pytest.param(DeviceHealth(0, 0.0, lost=True, error="NVML: GPU is lost"),
                 [("gpu-lost", Severity.DRAIN)], "fallen off the bus", id="gpu-lost"),
    pytest.param(DeviceHealth(0, 0.0, error="NVML: Unknown Error"),
                 [("query-failed", Severity.DRAIN)], "Unknown Error", id="query-failed"),
    pytest.param(DeviceHealth(0, 0.0, xids=(48, 63)),
                 [("xid", Severity.DRAIN), ("xid", Severity.WARN)], "double-bit ECC",
                 id="xids"),
    pytest.param(DeviceHealth(0, 0.0, ecc_uncorrected_volatile=1),
                 [("ecc-uncorrected", Severity.DRAIN)], "1 uncorrected ECC", id="ecc"),
    pytest.param(DeviceHealth(0, 0.0, memory_repair=MemoryRepair.RESET_PENDING),
                 [("memory-repair", Severity.WARN)], "pending", id="remap-pending"),
    pytest.param(DeviceHealth(0, 0.0, memory_repair=MemoryRepair.FAILED),
                 [("memory-repair", Severity.DRAIN)], "cannot repair", id="remap-failed"),
    pytest.param(DeviceHealth(0, 0.0, throttle_reasons=("hw-thermal-slowdown",)),
                 [("clocks-throttled", Severity.WARN)], "hw-thermal-slowdown", id="throttled"),
    pytest.param(DeviceHealth(0, 0.0, pcie_replays=100), [("pcie-replays", Severity.WARN)],
                 "100 PCIe replays", id="pcie-replays"),
    pytest.param(DeviceHealth(0, 0.0, pcie_replays=99), [], "", id="pcie-replays-below"),
    pytest.param(DeviceHealth(0, 0.0, nvlink_errors=500), [("nvlink-errors", Severity.WARN)],
                 "500 NVLink", id="nvlink-errors"),
])
def test_each_check_has_a_severity_and_a_reason(
        device: DeviceHealth, expected: list[tuple[str, Severity]], says: str) -> None:
    found = device_checks(device)
    assert names(found) == expected
    assert says in "; ".join(c.reason for c in found)
    assert all(c.device == 0 for c in found)


def test_the_probe_reads_throttling_and_counter_growth_not_totals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu(pcie_replays=5000, nvlink_errors=[10, 0, 7])
    _, probe = probe_over(monkeypatch, gpu, FakeGpu())
    with probe:
        first = probe.check(now=1.0)  # the baseline: a counter's history is not news
        assert [(d.pcie_replays, d.nvlink_errors) for d in first] == [(None, None), (None, None)]
        gpu.pcie_replays, gpu.nvlink_errors = 5150, [210, 0, 7]
        gpu.clocks_event_reasons = 0x40 | 0x4  # HW thermal slowdown, and the (normal) power cap
        second = probe.check(now=2.0)
    assert (second[0].pcie_replays, second[0].nvlink_errors) == (150, 200)
    assert second[0].throttle_reasons == ("hw-thermal-slowdown",)
    assert (second[1].pcie_replays, second[1].nvlink_errors) == (0, None)
    verdict = node_verdict(second, expected_devices=2)
    assert verdict.health == Health.DEGRADED
    assert names(verdict.checks) == [("clocks-throttled", Severity.WARN),
                                     ("pcie-replays", Severity.WARN),
                                     ("nvlink-errors", Severity.WARN)]
    assert verdict.reason.startswith("gpu 0: clocks slowed down (hw-thermal-slowdown)")


def test_a_gpu_fallen_off_the_bus_drains_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    _, probe = probe_over(monkeypatch, FakeGpu(), FakeGpu(lost=True))
    with probe:
        devices = probe.check(now=1.0)
    assert [d.lost for d in devices] == [False, True]
    verdict = node_verdict(devices, expected_devices=2)
    assert (verdict.health, names(verdict.checks)) == (Health.UNHEALTHY,
                                                       [("gpu-lost", Severity.DRAIN)])
    assert "gpu 1: GPU has fallen off the bus" in verdict.reason


def test_an_old_nvml_without_the_new_queries_checks_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(gpus=[FakeGpu(ecc_uncorrected=3)])
    module = fake.module()
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetPcieReplayCounter",
                 "nvmlDeviceGetNvLinkErrorCounter"):
        delattr(module, name)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    with NvmlHealthProbe() as probe:
        [device] = probe.check(now=1.0)
    assert (device.throttle_reasons, device.pcie_replays, device.nvlink_errors) == ((), None,
                                                                                   None)
    assert names(device_checks(device)) == [("ecc-uncorrected", Severity.DRAIN)]


def test_growth_thresholds_are_configurable() -> None:
    strict = HealthThresholds(pcie_replays_warn=1, nvlink_errors_warn=1)
    assert names(device_checks(DeviceHealth(0, 0.0, pcie_replays=1, nvlink_errors=1), strict)) == [
        ("pcie-replays", Severity.WARN), ("nvlink-errors", Severity.WARN)]
