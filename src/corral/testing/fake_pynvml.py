"""A stand-in for the `pynvml` module (nvidia-ml-py), for tests on machines without GPUs.

It mimics the calls corral.backends.nvml makes, with the same names, constants, error class
(an `NVMLError` carrying `.value`) and return shapes as nvidia-ml-py 12/13. Install it with
`monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(...).module())`.

In another process (a real `corral agent` in a test): `install_shim(folder, state_file)` writes
a `pynvml.py` into `folder` that serves the GPUs described in `state_file` (JSON, re-read on
every call, so the test changes a GPU's state while the agent runs); put `folder` first on the
process's PYTHONPATH. Nothing here touches a GPU.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NVML_ERROR_NOT_SUPPORTED: "Not Supported", NVML_ERROR_TIMEOUT: "Timeout",
                NVML_ERROR_GPU_IS_LOST: "GPU is lost",
                NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded"}.get(self.value, "Unknown")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    memory_mib: int = 81559
    temperature_c: int | None = 40
    ecc_uncorrected: int | None = 0
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)  # None: not supported
    retired_pages_pending: int | None = None  # None: not supported
    lost: bool = False  # every query raises GPU_IS_LOST
    supports_events: bool = True
    clocks_event_reasons: int | None = 0  # NVML's reason mask; None: not supported
    pcie_replays: int | None = 0  # cumulative; None: not supported
    nvlink_errors: list[int] | None = None  # per link, cumulative (all counters); None: no NVLink
    utilization_pct: int | None = 0  # nvmlDeviceGetUtilizationRates' gpu; None: not supported
    memory_used_mib: int = 0  # by work, as nvidia-smi shows it (v2's used)
    memory_reserved_mib: int = 0  # the driver's: v1's used counts it, v2's does not
    memory_v2: bool = True  # False: a driver without nvmlDeviceGetMemoryInfo_v2


@dataclass
class FakeNvml:
    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None
    pending_xids: list[tuple[int, int]] = field(default_factory=list)  # (device index, xid)
    inits: int = 0
    shutdowns: int = 0
    registered: list[int] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        m.NVMLError = NVMLError  # type: ignore[attr-defined]
        for name, value in globals().items():
            if name.startswith("NVML_ERROR_"):
                setattr(m, name, value)
        m.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1  # type: ignore[attr-defined]
        m.NVML_VOLATILE_ECC = 0  # type: ignore[attr-defined]
        m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
        m.nvmlEventTypeXidCriticalError = 0x8  # type: ignore[attr-defined]
        m.NVML_NVLINK_MAX_LINKS = 4  # type: ignore[attr-defined]
        m.nvmlMemory_v2 = 0x02000028  # type: ignore[attr-defined]
        for i, name in enumerate(("REPLAY", "RECOVERY", "CRC_FLIT", "CRC_DATA")):
            setattr(m, f"NVML_NVLINK_ERROR_DL_{name}", i)
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(m, name, getattr(self, name))
        return m

    def _gpu(self, handle: int) -> FakeGpu:
        gpu = self.gpus[handle]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)
        return index  # handles are opaque; an int will do

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu(handle).name

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        self._gpu(handle)
        return f"GPU-0000000{handle}".encode()  # older releases return bytes

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        gpu = self._gpu(handle)
        if version is not None and not gpu.memory_v2:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        used = (gpu.memory_used_mib + (0 if version else gpu.memory_reserved_mib)) * 2**20
        return types.SimpleNamespace(total=gpu.memory_mib * 2**20, used=used,
                                     free=gpu.memory_mib * 2**20 - used)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        pct = self._gpu(handle).utilization_pct
        if pct is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(gpu=pct, memory=0)  # nvmlUtilization_t: percents

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        value = self._gpu(handle).temperature_c
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter: int) -> int:
        assert (error_type, counter) == (1, 0), "volatile uncorrected errors are the ones asked"
        value = self._gpu(handle).ecc_uncorrected
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetRemappedRows(self, handle: int) -> tuple[int, int, int, int]:
        rows = self._gpu(handle).remapped_rows
        if rows is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return rows

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: int) -> int:
        pending = self._gpu(handle).retired_pages_pending
        if pending is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return pending

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        mask = self._gpu(handle).clocks_event_reasons
        if mask is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return mask

    def nvmlDeviceGetPcieReplayCounter(self, handle: int) -> int:
        value = self._gpu(handle).pcie_replays
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetNvLinkErrorCounter(self, handle: int, link: int, counter: int) -> int:
        links = self._gpu(handle).nvlink_errors
        if links is None or link >= len(links):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return links[link] if counter == 2 else 0  # the test's errors are CRC flit errors

    def nvmlEventSetCreate(self) -> str:
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle: int, types_mask: int, event_set: str) -> None:
        if not self.gpus[handle].supports_events:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        assert types_mask & 0x8
        self.registered.append(handle)

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int) -> Any:
        assert timeout_ms == 0, "the probe must never block"
        if not self.pending_xids:
            raise NVMLError(NVML_ERROR_TIMEOUT)
        device, xid = self.pending_xids.pop(0)
        return types.SimpleNamespace(device=device, eventType=0x8, eventData=xid)

    def nvmlEventSetFree(self, event_set: str) -> None:
        pass


class FileBackedNvml(FakeNvml):
    """A FakeNvml whose GPUs and pending XIDs are re-read from a JSON file on every call that
    starts a look at the devices: {"gpus": [{FakeGpu fields}], "pending_xids": [[gpu, xid]]}."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._reload()

    def _reload(self) -> None:
        with open(self.path) as f:
            state = json.load(f)
        self.gpus = [FakeGpu(**g) for g in state.get("gpus", [])]
        self.pending_xids = [tuple(x) for x in state.get("pending_xids", [])]

    def nvmlDeviceGetCount(self) -> int:
        self._reload()
        return len(self.gpus)


def install_shim(folder: Path, state_file: Path) -> Path:
    """Write `folder`/pynvml.py serving `state_file` (module docstring); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "pynvml.py"
    shim.write_text(
        "# corral.testing.fake_pynvml's shim: a fake NVML for tests, not NVIDIA's library\n"
        "import sys\n"
        "from corral.testing.fake_pynvml import FileBackedNvml\n"
        f"sys.modules[__name__] = FileBackedNvml({str(state_file)!r}).module()\n")
    return shim
