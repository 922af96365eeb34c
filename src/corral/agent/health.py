"""The agent's GPU health report: check this host's GPUs on a schedule, hand the verdict to the
next sync when it changed (`corral.agent.protocol.GpuHealthIn`); the control plane cordons and
drains by it (`corral.control.health`).

The probe is the vendor's library: NVML (`corral.backends.nvml`) on NVIDIA hosts, amdsmi
(`corral.backends.amdsmi_probe`) on hosts whose model is AMD's. Its verdict counts devices only
when the library answers (a host that declared GPUs with --gpus and has no driver is reported
"not checked", never unhealthy for lack of a library).
"""

from __future__ import annotations

from collections.abc import Callable

from corral.agent.protocol import CheckIn, GpuHealthIn
from corral.backends.health import GpuHealthProbe, node_verdict
from corral.core.vendors import Vendor, vendor_of

__all__ = ["GpuReporter", "host_probe"]


def host_probe(gpu_model: str) -> GpuHealthProbe:
    """This host's vendor's probe (module docstring)."""
    if vendor_of(gpu_model) == Vendor.AMD:
        from corral.backends.amdsmi_probe import AmdSmiHealthProbe

        return AmdSmiHealthProbe()
    from corral.backends.nvml import NvmlHealthProbe

    return NvmlHealthProbe()


class GpuReporter:
    """Checks every `interval_s` (0: never) and keeps the verdict until a sync delivered it."""

    def __init__(self, interval_s: float, gpus: int, gpu_model: str,
                 probe: Callable[[str], GpuHealthProbe] = host_probe) -> None:
        self.interval_s, self.gpus, self.gpu_model = interval_s, gpus, gpu_model
        self._make_probe = probe
        self.probe: GpuHealthProbe | None = None
        self.last_check: float | None = None
        self.pending: GpuHealthIn | None = None
        self.sent: GpuHealthIn | None = None

    def report(self, now: float) -> GpuHealthIn | None:
        """The verdict to send with this sync, None when there is no news."""
        if self.interval_s <= 0:
            return None
        if self.last_check is None or now - self.last_check >= self.interval_s:
            self.last_check = now
            verdict = self._check(now)
            if verdict != self.sent:
                self.pending = verdict
        return self.pending

    def delivered(self, health: GpuHealthIn | None) -> None:
        if health is not None and health == self.pending:
            self.sent, self.pending = health, None

    def _check(self, now: float) -> GpuHealthIn:
        if self.probe is None:
            self.probe = self._make_probe(self.gpu_model)
        probe = self.probe
        verdict = node_verdict(
            probe.check(now), expected_devices=self.gpus if probe.available else None,
            unavailable_reason="" if probe.available else probe.unavailable_reason)
        return GpuHealthIn(
            health=str(verdict.health), reason=verdict.reason[:4096], checked=verdict.checked,
            checks=[CheckIn(name=c.name, severity=str(c.severity), reason=c.reason[:1024],
                            device=c.device) for c in verdict.checks])

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
