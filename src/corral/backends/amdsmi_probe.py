"""AMD GPUs' health through amdsmi (ROCm's AMD SMI Python library), imported lazily.

Optional: without the `amdsmi` package (it ships with ROCm, not on PyPI for every ROCm release)
or without the amdgpu driver, `AmdSmiHealthProbe` is unavailable and says why; nothing here
raises because a machine has no AMD GPU. What it asks, per device, from the AMD SMI Python API
(rocm.docs.amd.com/projects/amdsmi, "Python library API"):

- `amdsmi_get_gpu_total_ecc_count`: `uncorrectable_count` (drain, as NVML's uncorrected ECC);
- `amdsmi_get_gpu_bad_page_info`: retired pages, by status: `PENDING` waits for a reset (warn),
  `UNRESERVABLE` is memory the driver could not retire (drain, as a failed row remap);
- `amdsmi_get_temp_metric` (HOTSPOT, CURRENT): the temperature thresholds;
- `amdsmi_get_gpu_pci_replay_counter`: PCIe replay growth since the previous check (warn);
- that the device still answers (an error other than "not supported" is a failed query).

Not here: XGMI link errors and the driver's event stream (amdsmi's event reader needs a thread
per device); AMD's ECC counts are cumulative, not since the driver loaded. The checks and their
severities are `corral.backends.health`'s.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from corral.backends.health import DeviceHealth, GpuHealthProbe, MemoryRepair
from corral.backends.nvml import GpuInfo

__all__ = ["AmdSmiHealthProbe", "load_amdsmi", "local_amd_gpus"]


def load_amdsmi() -> tuple[ModuleType | None, str]:
    """Import amdsmi and initialise it: (module, "") or (None, why not)."""
    try:
        amdsmi = importlib.import_module("amdsmi")
    except ImportError:
        return None, "amdsmi is not installed (it comes with ROCm: /opt/rocm/share/amd_smi)"
    try:
        amdsmi.amdsmi_init()
    except Exception as e:  # AmdSmiLibraryException and the like: no driver, no device
        return None, f"amdsmi did not start: {e} (is the amdgpu driver loaded?)"
    return amdsmi, ""


def local_amd_gpus() -> list[GpuInfo]:
    """This machine's AMD GPUs (name from `amdsmi_get_gpu_asic_info`'s market_name, memory
    from `amdsmi_get_gpu_vram_info`'s vram_size in MB); [] without amdsmi or a driver."""
    amdsmi, _ = load_amdsmi()
    if amdsmi is None:
        return []
    try:
        gpus = []
        for i, h in enumerate(amdsmi.amdsmi_get_processor_handles()):
            info = amdsmi.amdsmi_get_gpu_asic_info(h)
            vram = amdsmi.amdsmi_get_gpu_vram_info(h)
            gpus.append(GpuInfo(i, str(info.get("market_name", "AMD GPU")),
                                str(info.get("asic_serial", "")), int(vram.get("vram_size", 0))))
        return gpus
    except Exception:  # the library answered init, then not: no usable GPUs to declare
        return []
    finally:
        amdsmi.amdsmi_shut_down()


class AmdSmiHealthProbe(GpuHealthProbe):
    """Health of this machine's AMD GPUs (module docstring for what it asks)."""

    def __init__(self) -> None:
        self._amdsmi, self.unavailable_reason = load_amdsmi()
        self.available = self._amdsmi is not None
        self._replays: dict[int, int] = {}

    def check(self, now: float) -> list[DeviceHealth]:
        amdsmi = self._amdsmi
        if amdsmi is None:
            return []
        try:
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as e:
            return [DeviceHealth(index=0, checked_at=now, error=f"amdsmi cannot list GPUs: {e}")]
        return [self._device(amdsmi, i, h, now) for i, h in enumerate(handles)]

    def _device(self, amdsmi: Any, index: int, handle: Any, now: float) -> DeviceHealth:
        try:
            info = _ask(amdsmi, amdsmi.amdsmi_get_gpu_asic_info, handle) or {}
            ecc = _ask(amdsmi, amdsmi.amdsmi_get_gpu_total_ecc_count, handle)
            replays = _ask(amdsmi, amdsmi.amdsmi_get_gpu_pci_replay_counter, handle)
            return DeviceHealth(
                index=index, checked_at=now, name=str(info.get("market_name", "")),
                ecc_uncorrected_volatile=None if ecc is None else int(
                    ecc.get("uncorrectable_count", 0)),
                temperature_c=_temperature(amdsmi, handle),
                memory_repair=_bad_pages(amdsmi, handle),
                pcie_replays=self._growth(index, replays))
        except Exception as e:  # the device stopped answering
            return DeviceHealth(index=index, checked_at=now, error=f"amdsmi: {e}")

    def _growth(self, index: int, value: Any) -> int | None:
        if value is None:
            return None
        last, self._replays[index] = self._replays.get(index), int(value)
        return None if last is None else max(0, int(value) - last)

    def close(self) -> None:
        amdsmi, self._amdsmi = self._amdsmi, None
        if amdsmi is not None:
            amdsmi.amdsmi_shut_down()


def _not_supported(amdsmi: Any, error: Exception) -> bool:
    codes = getattr(amdsmi, "AmdSmiRetCode", None)
    wanted = {getattr(codes, n, None) for n in ("STATUS_NOT_SUPPORTED", "STATUS_NOT_YET_IMPLEMENTED",
                                                "STATUS_NO_PERM")} - {None}
    get_code = getattr(error, "get_error_code", None)
    return get_code is not None and get_code() in wanted


def _ask(amdsmi: Any, query: Any, *args: Any) -> Any:
    """The query's answer; None when the device does not support it."""
    try:
        return query(*args)
    except Exception as e:
        if _not_supported(amdsmi, e):
            return None
        raise


def _temperature(amdsmi: Any, handle: Any) -> int | None:
    kind, metric = amdsmi.AmdSmiTemperatureType, amdsmi.AmdSmiTemperatureMetric
    value = _ask(amdsmi, amdsmi.amdsmi_get_temp_metric, handle, kind.HOTSPOT, metric.CURRENT)
    return None if value is None else int(value)


def _bad_pages(amdsmi: Any, handle: Any) -> MemoryRepair:
    pages = _ask(amdsmi, amdsmi.amdsmi_get_gpu_bad_page_info, handle)
    if pages is None:
        return MemoryRepair.NOT_CHECKED
    status = amdsmi.AmdSmiMemoryPageStatus
    seen = {p.get("status") for p in pages if isinstance(p, dict)}
    if status.UNRESERVABLE in seen:
        return MemoryRepair.FAILED
    return MemoryRepair.RESET_PENDING if status.PENDING in seen else MemoryRepair.OK
