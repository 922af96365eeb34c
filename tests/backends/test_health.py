"""GPU health: the verdict table, the fake probe, and the NVML probe over a fake pynvml.

There is no GPU on the machines these tests run on: the NVML path is exercised against
tests/backends/fake_pynvml.py, which mimics nvidia-ml-py's calls and errors, and against the
real pynvml module without a driver (where it must report "unavailable", not crash).
"""

from __future__ import annotations

import sys

import pytest

from corral.backends import nvml as nvml_module
from corral.backends.health import (
    DeviceHealth,
    FakeGpuHealthProbe,
    HealthThresholds,
    MemoryRepair,
    device_verdict,
    node_verdict,
)
from corral.backends.local import LocalBackend
from corral.backends.nvml import NvmlHealthProbe, load_nvml, local_gpus
from corral.core.model import Health

from .fake_pynvml import NVML_ERROR_DRIVER_NOT_LOADED, FakeGpu, FakeNvml, NVMLError


def gpu(index: int = 0, **fields: object) -> DeviceHealth:
    defaults: dict[str, object] = {"temperature_c": 50, "ecc_uncorrected_volatile": 0,
                                   "memory_repair": MemoryRepair.OK}
    return DeviceHealth(index=index, checked_at=0.0, **{**defaults, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device", "health", "says"),
    [
        pytest.param(gpu(), Health.HEALTHY, "", id="all-fine"),
        pytest.param(gpu(temperature_c=None, ecc_uncorrected_volatile=None,
                         memory_repair=MemoryRepair.NOT_CHECKED), Health.HEALTHY, "",
                     id="nothing-supported-is-not-a-fault"),
        pytest.param(gpu(xids=(13, 31, 43, 45, 68)), Health.HEALTHY, "",
                     id="application-xids-ignored"),
        pytest.param(gpu(xids=(79,)), Health.UNHEALTHY, "fallen off the bus", id="xid-79"),
        pytest.param(gpu(xids=(48,)), Health.UNHEALTHY, "double-bit ECC", id="xid-48"),
        pytest.param(gpu(xids=(94,)), Health.DEGRADED, "contained ECC", id="xid-94-degrades"),
        pytest.param(gpu(xids=(94, 95)), Health.UNHEALTHY, "uncontained", id="worst-xid-wins"),
        pytest.param(gpu(xids=(999,)), Health.UNHEALTHY, "XID catalogue",
                     id="unknown-xid-is-unhealthy"),
        pytest.param(gpu(ecc_uncorrected_volatile=2), Health.UNHEALTHY, "2 uncorrected ECC",
                     id="volatile-uncorrected-ecc"),
        pytest.param(gpu(memory_repair=MemoryRepair.RESET_PENDING), Health.DEGRADED, "reset",
                     id="remap-pending"),
        pytest.param(gpu(memory_repair=MemoryRepair.FAILED), Health.UNHEALTHY,
                     "row remapping failed", id="remap-failed"),
        pytest.param(gpu(memory_repair=MemoryRepair.UNREADABLE), Health.UNHEALTHY,
                     "memory info unreadable", id="memory-info-unreadable"),
        pytest.param(gpu(temperature_c=84), Health.HEALTHY, "", id="warm-but-fine"),
        pytest.param(gpu(temperature_c=85), Health.DEGRADED, "85 C >= 85 C", id="hot"),
        pytest.param(gpu(temperature_c=97), Health.UNHEALTHY, ">= 95 C", id="too-hot"),
        pytest.param(gpu(error="NVML: GPU is lost"), Health.UNHEALTHY, "GPU is lost",
                     id="query-error"),
    ],
)
def test_device_verdicts(device: DeviceHealth, health: Health, says: str) -> None:
    got, problems = device_verdict(device)
    assert got == health
    assert says in "; ".join(problems)
    assert bool(problems) == (health != Health.HEALTHY)


def test_thresholds_are_configurable() -> None:
    strict = HealthThresholds(temperature_degraded_c=60, ignored_xids=frozenset())
    assert device_verdict(gpu(temperature_c=70), strict)[0] == Health.DEGRADED
    assert device_verdict(gpu(xids=(13,)), strict)[0] == Health.UNHEALTHY


@pytest.mark.parametrize(
    ("devices", "kwargs", "health", "reason", "checked"),
    [
        pytest.param([gpu(0), gpu(1)], {"expected_devices": 2}, Health.HEALTHY,
                     "all 2 GPUs healthy", True, id="healthy"),
        pytest.param([gpu(0), gpu(1, xids=(79,))], {"expected_devices": 2}, Health.UNHEALTHY,
                     "gpu 1: xid 79 (GPU has fallen off the bus)", True, id="one-bad-gpu"),
        pytest.param([gpu(0, temperature_c=90), gpu(1, xids=(79,))], {}, Health.UNHEALTHY,
                     "gpu 1: xid 79 (GPU has fallen off the bus)", True,
                     id="reason-lists-the-worst-only"),
        pytest.param([gpu(0, temperature_c=90),
                      gpu(1, memory_repair=MemoryRepair.RESET_PENDING)], {}, Health.DEGRADED, "gpu 0: 90 C >= 85 C | gpu 1: memory repair waits for a "
                     "GPU reset (remapped rows or retired pages pending)", True, id="two-degraded"),
        pytest.param([gpu(0), gpu(2)], {"expected_devices": 4}, Health.UNHEALTHY,
                     "expected 4 GPUs, the driver sees 2 (missing: 1, 3)", True,
                     id="missing-devices"),
        pytest.param([], {"unavailable_reason": "no NVML"}, Health.HEALTHY,
                     "GPU health not checked: no NVML", False, id="virtual-node-unchecked"),
        pytest.param([], {"unavailable_reason": "driver not loaded", "expected_devices": 8},
                     Health.UNHEALTHY, "expected 8 GPUs but cannot check them: driver not "
                     "loaded", False, id="real-node-without-driver"),
    ],
)
def test_node_verdicts(devices: list[DeviceHealth], kwargs: dict[str, object], health: Health,
                       reason: str, checked: bool) -> None:
    verdict = node_verdict(devices, **kwargs)  # type: ignore[arg-type]
    assert (verdict.health, verdict.reason, verdict.checked) == (health, reason, checked)


def test_fake_probe_stamps_the_callers_clock() -> None:
    probe = FakeGpuHealthProbe([gpu(0), gpu(1, xids=(79,))])
    with probe:
        got = probe.check(now=42.0)
    assert [d.checked_at for d in got] == [42.0, 42.0]
    assert node_verdict(got).health == Health.UNHEALTHY
    assert FakeGpuHealthProbe(available=False, unavailable_reason="x").check(1.0) == []


# --- NVML, through a fake pynvml module ----------------------------------------------------

@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml(gpus=[FakeGpu(), FakeGpu()])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    return fake


def test_nvml_probe_reports_healthy_gpus(fake_nvml: FakeNvml) -> None:
    with NvmlHealthProbe() as probe:
        assert probe.available
        got = probe.check(now=5.0)
    assert got == [
        DeviceHealth(index=i, checked_at=5.0, uuid=f"GPU-0000000{i}",
                     name="NVIDIA H100 80GB HBM3", xids=(), ecc_uncorrected_volatile=0,
                     temperature_c=40, memory_repair=MemoryRepair.OK)
        for i in (0, 1)]
    assert node_verdict(got, expected_devices=2).health == Health.HEALTHY
    assert fake_nvml.registered == [0, 1]
    assert fake_nvml.inits == fake_nvml.shutdowns == 1


def test_nvml_probe_collects_xids_and_keeps_them(fake_nvml: FakeNvml) -> None:
    probe = NvmlHealthProbe()
    fake_nvml.pending_xids = [(1, 13), (1, 79), (1, 79)]
    first = probe.check(now=1.0)
    second = probe.check(now=2.0)  # no new events: the XIDs seen stay reported
    probe.close()
    probe.close()
    assert [d.xids for d in first] == [(), (13, 79)] == [d.xids for d in second]
    verdict = node_verdict(second, expected_devices=2)
    assert (verdict.health, verdict.reason) == (
        Health.UNHEALTHY, "gpu 1: xid 79 (GPU has fallen off the bus)")
    assert fake_nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("gpu_fields", "expected"),
    [
        pytest.param({"remapped_rows": (0, 0, 1, 0)},
                     {"memory_repair": MemoryRepair.RESET_PENDING}, id="remap-pending"),
        pytest.param({"remapped_rows": (0, 3, 0, 1)}, {"memory_repair": MemoryRepair.FAILED},
                     id="remap-failed"),
        pytest.param({"remapped_rows": None, "retired_pages_pending": 1},
                     {"memory_repair": MemoryRepair.RESET_PENDING},
                     id="pre-ampere-retired-pages"),
        pytest.param({"remapped_rows": None}, {"memory_repair": MemoryRepair.OK},
                     id="neither-supported"),
        pytest.param({"ecc_uncorrected": 4, "temperature_c": None},
                     {"ecc_uncorrected_volatile": 4, "temperature_c": None}, id="ecc"),
        pytest.param({"lost": True}, {"error": "NVML: GPU is lost", "name": ""}, id="gpu-lost"),
    ],
)
def test_nvml_probe_reads_each_signal(monkeypatch: pytest.MonkeyPatch,
                                      gpu_fields: dict[str, object],
                                      expected: dict[str, object]) -> None:
    fake = FakeNvml(gpus=[FakeGpu(**gpu_fields)])  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        [got] = probe.check(now=0.0)
    for name, value in expected.items():
        assert getattr(got, name) == value, name


