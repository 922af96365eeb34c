"""NVML, imported lazily: this machine's GPUs (for the local inventory) and their health.

`pynvml` comes from the `nvidia-ml-py` package (extra `gpu`). Without it, or without an NVIDIA
driver, everything here answers cleanly: `local_gpus()` returns [], `NvmlHealthProbe` is
unavailable and says why. Nothing here raises because a machine has no GPU.

Every NVML session is opened and closed by the caller here (`nvmlInit` is reference counted, so
nested sessions are fine).
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from corral.backends.device_use import DeviceUse, nvml_use
from corral.backends.health import DeviceHealth, GpuHealthProbe, MemoryRepair

__all__ = ["GpuInfo", "NvmlHealthProbe", "load_nvml", "local_gpus"]

_MIB = 2**20


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_mib: int


def load_nvml() -> tuple[ModuleType | None, str]:
    """Import pynvml and start an NVML session: (module, "") or (None, why not).

    The caller ends a successful session with `module.nvmlShutdown()`.
    """
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install 'corral[gpu]')"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        return None, f"NVML did not start: {e} (is the NVIDIA driver loaded?)"
    return nvml, ""


def local_gpus() -> list[GpuInfo]:
    """This machine's GPUs in NVML (PCI bus) order; [] without NVML or a driver."""
    nvml, _ = load_nvml()
    if nvml is None:
        return []
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(i, _text(nvml.nvmlDeviceGetName(handle)),
                                _text(nvml.nvmlDeviceGetUUID(handle)), int(memory.total) // _MIB))
        return gpus
    except nvml.NVMLError:
        return []
    finally:
        nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlHealthProbe(GpuHealthProbe):
    """Health of this machine's GPUs through NVML. Exactly what it asks, per device:

    - critical XID events (`nvmlEventTypeXidCriticalError`), collected without blocking from an
      event set registered when the probe starts, and kept until it closes;
    - volatile uncorrected ECC errors (`nvmlDeviceGetTotalEccErrors`, since the driver loaded);
    - the GPU temperature (`nvmlDeviceGetTemperature`);
    - memory repair (`MemoryRepair`): the memory info must be readable
      (`nvmlDeviceGetMemoryInfo`), and the row remapper (`nvmlDeviceGetRemappedRows`, Ampere and
      later) must neither have failed nor wait for a reset; before Ampere, retired pages waiting
      for a reset (`nvmlDeviceGetRetiredPagesPendingStatus`) count as a pending repair;
    - that the device still answers at all (an error such as "GPU is lost" makes it unusable;
      NVML_ERROR_GPU_IS_LOST is told apart, `DeviceHealth.lost`);
    - the clocks' slowdown reasons (`nvmlDeviceGetCurrentClocksEventReasons`, formerly
      ...ThrottleReasons): HW slowdown, HW/SW thermal slowdown, HW power brake (`THROTTLE_NAMES`);
    - the PCIe replay counter (`nvmlDeviceGetPcieReplayCounter`) and every NVLink's CRC, replay
      and recovery error counters (`nvmlDeviceGetNvLinkErrorCounter`): their growth since the
      probe's previous check (the first check only sets the baseline).

    Nothing is allocated on, written to or read back from the device: NVML cannot, and a CUDA
    context in the control plane would take memory from the jobs. Queries a device does not
    support are skipped (None, or `MemoryRepair.NOT_CHECKED`), never a fault.
    """

    def __init__(self) -> None:
        self._nvml, self.unavailable_reason = load_nvml()
        self.available = self._nvml is not None
        self._events: Any = None
        self._xids: dict[int, list[int]] = {}
        self._counters: dict[tuple[int, str], int] = {}  # (device, counter) -> last value
        if self._nvml is not None:
            self._register_xid_events(self._nvml)

    def _register_xid_events(self, nvml: Any) -> None:
        try:
            self._events = nvml.nvmlEventSetCreate()
            for i in range(nvml.nvmlDeviceGetCount()):
                # Unsupported on this device, or it is already lost: check() will say so.
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlDeviceRegisterEvents(
                        nvml.nvmlDeviceGetHandleByIndex(i), nvml.nvmlEventTypeXidCriticalError,
                        self._events)
        except nvml.NVMLError:
            self._events = None

    def check(self, now: float) -> list[DeviceHealth]:
        nvml = self._nvml
        if nvml is None:
            return []
        self._drain_xids(nvml)
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as e:
            return [DeviceHealth(index=0, checked_at=now, error=f"NVML cannot count GPUs: {e}")]
        return [self._device(nvml, i, now) for i in range(count)]

    def _drain_xids(self, nvml: Any) -> None:
        if self._events is None:
            return
        while True:
            try:
                event = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError:
                return  # NVML_ERROR_TIMEOUT: nothing more queued (or the set broke)
            if event.eventType & nvml.nvmlEventTypeXidCriticalError:
                try:
                    index = nvml.nvmlDeviceGetIndex(event.device)
                except nvml.NVMLError:
                    continue
                seen = self._xids.setdefault(index, [])
                if int(event.eventData) not in seen:
                    seen.append(int(event.eventData))

    def _device(self, nvml: Any, index: int, now: float) -> DeviceHealth:
        xids = tuple(self._xids.get(index, ()))
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            return DeviceHealth(
                index=index, checked_at=now, uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)), xids=xids,
                ecc_uncorrected_volatile=_unless_unsupported(
                    nvml, nvml.nvmlDeviceGetTotalEccErrors, handle,
                    nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC),
                temperature_c=_unless_unsupported(
                    nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
                memory_repair=_memory_repair(nvml, handle),
                throttle_reasons=_throttle_reasons(nvml, handle),
                pcie_replays=self._growth(index, "pcie", _unless_unsupported(
                    nvml, getattr(nvml, "nvmlDeviceGetPcieReplayCounter", _missing), handle)),
                nvlink_errors=self._growth(index, "nvlink", _nvlink_errors(nvml, handle)),
            )
        except nvml.NVMLError as e:
            # Anything but "not supported" means the device is in trouble ("GPU is lost").
            lost = getattr(e, "value", None) == getattr(nvml, "NVML_ERROR_GPU_IS_LOST", -1)
            return DeviceHealth(index=index, checked_at=now, xids=xids, error=f"NVML: {e}",
                                lost=lost)

    def sample(self, now: float) -> list[DeviceUse]:
        """Utilisation and memory per device (`corral.backends.device_use`)."""
        nvml = self._nvml
        if nvml is None:
            return []
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError:
            return []  # check() reports that; a sample is only what was measured
        return [u for u in (nvml_use(nvml, i, now) for i in range(count)) if u is not None]

    def _growth(self, index: int, counter: str, value: int | None) -> int | None:
        """How much a cumulative counter grew since the last check; None on the first."""
        if value is None:
            return None
        last = self._counters.get((index, counter))
        self._counters[(index, counter)] = value
        return None if last is None else max(0, value - last)

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        if self._events is not None:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlEventSetFree(self._events)
            self._events = None
        nvml.nvmlShutdown()


