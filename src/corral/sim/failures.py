"""Failure models: nodes that break, spot capacity that is taken back, and what work survives.

- **Node failures**: each node fails after an exponential time with mean `node_mtbf_s`, stays
  down `node_repair_s`, then fails again later. Work on it stops without warning.
- **Spot interruptions**: a seeded `spot_fraction` of the nodes is spot capacity; each is taken
  back after an exponential time with mean `spot_mtbi_s`, with `spot_notice_s` of warning, and
  returns `spot_return_s` later.
- **GPU faults** (`corral.sim.device_faults`): each GPU faults after an exponential time with
  mean `gpu_mtbf_s` (an XID, an ECC error, a failed known-answer test), reports sick for
  `gpu_fault_s`, and takes work again once healthy for `gpu_recover_after_s`. With
  `device_cordons` only that GPU is cordoned (the live health monitor's rule,
  `corral.core.device_cordons`); without, its whole node is, as before per-GPU cordons. Work on
  the faulty GPU stops with `gpu_fault_notice_s` of warning (None: none, the fault killed it);
  a whole-node cordon drains the node's other work with `preempt_notice_s`.
- **Checkpoints**: a running task saves its progress every `checkpoint_interval_s` (None:
  never on its own). Given a warning of at least `checkpoint_write_s` (a spot notice, or
  corral's preemption contract of `preempt_notice_s`), it saves everything before it stops.
  Otherwise it restarts from its last checkpoint and the rest is lost.

Goodput is the GPU time that advanced work, as a share of all GPU time held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FailureModel:
    node_mtbf_s: float | None = None
    node_repair_s: float = 4 * 3600.0
    spot_fraction: float = 0.0
    spot_mtbi_s: float | None = None
    spot_notice_s: float = 120.0
    spot_return_s: float = 3600.0
    checkpoint_interval_s: float | None = None
    checkpoint_write_s: float = 30.0
    preempt_notice_s: float = 30.0
    gpu_mtbf_s: float | None = None
    gpu_fault_s: float = 600.0
    gpu_recover_after_s: float = 600.0
    gpu_fault_notice_s: float | None = None
    device_cordons: bool = True

    def __post_init__(self) -> None:
        for name in ("node_mtbf_s", "spot_mtbi_s", "checkpoint_interval_s", "gpu_mtbf_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or unset), got {value}")
        if not 0 <= self.spot_fraction <= 1:
            raise ValueError(f"spot_fraction must be between 0 and 1, got {self.spot_fraction}")
        if self.gpu_fault_s < 0 or self.gpu_recover_after_s < 0:
            raise ValueError("gpu_fault_s and gpu_recover_after_s must be >= 0, got "
                             f"{self.gpu_fault_s} and {self.gpu_recover_after_s}")

    @property
    def active(self) -> bool:
        return (self.node_mtbf_s is not None or self.gpu_mtbf_s is not None
                or (self.spot_fraction > 0 and self.spot_mtbi_s is not None))

    def saved(self, ran_s: float, notice_s: float | None) -> float:
        """Seconds of a run of `ran_s` that survive a stop with `notice_s` of warning (None:
        no warning at all).

        >>> m = FailureModel(checkpoint_interval_s=600)
        >>> m.saved(1500, None), m.saved(1500, 120), FailureModel().saved(1500, None)
        (1200.0, 1500.0, 0.0)
        """
        if notice_s is not None and notice_s >= self.checkpoint_write_s:
            return float(ran_s)
        if self.checkpoint_interval_s is None:
            return 0.0
        return float(math.floor(ran_s / self.checkpoint_interval_s) * self.checkpoint_interval_s)


NO_FAILURES = FailureModel()
