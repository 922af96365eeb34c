"""Knobs of the control loop (policy knobs live in `corral.core.SchedulerConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corral.core.config import SchedulerConfig
from corral.core.migration import MigrationRule

__all__ = ["ControlSettings"]


@dataclass(frozen=True)
class ControlSettings:
    #: checkpoints of workloads that name none go to <checkpoint_root>/<workload>
    checkpoint_root: Path = Path(".corral/checkpoints")
    #: SIGTERM-to-SIGKILL grace for cancels and evictions: the preemption contract's deadline
    stop_grace_s: float = 30.0
    #: the longest wait between cycles of `ControlLoop.run` when nothing happens
    interval_s: float = 1.0
    #: after an event (a job end the backend sees, a workload written by another thread) the
    #: next cycle starts at once, but no sooner than this after the last one began: ends that
    #: arrive together are planned once (corral.control.wake); 0: a cycle per event
    coalesce_s: float = 0.05
    #: the leader lease: renewed by the cycles, at most once per fifth of it (leader.py);
    #: taken over by a standby after it expires
    lease_ttl_s: float = 15.0
    lease_name: str = "scheduler"
    #: the loop plans only when its state changed (or a backoff or min_runtime ran out); it
    #: plans anyway at least this often, for what moves outside the store (decayed usage)
    replan_s: float = 30.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    #: moving running jobs to faster accelerators (corral.control.migration); off by default
    migration: MigrationRule = field(default_factory=MigrationRule)
