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
    #: seconds between cycles of `ControlLoop.run`
    interval_s: float = 1.0
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