def test_nvml_probe_memory_info_that_fails_is_unreadable_not_unsupported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(gpus=[FakeGpu(), FakeGpu()])

    def broken_on_gpu_1(handle: int) -> object:
        if handle == 1:
            raise NVMLError(999)  # NVML_ERROR_UNKNOWN: not "not supported"
        return FakeNvml.nvmlDeviceGetMemoryInfo(fake, handle)

    fake.nvmlDeviceGetMemoryInfo = broken_on_gpu_1  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        got = probe.check(now=0.0)
    assert [d.memory_repair for d in got] == [MemoryRepair.OK, MemoryRepair.UNREADABLE]
    verdict = node_verdict(got, expected_devices=2)
    assert (verdict.health, verdict.reason) == (Health.UNHEALTHY,
                                                "gpu 1: memory info unreadable")


def test_nvml_probe_works_without_xid_event_support(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(gpus=[FakeGpu(supports_events=False)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    with NvmlHealthProbe() as probe:
        assert probe.check(now=0.0)[0].xids == ()


def test_no_pynvml_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    probe = NvmlHealthProbe()
    assert not probe.available and "pip install 'corral[gpu]'" in probe.unavailable_reason
    assert probe.check(now=0.0) == []
    assert local_gpus() == []
    verdict = node_verdict([], unavailable_reason=probe.unavailable_reason)
    assert (verdict.health, verdict.checked) == (Health.HEALTHY, False)


def test_driver_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    module, reason = load_nvml()
    assert module is None and "Driver Not Loaded" in reason


def test_the_real_pynvml_without_a_gpu_answers_cleanly() -> None:
    pytest.importorskip("pynvml")
    module, reason = load_nvml()
    if module is not None:
        module.nvmlShutdown()
        pytest.skip("this machine has a working NVIDIA driver")
    assert "NVML did not start" in reason
    assert not NvmlHealthProbe().available


def test_local_inventory_from_nvml(fake_nvml: FakeNvml, tmp_path: object) -> None:
    assert [g.memory_mib for g in local_gpus()] == [81559, 81559]
    [node] = LocalBackend(tmp_path, node_id="box").inventory()  # type: ignore[arg-type]
    assert (node.id, node.gpu_count, node.gpu_model, node.gpu_memory_mib) == (
        "box", 2, "NVIDIA H100 80GB HBM3", 81559)


def test_local_inventory_without_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(nvml_module, "local_gpus", lambda: [])
    [node] = LocalBackend(tmp_path, node_id="laptop").inventory()  # type: ignore[arg-type]
    assert (node.id, node.gpu_count, node.provider) == ("laptop", 0, "local")
