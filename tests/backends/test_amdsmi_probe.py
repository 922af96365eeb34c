"""AMD GPUs through amdsmi, and an agent host's vendor.

No AMD GPU and no amdsmi here: `amdsmi` is a fake module injected into sys.modules below, with
the calls, enums and exception of AMD SMI's Python API that corral uses (shapes as documented at
rocm.docs.amd.com/projects/amdsmi); what it cannot show is a real driver's answers.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

import pytest

from corral.agent import host
from corral.backends.amdsmi_probe import AmdSmiHealthProbe, local_amd_gpus
from corral.backends.health import MemoryRepair, Severity, device_checks
from corral.core.model import LABEL_VENDOR


class RetCode(enum.IntEnum):
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
                        ("amdsmi_get_gpu_bad_page_info", "pages")):
        setattr(m, name, answer(field))
    return m


def mi300x(**fields: Any) -> dict[str, Any]:
    return {"asic": {"market_name": "AMD Instinct MI300X", "asic_serial": "0x1"},
            "vram": {"vram_size": 196592}, "ecc": {"uncorrectable_count": 0}, "replays": 0,
            "temp": 45, "pages": [], **fields}


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
