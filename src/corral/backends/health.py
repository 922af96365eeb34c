"""GPU health: what a probe reports per device, and the pure verdict for the node.

A `GpuHealthProbe` looks at the devices of one machine (`corral.backends.nvml.NvmlHealthProbe`
through NVML; `FakeGpuHealthProbe` in tests). `node_verdict` turns its report into the node's
`Health` and a reason: HEALTHY (take new work), DEGRADED (keep running work, take none new: it
wants a reset at the next drain), UNHEALTHY (stop placing work; what runs there is at risk).

A node is as healthy as its worst device: the pool model has one health per node, and a broken GPU
often takes its NVLink peers' collectives down with it.

Which XIDs mean what follows NVIDIA's XID catalogue and, for the ones to ignore, the NVIDIA
Kubernetes device plugin, which treats 13, 31, 43, 45 and 68 as errors of the application (a bad
kernel, a page fault) that leave the GPU healthy.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from corral.core.model import Health

__all__ = [
    "APPLICATION_XIDS",
    "DEGRADING_XIDS",
    "DeviceHealth",
    "FakeGpuHealthProbe",
    "GpuHealthProbe",
    "HealthThresholds",
    "MemoryRepair",
    "NodeVerdict",
    "device_verdict",
    "node_verdict",
]

APPLICATION_XIDS: Final = frozenset({13, 31, 43, 45, 68})
# The GPU still works, but needs a reset (at the next drain) to stay that way.
DEGRADING_XIDS: Final = frozenset({63, 92, 94})
XID_NAMES: Final = {
    13: "graphics engine exception", 31: "GPU memory page fault", 43: "GPU stopped processing",
    45: "preemptive cleanup", 48: "double-bit ECC error", 61: "internal micro-controller "
    "breakpoint", 62: "internal micro-controller halt", 63: "memory row remap/page retirement "
    "recorded", 64: "memory row remap/page retirement failed", 68: "video processor exception",
    74: "NVLink error", 79: "GPU has fallen off the bus", 92: "high single-bit ECC error rate",
    94: "contained ECC error", 95: "uncontained ECC error", 119: "GSP RPC timeout",
    120: "GSP error",
}


class MemoryRepair(enum.StrEnum):
    """What the driver says of the device memory's own repair machinery, through NVML.

    The probe reads the memory info (total/used/free) and the row remapper's counters (Ampere and
    later), or the pages retired and waiting for a reset (before Ampere). It does not allocate,
    write or read back device memory: NVML cannot, and a CUDA context in the control plane would
    take memory from the jobs and fail on GPUs in exclusive-process mode. A memory fault that
    neither the ECC counters, an XID nor the remapper has recorded is not seen here.
    """

    OK = "ok"  # memory info readable; nothing pending or failed (or nothing more to ask)
    RESET_PENDING = "reset-pending"  # a row remap or page retirement waits for a GPU reset
    FAILED = "failed"  # the row remapper failed: the memory has errors it cannot repair
    UNREADABLE = "unreadable"  # the memory info query failed (not "unsupported")
    NOT_CHECKED = "not-checked"  # the device does not support the memory info query


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One device as the probe saw it at `checked_at` (the caller's clock).

    xids: the distinct critical XIDs seen since the probe started, in the order first seen.
    memory_repair: see `MemoryRepair` (no allocation test: nothing is written to the device).
    error: set when querying the device failed (for example "GPU is lost"); the device is then
    unusable whatever the other fields say. None in a field means "not supported by the device".
    """

    index: int
    checked_at: float
    uuid: str = ""
    name: str = ""
    xids: tuple[int, ...] = ()
    ecc_uncorrected_volatile: int | None = None
    temperature_c: int | None = None
    memory_repair: MemoryRepair = MemoryRepair.NOT_CHECKED
    error: str = ""


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    temperature_degraded_c: int = 85
    temperature_unhealthy_c: int = 95
    ignored_xids: frozenset[int] = APPLICATION_XIDS
    degrading_xids: frozenset[int] = DEGRADING_XIDS


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """health and the reason for it. checked is False when no probe could look at the GPUs."""

    health: Health
    reason: str
    checked: bool = True


