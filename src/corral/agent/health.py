"""The agent's GPU health report: check this host's GPUs on a schedule, hand the verdict to the
next sync when it changed (`corral.agent.protocol.GpuHealthIn`); the control plane cordons and
drains by it (`corral.control.health`).

The probe is the vendor's library: NVML (`corral.backends.nvml`) on NVIDIA hosts, amdsmi
(`corral.backends.amdsmi_probe`) on hosts whose model is AMD's. Its verdict counts devices only
when the library answers (a host that declared GPUs with --gpus and has no driver is reported
"not checked", never unhealthy for lack of a library).

The known-answer test (`corral.agent.known_answer`: silent data corruption) runs on each device
once the agent starts and then every `known_answer_interval_s`, only on devices no worker of
this host holds (`busy`), in a child process the agent polls (the loop never waits for it). A
device that gave a wrong answer carries the evidence in its report (a drain check for that
device) until a later run passes on it. Where neither torch nor cupy is importable the report's
reason says "known-answer test unavailable (no torch/cupy)": never a pass that did not run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import replace

from corral.agent.known_answer import NO_LIBRARY, DeviceResult, KnownAnswerRun, available_library
from corral.agent.protocol import CheckIn, DeviceUseIn, GpuHealthIn
from corral.backends.device_use import DeviceUse
from corral.backends.health import DeviceHealth, GpuHealthProbe, node_verdict
from corral.core.vendors import Vendor, vendor_of

__all__ = ["GpuReporter", "KnownAnswerSchedule", "host_probe"]

log = logging.getLogger(__name__)


def host_probe(gpu_model: str) -> GpuHealthProbe:
    """This host's vendor's probe (module docstring)."""
    if vendor_of(gpu_model) == Vendor.AMD:
        from corral.backends.amdsmi_probe import AmdSmiHealthProbe

        return AmdSmiHealthProbe()
    from corral.backends.nvml import NvmlHealthProbe

    return NvmlHealthProbe()


class KnownAnswerSchedule:
    """When to run the known-answer test on which devices, and what each last answered.

    A device is due when it was never tested or its last run is `interval_s` old, and it is
    tested only while idle. `failed` keeps the evidence per device until a later run passes;
    `unavailable` says why no run can happen on this host ("" : it can).
    """

    def __init__(self, interval_s: float, gpus: int,
                 start: Callable[[list[int], float], KnownAnswerRun] = KnownAnswerRun,
                 library: Callable[[], str] = available_library) -> None:
        self.interval_s, self.gpus, self._start = interval_s, gpus, start
        self.tested_at: dict[int, float] = {}
        self.failed: dict[int, str] = {}
        self.unavailable = "" if interval_s <= 0 or gpus <= 0 or library() else NO_LIBRARY
        self.run: KnownAnswerRun | None = None
        self.runs = 0

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and self.gpus > 0 and not self.unavailable

    def step(self, now: float, busy: Collection[int]) -> bool:
        """Collect a finished run, start one on the idle devices that are due. Returns whether
        a run finished (the verdict may have changed)."""
        if not self.enabled:
            return False
        finished = False
        if self.run is not None:
            answer = self.run.poll(now)
            if answer is None:
                return False
            self._record(answer, self.run.devices, now)
            self.run.close()
            self.run, finished = None, True
        due = [d for d in range(self.gpus) if d not in busy
               and now - self.tested_at.get(d, float("-inf")) >= self.interval_s]
        if due and self.enabled:
            self.run = self._start(due, now)
            self.runs += 1
        return finished

    def _record(self, answer: list[DeviceResult] | str, devices: tuple[int, ...],
                now: float) -> None:
        if isinstance(answer, str):  # could not run at all: say so, never a pass
            log.warning("%s", answer)
            self.unavailable = answer
            return
        for r in answer:
            self.tested_at[r.device] = now
            if r.passed:
                self.failed.pop(r.device, None)
            else:
                log.error("gpu %d failed the known-answer test: %s", r.device, r.evidence)
                self.failed[r.device] = r.evidence

    def mark(self, devices: list[DeviceHealth]) -> list[DeviceHealth]:
        """The probe's devices with the known-answer failures added."""
        return [replace(d, known_answer_failed=self.failed[d.index]) if d.index in self.failed
                else d for d in devices]

    def close(self) -> None:
        if self.run is not None:
            self.run.close()
            self.run = None


