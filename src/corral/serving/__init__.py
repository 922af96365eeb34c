"""Pure policies of inference services: the service autoscaler (policy.py) and its config.

No clock, no I/O, no unseeded random: the control plane and the simulator (corral.sim.serve)
call the same `ServiceScaler` with the time passed in.
"""

from corral.serving.config import Behavior, RateLimit, ScalingConfig, Select, Target, TargetKind
from corral.serving.policy import (
    HELD,
    SCALED_DOWN,
    SCALED_TO_ZERO,
    SCALED_UP,
    Decision,
    Proposal,
    ServiceScaler,
)

__all__ = [
    "HELD",
    "SCALED_DOWN",
    "SCALED_TO_ZERO",
    "SCALED_UP",
    "Behavior",
    "Decision",
    "Proposal",
    "RateLimit",
    "ScalingConfig",
    "Select",
    "ServiceScaler",
    "Target",
    "TargetKind",
]
