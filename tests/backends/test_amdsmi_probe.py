"""AMD GPUs through amdsmi, and an agent host's vendor.

No AMD GPU and no amdsmi here: `amdsmi` is a fake module injected into sys.modules below, with
the calls, enums and exception of AMD SMI's Python API that corral uses (shapes as documented at
rocm.docs.amd.com/projects/amdsmi); what it cannot show is a real driver's answers.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any, ClassVar

import pytest

from corral.agent import host
from corral.backends.amdsmi_probe import EVENT_HOLD_S, AmdSmiHealthProbe, local_amd_gpus
from corral.backends.health import MemoryRepair, Severity, device_checks
from corral.core.model import LABEL_VENDOR


class RetCode(enum.IntEnum):
    STATUS_NO_DATA = 40
    STATUS_NOT_SUPPORTED = 2
    STATUS_NO_PERM = 10
    STATUS_DRIVER_NOT_LOADED = 48


class LibraryError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"amdsmi error {code}")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


def fake_amdsmi(gpus: list[dict[str, Any]], init_error: int | None = None) -> types.ModuleType:
    m = types.ModuleType("amdsmi")
    m.AmdSmiRetCode = RetCode  # type: ignore[attr-defined]
    m.AmdSmiLibraryException = LibraryError  # type: ignore[attr-defined]
    m.AmdSmiTemperatureType = types.SimpleNamespace(HOTSPOT=1)  # type: ignore[attr-defined]
    m.AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)  # type: ignore[attr-defined]
    m.AmdSmiMemoryPageStatus = types.SimpleNamespace(  # type: ignore[attr-defined]
        RESERVED=0, PENDING=1, UNRESERVABLE=2)

    def init() -> None:
        if init_error is not None:
            raise LibraryError(init_error)

    def answer(field: str) -> Any:
        def query(h: int, *_: Any) -> Any:
            value = gpus[h].get(field)
            if isinstance(value, Exception):
                raise value
            if value is None:
                raise LibraryError(RetCode.STATUS_NOT_SUPPORTED)
            return value
        return query

    m.amdsmi_init = init  # type: ignore[attr-defined]
    m.amdsmi_shut_down = lambda: None  # type: ignore[attr-defined]
    m.amdsmi_get_processor_handles = lambda: list(range(len(gpus)))  # type: ignore[attr-defined]
    for name, field in (("amdsmi_get_gpu_asic_info", "asic"),
                        ("amdsmi_get_gpu_vram_info", "vram"),
                        ("amdsmi_get_gpu_total_ecc_count", "ecc"),
                        ("amdsmi_get_gpu_pci_replay_counter", "replays"),
                        ("amdsmi_get_temp_metric", "temp"),
                        ("amdsmi_get_gpu_bad_page_info", "pages"),
                        ("amdsmi_get_gpu_activity", "activity"),
                        ("amdsmi_get_gpu_vram_usage", "vram_usage"),
                        ("amdsmi_gpu_xgmi_error_status", "xgmi")):
        setattr(m, name, answer(field))
    m.AmdSmiXgmiStatus = XgmiStatus  # type: ignore[attr-defined]
    m.AmdSmiEvtNotificationType = EventType  # type: ignore[attr-defined]
    m.AmdSmiEventReader = FakeEventReader  # type: ignore[attr-defined]
    return m


class XgmiStatus(enum.IntEnum):
    NO_ERRORS = 0
    ERROR = 1
    MULTIPLE_ERRORS = 2


class EventType(enum.IntEnum):  # amdsmi's names (RING_HANG only in newer drivers)
    VMFAULT = 1
    THERMAL_THROTTLE = 2
    GPU_PRE_RESET = 3
    GPU_POST_RESET = 4
    RING_HANG = 14


class Handle:
    """A ctypes-like handle: a new object per call, the same address (`value`)."""

    def __init__(self, value: int) -> None:
        self.value = value


class FakeEventReader:
    """amdsmi's event reader: `read` polls one queue shared by every registered device (as the
    real one does), STATUS_NO_DATA when it is empty."""

    queue: ClassVar[list[dict[str, Any]]] = []
    made: ClassVar[list[tuple[int, tuple[int, ...]]]] = []
    stopped = 0

    def __init__(self, handle: int, types: list[EventType]) -> None:
        FakeEventReader.made.append((handle, tuple(types)))

    def read(self, timeout_ms: int, num_elem: int = 10) -> list[dict[str, Any]]:
        assert timeout_ms == 0, "the probe must never block"
        if not FakeEventReader.queue:
            raise LibraryError(RetCode.STATUS_NO_DATA)
        out, FakeEventReader.queue[:] = FakeEventReader.queue[:num_elem], \
            FakeEventReader.queue[num_elem:]
        return out

    def stop(self) -> None:
        FakeEventReader.stopped += 1


def mi300x(**fields: Any) -> dict[str, Any]:
    return {"asic": {"market_name": "AMD Instinct MI300X", "asic_serial": "0x1"},
            "vram": {"vram_size": 196592}, "ecc": {"uncorrectable_count": 0}, "replays": 0,
            "temp": 45, "pages": [], "xgmi": XgmiStatus.NO_ERRORS, **fields}


def test_xgmi_errors_and_driver_events_are_checks_of_their_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [mi300x(), mi300x(xgmi=XgmiStatus.MULTIPLE_ERRORS), mi300x(xgmi=None), mi300x()]
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(gpus))
    FakeEventReader.made.clear()
    with AmdSmiHealthProbe() as probe:
        assert all(not device_checks(d) or d.index == 1 for d in probe.check(now=0.0))
        # every device registered once, for the types corral acts on (VMFAULT is the app's)
        assert [h for h, _ in FakeEventReader.made] == [0, 1, 2, 3]
        assert set(FakeEventReader.made[0][1]) == {EventType.THERMAL_THROTTLE,
                                                   EventType.GPU_PRE_RESET,
                                                   EventType.GPU_POST_RESET, EventType.RING_HANG}
        FakeEventReader.queue[:] = [
            {"processor_handle": Handle(3), "event": EventType.RING_HANG,
             "message": "ring gfx_0.0.0 timeout"},
            {"processor_handle": Handle(0), "event": EventType.GPU_POST_RESET, "message": ""},
            {"processor_handle": Handle(2), "event": EventType.VMFAULT, "message": "page fault"}]
        seen = probe.check(now=10.0)
        later = probe.check(now=10.0 + EVENT_HOLD_S)
    assert FakeEventReader.stopped >= 4  # closed with the probe
    checks = {d.index: [(c.name, c.severity) for c in device_checks(d)] for d in seen}
    assert checks == {0: [("gpu-reset", Severity.WARN)],
                      1: [("xgmi-errors", Severity.WARN)], 2: [],
                      3: [("ring-hang", Severity.DRAIN)]}
    [xgmi] = device_checks(seen[1])
    assert "multiple errors recorded on its XGMI links" in xgmi.reason
    assert "ring_hang: ring gfx_0.0.0 timeout" in device_checks(seen[3])[0].reason
    # an event is held a while, then let go (a reset is over); XGMI's state is sticky
    assert {d.index: [c.name for c in device_checks(d)] for d in later} == {
        0: [], 1: ["xgmi-errors"], 2: [], 3: []}


def test_the_probe_reads_ecc_bad_pages_temperature_and_replays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [mi300x(), mi300x(ecc={"uncorrectable_count": 2}, pages=[{"status": 1}]),
            mi300x(pages=[{"status": 2}], temp=None, ecc=None),
            mi300x(asic=LibraryError(RetCode.STATUS_DRIVER_NOT_LOADED))]
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(gpus))
    with AmdSmiHealthProbe() as probe:
        first = probe.check(now=1.0)
        gpus[0]["replays"] = 250
        second = probe.check(now=2.0)
    assert first[0].name == "AMD Instinct MI300X" and not device_checks(first[0])
    assert (first[1].ecc_uncorrected_volatile, first[1].memory_repair) == (
        2, MemoryRepair.RESET_PENDING)
    assert (first[2].memory_repair, first[2].temperature_c,
            first[2].ecc_uncorrected_volatile) == (MemoryRepair.FAILED, None, None)
    assert "amdsmi error 48" in first[3].error
    assert [(c.name, c.severity) for c in device_checks(second[0])] == [
        ("pcie-replays", Severity.WARN)]
    assert [c.severity for c in device_checks(first[1])] == [Severity.DRAIN, Severity.WARN]


def test_without_amdsmi_or_its_driver_the_probe_is_unavailable_not_broken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import fails
    probe = AmdSmiHealthProbe()
    assert not probe.available and "not installed" in probe.unavailable_reason
    assert probe.check(0.0) == [] and local_amd_gpus() == []
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi([], init_error=48))
    assert "did not start" in AmdSmiHealthProbe().unavailable_reason


def test_an_agent_declares_its_vendor_in_its_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi([mi300x(), mi300x()]))
    monkeypatch.setattr("corral.backends.nvml.local_gpus", lambda: [])  # no NVIDIA GPU here
    found = host.host_facts(host.Declared())
    assert (found.gpus, found.gpu_model, found.gpu_memory_mib) == (2, "AMD Instinct MI300X",
                                                                   196592)
    assert found.labels[LABEL_VENDOR] == "amd"
    declared = host.host_facts(host.Declared(gpus=4, gpu_model="trn1", vendor="aws"))
    assert declared.labels[LABEL_VENDOR] == "aws"
    assert LABEL_VENDOR not in host.host_facts(host.Declared(gpus=0)).labels
