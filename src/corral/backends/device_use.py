"""What each GPU is doing, measured: compute utilisation and memory in use, per device.

Allocation (what corral placed on a device) is not use: a job can hold 8 GPUs and keep 3% of
them busy. The vendor probes (`nvml.py`, `amdsmi_probe.py`) sample, per device and at the
health probe's interval:

- NVIDIA, through NVML: `nvmlDeviceGetUtilizationRates(handle).gpu` (percent of the last sample
  period, 1/6 s to 1 s depending on the product, during which a kernel ran) and
  `nvmlDeviceGetMemoryInfo(handle, version=nvmlMemory_v2)` (`used` without the driver's
  reserved memory, as nvidia-smi shows it; v1 where the driver has no v2), `total`, bytes;
- AMD, through amdsmi: `amdsmi_get_gpu_activity(handle)["gfx_activity"]` (percent) and
  `amdsmi_get_gpu_vram_usage(handle)` (`vram_used`, `vram_total`, MB).

A device that errors on a query, or a value the library reports as unavailable ("N/A"), gives
no sample for that device: a sample is only what was measured. Missing library: no samples at
all. Sampling never fails a heartbeat or a health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DeviceUse", "amdsmi_use", "nvml_use"]

_MB = 2**20  # amdsmi's "MB" for VRAM is MiB (vram_size of a 192 GB MI300X reads 196608)


@dataclass(frozen=True, slots=True)
class DeviceUse:
    """One device's measured use at `sampled_at` (the sampler's clock)."""

    index: int
    sampled_at: float
    #: compute utilisation, 0..1 (the vendor's percent / 100)
    utilization: float
    memory_used_bytes: int
    memory_total_bytes: int


def nvml_use(nvml: Any, index: int, now: float) -> DeviceUse | None:
    """Device `index`'s use through an NVML session; None when a query fails."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        rates = nvml.nvmlDeviceGetUtilizationRates(handle)
        memory = _memory(nvml, handle)
        return _use(index, now, rates.gpu, int(memory.used), int(memory.total))
    except Exception:  # NVMLError, or a driver without the query: no sample for this device
        return None


def _memory(nvml: Any, handle: Any) -> Any:
    """`nvmlDeviceGetMemoryInfo_v2` where the library and driver have it: its `used` leaves out
    the driver's reserved memory, as nvidia-smi does (v1's `used` counts it: 615 MiB "used" on
    an idle H200 that nvidia-smi shows at 0, measured 2026-12-04); else v1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except nvml.NVMLError:
            pass  # a driver before v2 (NVML_ERROR_FUNCTION_NOT_FOUND): v1 below
    return nvml.nvmlDeviceGetMemoryInfo(handle)


def amdsmi_use(amdsmi: Any, index: int, handle: Any, now: float) -> DeviceUse | None:
    """An AMD device's use through amdsmi; None when a query fails or answers "N/A"."""
    try:
        activity: Mapping[str, Any] = amdsmi.amdsmi_get_gpu_activity(handle)
        vram: Mapping[str, Any] = amdsmi.amdsmi_get_gpu_vram_usage(handle)
        return _use(index, now, activity["gfx_activity"], int(vram["vram_used"]) * _MB,
                    int(vram["vram_total"]) * _MB)
    except Exception:  # AmdSmiLibraryException, a missing key, "N/A" (not an int)
        return None


def _use(index: int, now: float, percent: Any, used: int, total: int) -> DeviceUse | None:
    busy = float(percent)  # raises on "N/A": the caller turns that into no sample
    if not 0 <= busy <= 100 or used < 0 or total <= 0:
        return None  # not a measurement (a sentinel such as 0xFFFFFFFF)
    return DeviceUse(index, now, busy / 100, used, total)
