"""Scheduler configuration: the policy knobs, with defaults and the reason for each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Fragmentation gradient descent leads (Weng et al., ATC 2023), with corral's stranded-GPU term
#: (`balanced-fgd`): each worker goes where it makes the pool's expected fragmentation, for the
#: cycle's own mix of work, grow the least. Best fit at 0.01 decides among nodes whose gradients
#: are nearly equal (first-fit-like packing). On the Alibaba 2023 GPU traces this fills 0.4-1.2
#: points more of the pool than the published FGD on every trace, and 1.1-1.5 points more than
#: plain bin-packing, the previous default (docs/simulator.md). Best fit at 0.01 matters: among
#: nodes whose gradients are within about 40 milli-GPU it packs first-fit-like, which is what
#: made the published FGD strong. A workload's own model preference outweighs all of it: the
#: user asked for it. Price breaks ties among otherwise equal nodes ("cheapest feasible capacity
#: among equals"); raise it to trade density for cost. Capacity kind at 0.5: work that may be
#: interrupted goes to spot before on-demand and leaves stable capacity to work that may not
#: (constant over a pool of one kind, so the fill figures are unchanged).
#: The plugins by name, not by their modules' constants: those modules need numpy, and the pool
#: file's model (this config) is read by clients that have none (`corral schema`, issue 14);
#: tests/core/test_default_scoring.py holds each name to a registered plugin.
DEFAULT_SCORING: Mapping[str, float] = {"balanced-fgd": 1.0, "bestfit": 0.01, "gpu-model": 2.0,
                                        "price": 0.001, "capacity": 0.5}


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
    #: a reservation holds its nodes at most this long at a time, then lets them go for
    #: `reservation_cooldown_s` before it may be taken again: the bound on capacity a
    #: reservation keeps idle (its nodes' GPUs x this, per window)
    max_reservation_s: float = 3600.0
    reservation_cooldown_s: float = 600.0
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
    #: fair share in normalised GPU units: a device of model m counts as `share_units[m]` GPUs
    #: (1 for a model not listed) when queues are ordered by how much of their deserved share
    #: they hold, so a team given K80s is not charged like one given V100s. Say {"V100": 1,
    #: "P100": 0.6, "K80": 0.3}: a queue on 2 K80s holds 0.6 units and goes before one on a
    #: V100 (1 unit). Quotas, limits and reclaim stay in devices. {} = every GPU counts 1.
    share_units: Mapping[str, float] = field(default_factory=dict)

    def scoring_for(self, queue: str) -> Mapping[str, float]:
        return self.queue_scoring.get(queue, self.scoring)