class GpuReporter:
    """Checks every `interval_s` (0: never) and keeps the verdict until a sync delivered it.

    known_answer: the known-answer test's schedule (module docstring), None for none."""

    def __init__(self, interval_s: float, gpus: int, gpu_model: str,
                 probe: Callable[[str], GpuHealthProbe] = host_probe,
                 known_answer: KnownAnswerSchedule | None = None) -> None:
        self.interval_s, self.gpus, self.gpu_model = interval_s, gpus, gpu_model
        self._make_probe = probe
        self.probe: GpuHealthProbe | None = None
        self.known_answer = known_answer
        self.last_check: float | None = None
        self.pending: GpuHealthIn | None = None
        self.sent: GpuHealthIn | None = None
        #: measured use (`corral.backends.device_use`), sampled with each check and sent once
        self.sampling = True
        self.samples: list[DeviceUse] = []

    def report(self, now: float, busy: Collection[int] = ()) -> GpuHealthIn | None:
        """The verdict to send with this sync, None when there is no news. busy: the devices
        this host's workers hold (the known-answer test leaves them alone)."""
        if self.interval_s <= 0:
            return None
        answered = self.known_answer is not None and self.known_answer.step(now, busy)
        if answered or self.last_check is None or now - self.last_check >= self.interval_s:
            self.last_check = now
            verdict = self._check(now)
            self._sample(now)
            if verdict != self.sent:
                self.pending = verdict
        return self.pending

    def delivered(self, health: GpuHealthIn | None) -> None:
        if health is not None and health == self.pending:
            self.sent, self.pending = health, None

    def _sample(self, now: float) -> None:
        """The probe's use sample, kept until a sync delivered it. A probe that raises gives no
        sample: measuring use must never cost the heartbeat."""
        if not self.sampling or self.probe is None:
            return
        try:
            samples = self.probe.sample(now)
        except Exception:
            log.debug("GPU use sample failed", exc_info=True)
            return
        if samples:
            self.samples = samples

    def use(self, now: float) -> list[DeviceUseIn] | None:
        """The samples not yet delivered, each with its age at `now`; None when none is new."""
        if not self.samples or not self.sampling:
            return None
        return [DeviceUseIn(device=u.index, utilization=min(1.0, max(0.0, u.utilization)),
                            memory_used_bytes=u.memory_used_bytes,
                            memory_total_bytes=u.memory_total_bytes,
                            age_s=max(0.0, now - u.sampled_at)) for u in self.samples[:1024]]

    def use_delivered(self, sent: list[DeviceUseIn] | None) -> None:
        if sent is not None:
            self.samples = []

    def _check(self, now: float) -> GpuHealthIn:
        if self.probe is None:
            self.probe = self._make_probe(self.gpu_model)
        probe, kat = self.probe, self.known_answer
        devices = probe.check(now)
        verdict = node_verdict(
            kat.mark(devices) if kat is not None else devices,
            expected_devices=self.gpus if probe.available else None,
            unavailable_reason="" if probe.available else probe.unavailable_reason)
        reason = verdict.reason
        if kat is not None and kat.unavailable:
            reason = f"{reason}; {kat.unavailable}"
        return GpuHealthIn(
            health=str(verdict.health), reason=reason[:4096], checked=verdict.checked,
            checks=[CheckIn(name=c.name, severity=str(c.severity), reason=c.reason[:1024],
                            device=c.device) for c in verdict.checks])

    def close(self) -> None:
        if self.probe is not None:
            self.probe.close()
        if self.known_answer is not None:
            self.known_answer.close()
