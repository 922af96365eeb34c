"""GPU health: what a probe reports per device, and the pure verdict for the node.

A `GpuHealthProbe` looks at the devices of one machine (`corral.backends.nvml.NvmlHealthProbe`
through NVML; `FakeGpuHealthProbe` in tests). `node_verdict` turns its report into the node's
`Health` and a reason: HEALTHY (take new work), DEGRADED (keep running work, take none new: it
wants a reset at the next drain), UNHEALTHY (stop placing work; what runs there is at risk).

Each problem found is a `Check`: a name, a severity and a reason sentence. DRAIN checks make the
node UNHEALTHY (no new work; running work is stopped with its grace, so it checkpoints, and
restarts elsewhere); WARN checks make it DEGRADED (no new work; running work runs on). What each
check looks at and why it has its severity:

    check             severity  signal (NVML)
    gpu-lost          drain     a query answered NVML_ERROR_GPU_IS_LOST: the GPU fell off the bus
    query-failed      drain     any other NVML error on a device that answered before
    missing           drain     fewer devices than the node should have
    xid               drain     a critical XID event (warn for 63/92/94, ignored: 13/31/43/45/68)
    ecc-uncorrected   drain     volatile uncorrected ECC errors (needs a reset; data was lost)
    memory-repair     drain     row remapping failed, or memory info unreadable
    memory-repair     warn      a row remap / page retirement waits for a GPU reset
    clocks-throttled  warn      clocks slowed for HW slowdown, HW or SW thermal slowdown, or HW
                                power brake (not the power cap: that is normal under load)
    pcie-replays      warn      PCIe replay counter grew >= `pcie_replays_warn` since last check
    nvlink-errors     warn      NVLink CRC/replay/recovery counters grew >= `nvlink_errors_warn`
    temperature       warn/drain >= 85 C / >= 95 C
    known-answer      drain     the device computed a wrong answer to a test with a known one
                                (silent data corruption: `corral.agent.known_answer`)
    xgmi-errors       warn      AMD XGMI link errors (amdsmi; `amdsmi_probe.py`)
    gpu-reset         warn      amdsmi: the driver reset the GPU (recently)
    ring-hang         drain     amdsmi: an engine of the GPU hung

The growth thresholds are corral's defaults, not vendor figures: a link that retrains or replays
a handful of times an hour is normal; hundreds between two checks is a cable, riser or switch
going bad (DCGM's health watches flag the same counters).

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

from corral.backends.device_use import DeviceUse
from corral.core.model import Health

__all__ = [
    "APPLICATION_XIDS",
    "DEGRADING_XIDS",
    "Check",
    "DeviceHealth",
    "FakeGpuHealthProbe",
    "GpuHealthProbe",
    "HealthThresholds",
    "MemoryRepair",
    "NodeVerdict",
    "Severity",
    "device_checks",
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


class Severity(enum.StrEnum):
    """What a failed check does to its node (module docstring)."""

    DRAIN = "drain"  # UNHEALTHY: running work leaves (to its checkpoint), nothing new comes
    WARN = "warn"  # DEGRADED: nothing new comes; running work runs on


@dataclass(frozen=True, slots=True)
class Check:
    """One problem a probe found: `device` is None for the node as a whole."""

    name: str
    severity: Severity
    reason: str
    device: int | None = None

    @property
    def health(self) -> Health:
        return Health.UNHEALTHY if self.severity == Severity.DRAIN else Health.DEGRADED

    def as_record(self) -> dict[str, object]:
        return {"name": self.name, "severity": str(self.severity), "reason": self.reason,
                "device": self.device}


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One device as the probe saw it at `checked_at` (the caller's clock).

    xids: the distinct critical XIDs seen since the probe started, in the order first seen.
    memory_repair: see `MemoryRepair` (no allocation test: nothing is written to the device).
    error: set when querying the device failed (for example "GPU is lost"); the device is then
    unusable whatever the other fields say; lost: that error was NVML_ERROR_GPU_IS_LOST.
    throttle_reasons: the slowdown reasons active now (`THROTTLE_NAMES`' values).
    pcie_replays, nvlink_errors: how much those counters grew since the probe's previous check
    (None: unsupported, or the first check). None in a field means "not supported by the device".
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
    lost: bool = False
    throttle_reasons: tuple[str, ...] = ()
    pcie_replays: int | None = None
    nvlink_errors: int | None = None
    #: the known-answer test's evidence when the device failed it ("" : passed or not run)
    known_answer_failed: str = ""
    #: AMD XGMI link errors seen (amdsmi's error status; "" : none or unsupported)
    xgmi_error: str = ""
    #: driver events still held (check name, severity, reason): amdsmi's GPU resets, hangs
    driver_events: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    temperature_degraded_c: int = 85
    temperature_unhealthy_c: int = 95
    ignored_xids: frozenset[int] = APPLICATION_XIDS
    degrading_xids: frozenset[int] = DEGRADING_XIDS
    #: counter growth between two checks that is worth a warning (module docstring)
    pcie_replays_warn: int = 100
    nvlink_errors_warn: int = 100


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """health and the reason for it. checked is False when no probe could look at the GPUs."""

    health: Health
    reason: str
    checked: bool = True
    checks: tuple[Check, ...] = ()


_RANK: Final = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def device_checks(
    device: DeviceHealth, thresholds: HealthThresholds = HealthThresholds(),
) -> list[Check]:
    """Every problem found on one device, as checks (module docstring's table). Pure."""
    i, t = device.index, thresholds
    found: list[Check] = []
    if device.lost:
        found.append(Check("gpu-lost", Severity.DRAIN, "GPU has fallen off the bus (NVML: GPU is "
                           "lost); it needs a reset or a reboot before it can run work", i))
    elif device.error:
        found.append(Check("query-failed", Severity.DRAIN, device.error, i))
    for xid in device.xids:
        if xid in t.ignored_xids:
            continue
        severity = Severity.WARN if xid in t.degrading_xids else Severity.DRAIN
        found.append(Check("xid", severity, f"xid {xid} "
                           f"({XID_NAMES.get(xid, 'see NVIDIA XID catalogue')})", i))
    if device.ecc_uncorrected_volatile:
        found.append(Check("ecc-uncorrected", Severity.DRAIN, f"{device.ecc_uncorrected_volatile}"
                           " uncorrected ECC errors since the driver loaded (needs a GPU reset)",
                           i))
    found.extend(_memory_repair(device.memory_repair, i))
    if device.throttle_reasons:
        found.append(Check("clocks-throttled", Severity.WARN, "clocks slowed down ("
                           f"{', '.join(device.throttle_reasons)}): work here runs slower", i))
    if device.pcie_replays is not None and device.pcie_replays >= t.pcie_replays_warn:
        found.append(Check("pcie-replays", Severity.WARN, f"{device.pcie_replays} PCIe replays "
                           "since the last check (a failing link, riser or slot)", i))
    if device.nvlink_errors is not None and device.nvlink_errors >= t.nvlink_errors_warn:
        found.append(Check("nvlink-errors", Severity.WARN, f"{device.nvlink_errors} NVLink "
                           "CRC/replay/recovery errors since the last check", i))
    if device.known_answer_failed:
        found.append(Check("known-answer", Severity.DRAIN, "known-answer test failed (silent "
                           f"data corruption): {device.known_answer_failed}", i))
    if device.xgmi_error:
        found.append(Check("xgmi-errors", Severity.WARN, f"XGMI link: {device.xgmi_error}", i))
    found.extend(Check(name, Severity(sev), reason, i) for name, sev, reason in
                 device.driver_events)
    found.extend(_temperature(device.temperature_c, t, i))
    return found


def _memory_repair(repair: MemoryRepair, i: int) -> list[Check]:
    if repair == MemoryRepair.FAILED:
        return [Check("memory-repair", Severity.DRAIN,
                      "row remapping failed (memory errors it cannot repair)", i)]
    if repair == MemoryRepair.UNREADABLE:
        return [Check("memory-repair", Severity.DRAIN, "memory info unreadable", i)]
    if repair == MemoryRepair.RESET_PENDING:
        return [Check("memory-repair", Severity.WARN, "memory repair waits for a GPU reset "
                      "(remapped rows or retired pages pending)", i)]
    return []


def device_verdict(
    device: DeviceHealth, thresholds: HealthThresholds = HealthThresholds(),
) -> tuple[Health, list[str]]:
    """The device's health and every problem found (empty when healthy). Pure."""
    found = device_checks(device, thresholds)
    if not found:
        return Health.HEALTHY, []
    worst = max((c.health for c in found), key=_RANK.__getitem__)
    return worst, [c.reason for c in found]


def _temperature(temperature_c: int | None, t: HealthThresholds, i: int) -> list[Check]:
    if temperature_c is None:
        return []
    if temperature_c >= t.temperature_unhealthy_c:
        return [Check("temperature", Severity.DRAIN,
                      f"{temperature_c} C >= {t.temperature_unhealthy_c} C", i)]
    if temperature_c >= t.temperature_degraded_c:
        return [Check("temperature", Severity.WARN,
                      f"{temperature_c} C >= {t.temperature_degraded_c} C", i)]
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
    checks: list[Check] = []
    if expected_devices is not None and len(devices) < expected_devices:
        seen = {d.index for d in devices}
        missing = [str(i) for i in range(expected_devices) if i not in seen] or ["?"]
        text = (f"expected {expected_devices} GPUs, the driver sees {len(devices)} (missing: "
                f"{', '.join(missing)})")
        problems.append((Health.UNHEALTHY, text))
        checks.append(Check("missing", Severity.DRAIN, text))
    for device in sorted(devices, key=lambda d: d.index):
        found = device_checks(device, thresholds)
        if found:
            health = max((c.health for c in found), key=_RANK.__getitem__)
            problems.append((health, f"gpu {device.index}: {'; '.join(c.reason for c in found)}"))
            checks.extend(found)
    if not problems:
        return NodeVerdict(Health.HEALTHY, f"all {len(devices)} GPUs healthy")
    worst = max((h for h, _ in problems), key=_RANK.__getitem__)
    return NodeVerdict(worst, " | ".join(text for h, text in problems if h == worst),
                       checks=tuple(checks))


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

    def sample(self, now: float) -> list[DeviceUse]:
        """Each device's measured use (`corral.backends.device_use`); a device that errors is
        left out. Never raises. A probe that cannot measure use answers []."""
        return []

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
    #: what `sample` answers (sampled_at set to its `now`)
    use: list[DeviceUse] = field(default_factory=list)

    def check(self, now: float) -> list[DeviceHealth]:
        if not self.available:
            return []
        return [replace(d, checked_at=now) for d in self.devices]

    def sample(self, now: float) -> list[DeviceUse]:
        return [replace(u, sampled_at=now) for u in self.use] if self.available else []