_RANK: Final = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def device_verdict(
    device: DeviceHealth, thresholds: HealthThresholds = HealthThresholds(),
) -> tuple[Health, list[str]]:
    """The device's health and every problem found (empty when healthy). Pure."""
    found: list[tuple[Health, str]] = []
    if device.error:
        found.append((Health.UNHEALTHY, device.error))
    for xid in device.xids:
        if xid in thresholds.ignored_xids:
            continue
        level = Health.DEGRADED if xid in thresholds.degrading_xids else Health.UNHEALTHY
        found.append((level, f"xid {xid} ({XID_NAMES.get(xid, 'see NVIDIA XID catalogue')})"))
    if device.ecc_uncorrected_volatile:
        found.append((Health.UNHEALTHY, f"{device.ecc_uncorrected_volatile} uncorrected ECC "
                      "errors since the driver loaded (needs a GPU reset)"))
    if device.memory_repair == MemoryRepair.FAILED:
        found.append((Health.UNHEALTHY, "row remapping failed (memory errors it cannot repair)"))
    elif device.memory_repair == MemoryRepair.UNREADABLE:
        found.append((Health.UNHEALTHY, "memory info unreadable"))
    elif device.memory_repair == MemoryRepair.RESET_PENDING:
        found.append((Health.DEGRADED, "memory repair waits for a GPU reset"))
    found.extend(_temperature(device.temperature_c, thresholds))
    if not found:
        return Health.HEALTHY, []
    worst = max((h for h, _ in found), key=_RANK.__getitem__)
    return worst, [text for _, text in found]


def _temperature(temperature_c: int | None, t: HealthThresholds) -> list[tuple[Health, str]]:
    if temperature_c is None:
        return []
    if temperature_c >= t.temperature_unhealthy_c:
        return [(Health.UNHEALTHY, f"{temperature_c} C >= {t.temperature_unhealthy_c} C")]
    if temperature_c >= t.temperature_degraded_c:
        return [(Health.DEGRADED, f"{temperature_c} C >= {t.temperature_degraded_c} C")]
    return []


def node_verdict(
    devices: Sequence[DeviceHealth], *, expected_devices: int | None = None,
    unavailable_reason: str = "", thresholds: HealthThresholds = HealthThresholds(),
) -> NodeVerdict:
    """The node's health from its devices' reports. Pure.

    expected_devices: how many GPUs the node should have (its inventory), None when it has no
    real GPUs to check (a virtual inventory). A device missing from the report is a device the
    driver no longer sees, typically one that fell off the bus. unavailable_reason: why the
    probe could not run (no NVML); the node is then UNHEALTHY if it should have GPUs, else
    HEALTHY but unchecked.

    Example: devices 0 (healthy) and 1 (xid 79), expected 2 ->
    NodeVerdict(UNHEALTHY, "gpu 1: xid 79 (GPU has fallen off the bus)").
    """
    if unavailable_reason:
        if expected_devices:
            return NodeVerdict(Health.UNHEALTHY, f"expected {expected_devices} GPUs but cannot "
                               f"check them: {unavailable_reason}", checked=False)
        return NodeVerdict(Health.HEALTHY, f"GPU health not checked: {unavailable_reason}",
                           checked=False)
    problems: list[tuple[Health, str]] = []
    if expected_devices is not None and len(devices) < expected_devices:
        seen = {d.index for d in devices}
        missing = [str(i) for i in range(expected_devices) if i not in seen] or ["?"]
        problems.append((Health.UNHEALTHY, f"expected {expected_devices} GPUs, the driver sees "
                         f"{len(devices)} (missing: {', '.join(missing)})"))
    for device in sorted(devices, key=lambda d: d.index):
        health, found = device_verdict(device, thresholds)
        if found:
            problems.append((health, f"gpu {device.index}: {'; '.join(found)}"))
    if not problems:
        return NodeVerdict(Health.HEALTHY, f"all {len(devices)} GPUs healthy")
    worst = max((h for h, _ in problems), key=_RANK.__getitem__)
    return NodeVerdict(worst, " | ".join(text for h, text in problems if h == worst))


class GpuHealthProbe(abc.ABC):
    """Looks at the GPUs of this machine.

    `available` is False when the probe cannot look at all (no NVML library, no driver), with the
    reason in `unavailable_reason`; `check` then returns []. Probes hold resources (NVML handles,
    an event set): `close` them, or use them as context managers.
    """

    available: bool = True
    unavailable_reason: str = ""

    @abc.abstractmethod
    def check(self, now: float) -> list[DeviceHealth]:
        """The state of every device the driver sees now, `checked_at=now`. Never raises for a
        broken device: that is a DeviceHealth with `error` set."""

    def close(self) -> None:  # noqa: B027 - an optional hook: most probes hold nothing
        """Release what the probe holds. Idempotent."""

    def __enter__(self) -> GpuHealthProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class FakeGpuHealthProbe(GpuHealthProbe):
    """A probe whose devices a test sets (`devices`), or that is unavailable."""

    devices: list[DeviceHealth] = field(default_factory=list)
    available: bool = True
    unavailable_reason: str = ""

    def check(self, now: float) -> list[DeviceHealth]:
        if not self.available:
            return []
        return [replace(d, checked_at=now) for d in self.devices]
