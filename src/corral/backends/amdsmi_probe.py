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
- `amdsmi_gpu_xgmi_error_status`: the XGMI (GPU-to-GPU link) error state, `AmdSmiXgmiStatus`
  ERROR or MULTIPLE_ERRORS (warn `xgmi-errors`, as NVLink errors: collectives slow or fail over
  that link). The state is sticky until `amdsmi_reset_gpu_xgmi_error`, which corral never calls
  (it needs root and erases the evidence): an operator resets it after the repair;
- the driver's events, through `AmdSmiEventReader(handle, [types])` per device and a
  non-blocking `read(0)` each check (no thread: amdsmi's read is a poll of every registered
  device's queue, `STATUS_NO_DATA` when empty). What they become, kept `EVENT_HOLD_S` after seen:
  GPU_PRE_RESET / GPU_POST_RESET (the driver reset the GPU: the work on it was lost; warn
  `gpu-reset`), RING_HANG where the driver has it (a hung engine; drain `ring-hang`),
  THERMAL_THROTTLE (warn `clocks-throttled`); VMFAULT is the application's page fault and is
  ignored, as NVIDIA's XID 31 is;
- that the device still answers (an error other than "not supported" is a failed query).

AMD's ECC counts are cumulative, not since the driver loaded. The checks and their severities
are `corral.backends.health`'s.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, Final

from corral.backends.device_use import DeviceUse, amdsmi_use
from corral.backends.health import DeviceHealth, GpuHealthProbe, MemoryRepair
from corral.backends.nvml import GpuInfo

__all__ = ["EVENT_HOLD_S", "AmdSmiHealthProbe", "load_amdsmi", "local_amd_gpus"]

#: how long a driver event stays in the device's report after it was read (a reset is over once
#: it happened: reported for a while, so the monitor sees it, then let go)
EVENT_HOLD_S: Final = 300.0
#: amdsmi event type -> (check name, severity); types missing from an older amdsmi are skipped
EVENT_CHECKS: Final = {
    "GPU_PRE_RESET": ("gpu-reset", "warn"), "GPU_POST_RESET": ("gpu-reset", "warn"),
    "RING_HANG": ("ring-hang", "drain"), "THERMAL_THROTTLE": ("clocks-throttled", "warn"),
}


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
        self._readers: list[Any] | None = None  # one AmdSmiEventReader per device, made once
        self._events: dict[int, list[tuple[float, str, str, str]]] = {}  # seen, name, sev, text

    def check(self, now: float) -> list[DeviceHealth]:
        amdsmi = self._amdsmi
        if amdsmi is None:
            return []
        try:
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as e:
            return [DeviceHealth(index=0, checked_at=now, error=f"amdsmi cannot list GPUs: {e}")]
        self._read_events(amdsmi, handles, now)
        return [self._device(amdsmi, i, h, now) for i, h in enumerate(handles)]

    def _read_events(self, amdsmi: Any, handles: list[Any], now: float) -> None:
        """Collect what the driver queued since the last check, without blocking."""
        if self._readers is None:
            self._readers = _event_readers(amdsmi, handles)
        # a handle is a fresh ctypes pointer per call: compared by the address it holds
        index = {_address(h): i for i, h in enumerate(handles)}
        for reader in self._readers[:1]:  # read() polls every registered device's queue
            for event in _read(amdsmi, reader):
                device = index.get(_address(event.get("processor_handle")))
                kind = getattr(event.get("event"), "name", str(event.get("event")))
                found = EVENT_CHECKS.get(kind)
                if device is not None and found is not None:
                    self._events.setdefault(device, []).append(
                        (now, found[0], found[1], f"{kind.lower()}: {event.get('message', '')}"
                         .strip()[:300]))
        for device, seen in self._events.items():
            self._events[device] = [e for e in seen if now - e[0] < EVENT_HOLD_S]

    def _device(self, amdsmi: Any, index: int, handle: Any, now: float) -> DeviceHealth:
        try:
            info = _ask(amdsmi, amdsmi.amdsmi_get_gpu_asic_info, handle) or {}
            ecc = _ask(amdsmi, amdsmi.amdsmi_get_gpu_total_ecc_count, handle)
            replays = _ask(amdsmi, amdsmi.amdsmi_get_gpu_pci_replay_counter, handle)
            events = tuple(dict.fromkeys((name, sev, text) for _, name, sev, text
                                         in self._events.get(index, ())))
            return DeviceHealth(
                index=index, checked_at=now, name=str(info.get("market_name", "")),
                ecc_uncorrected_volatile=None if ecc is None else int(
                    ecc.get("uncorrectable_count", 0)),
                temperature_c=_temperature(amdsmi, handle),
                memory_repair=_bad_pages(amdsmi, handle),
                pcie_replays=self._growth(index, replays),
                xgmi_error=_xgmi(amdsmi, handle), driver_events=events)
        except Exception as e:  # the device stopped answering
            return DeviceHealth(index=index, checked_at=now, error=f"amdsmi: {e}")

    def sample(self, now: float) -> list[DeviceUse]:
        """Activity and VRAM in use per device (`corral.backends.device_use`)."""
        amdsmi = self._amdsmi
        if amdsmi is None:
            return []
        try:
            handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception:
            return []  # check() reports that; a sample is only what was measured
        return [u for u in (amdsmi_use(amdsmi, i, h, now) for i, h in enumerate(handles))
                if u is not None]

    def _growth(self, index: int, value: Any) -> int | None:
        if value is None:
            return None
        last, self._replays[index] = self._replays.get(index), int(value)
        return None if last is None else max(0, int(value) - last)

    def close(self) -> None:
        amdsmi, self._amdsmi = self._amdsmi, None
        for reader in self._readers or ():
            with contextlib.suppress(Exception):  # closing anyway: nothing to do about it
                reader.stop()
        self._readers = None
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


def _xgmi(amdsmi: Any, handle: Any) -> str:
    """The XGMI error state in words, "" for none (or not supported: no XGMI links)."""
    query = getattr(amdsmi, "amdsmi_gpu_xgmi_error_status", None)
    status = None if query is None else _ask(amdsmi, query, handle)
    if status is None:
        return ""
    name = getattr(status, "name", str(status))
    if name in ("NO_ERRORS", "0", "AMDSMI_XGMI_STATUS_NO_ERRORS"):
        return ""
    many = "MULTIPLE" in name or name == "2"
    return ("multiple errors" if many else "an error") + " recorded on its XGMI links " \
        "(sticky until an operator resets it with amd-smi after the repair)"


def _event_readers(amdsmi: Any, handles: list[Any]) -> list[Any]:
    """An event reader per device for the event types corral acts on; [] where amdsmi has no
    event reader or the driver refuses one (no KFD access): then no events, never an error."""
    make = getattr(amdsmi, "AmdSmiEventReader", None)
    kinds = getattr(amdsmi, "AmdSmiEvtNotificationType", None)
    if make is None or kinds is None:
        return []
    wanted = [k for k in (getattr(kinds, n, None) for n in EVENT_CHECKS) if k is not None]
    readers = []
    for h in handles:
        try:
            readers.append(make(h, wanted))
        except Exception:
            return readers
    return readers


def _read(amdsmi: Any, reader: Any) -> list[dict[str, Any]]:
    """What the driver queued, without waiting; [] for none (`STATUS_NO_DATA`) or an error."""
    try:
        return [e for e in reader.read(0) if isinstance(e, dict)]
    except Exception:
        return []


def _address(handle: Any) -> Any:
    return getattr(handle, "value", handle)