def _unsupported(nvml: Any, error: Exception) -> bool:
    """Whether an NVML error only means "this device or driver cannot answer that"."""
    quiet = {getattr(nvml, name, None) for name in (
        "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_FUNCTION_NOT_FOUND")}
    return getattr(error, "value", None) in quiet


def _unless_unsupported(nvml: Any, query: Any, *args: Any) -> int | None:
    """The query's answer as an int, None when unsupported; other NVML errors propagate."""
    try:
        return int(query(*args))
    except _NotInThisNvml:
        return None
    except nvml.NVMLError as e:
        if _unsupported(nvml, e):
            return None
        raise


#: the clock slowdown reasons that mean trouble, by their bit in NVML's reason mask (nvml.h's
#: nvmlClocksEventReason*; the same bits as the older nvmlClocksThrottleReason*). Left out: GPU
#: idle, application clocks, the SW power cap and sync boost, which are normal operation.
THROTTLE_NAMES: Final = {
    0x8: "hw-slowdown", 0x20: "sw-thermal-slowdown", 0x40: "hw-thermal-slowdown",
    0x80: "hw-power-brake-slowdown",
}
_NVLINK_COUNTERS: Final = ("NVML_NVLINK_ERROR_DL_REPLAY", "NVML_NVLINK_ERROR_DL_RECOVERY",
                           "NVML_NVLINK_ERROR_DL_CRC_FLIT", "NVML_NVLINK_ERROR_DL_CRC_DATA")


def _missing(*_args: Any) -> int:
    raise _NotInThisNvml


class _NotInThisNvml(Exception):
    """An nvidia-ml-py too old to have the query: treated as unsupported."""


def _throttle_reasons(nvml: Any, handle: Any) -> tuple[str, ...]:
    query = (getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
             or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
    if query is None:
        return ()
    mask = _unless_unsupported(nvml, query, handle)
    if mask is None:
        return ()
    return tuple(name for bit, name in THROTTLE_NAMES.items() if mask & bit)


def _nvlink_errors(nvml: Any, handle: Any) -> int | None:
    """The sum of every active NVLink's error counters; None without NVLink."""
    query = getattr(nvml, "nvmlDeviceGetNvLinkErrorCounter", None)
    counters = [getattr(nvml, c) for c in _NVLINK_COUNTERS if hasattr(nvml, c)]
    if query is None or not counters:
        return None
    total, any_link = 0, False
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
        try:
            values = [int(query(handle, link, c)) for c in counters]
        except nvml.NVMLError:
            continue  # no such link on this device, or it is down: nothing to count
        total, any_link = total + sum(values), True
    return total if any_link else None


def _memory_repair(nvml: Any, handle: Any) -> MemoryRepair:
    try:
        nvml.nvmlDeviceGetMemoryInfo(handle)
    except nvml.NVMLError as e:
        if _unsupported(nvml, e):
            return MemoryRepair.NOT_CHECKED
        return MemoryRepair.UNREADABLE
    try:
        _corrected, _uncorrected, pending, failed = nvml.nvmlDeviceGetRemappedRows(handle)
    except nvml.NVMLError as e:
        if not _unsupported(nvml, e):
            raise
        return _page_retirement(nvml, handle)
    if failed:
        return MemoryRepair.FAILED
    return MemoryRepair.RESET_PENDING if pending else MemoryRepair.OK


def _page_retirement(nvml: Any, handle: Any) -> MemoryRepair:
    """Before Ampere: retired pages that wait for a reset play the part of pending remaps."""
    try:
        pending = nvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)
    except nvml.NVMLError as e:
        if not _unsupported(nvml, e):
            raise
        return MemoryRepair.OK  # memory info was readable; nothing more to ask this device
    return MemoryRepair.RESET_PENDING if pending else MemoryRepair.OK
