"""Scheduler configuration: the policy knobs, with defaults and the reason for each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.core.plugins.builtin import BINPACK, GPU_MODEL, PRICE

#: Bin-packing leads (dense pools leave whole nodes free for gangs). A workload's own model
#: preference outweighs packing: the user asked for it. Price is small, to break ties among
#: otherwise equal nodes ("cheapest feasible capacity among equals").
DEFAULT_SCORING: Mapping[str, float] = {BINPACK: 1.0, GPU_MODEL: 2.0, PRICE: 0.1}


@dataclass(frozen=True)
class SchedulerConfig:
    scoring: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SCORING))
    #: per-queue scoring weights that replace `scoring` for that queue's workloads
    queue_scoring: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: constructor arguments of score plugins, by plugin name
    plugin_params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: a blocked gang that has waited this long gets nodes reserved (backfill keeps running
    #: elsewhere); 0 reserves at once
    reserve_after_s: float = 300.0
    max_reservations: int = 1
    #: False: strict order (FIFO); a queue starts nothing behind a workload that does not fit
    backfill: bool = True
    consolidate: bool = True
    reclaim: bool = True
    preempt: bool = True
    #: bounds on the disruptive actions per cycle, so a huge backlog cannot stall a cycle
    max_eviction_attempts: int = 256
    max_moves: int = 8
    #: time-decayed fair share: weight of past use in queue order (0 = off)
    usage_weight: float = 0.0
    usage_half_life_s: float = 7 * 24 * 3600.0

    def scoring_for(self, queue: str) -> Mapping[str, float]:
        return self.queue_scoring.get(queue, self.scoring)
