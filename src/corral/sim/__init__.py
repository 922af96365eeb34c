"""corral.sim: trace-driven simulation through the same scheduling core as production.

Stages (see README.md in this folder): load a trace -> fill (fragmentation) or replay (time)
experiment -> report and plots.
"""

from corral.sim.failures import FailureModel
from corral.sim.fill import FillResult, arrivals, run_fill
from corral.sim.load import load_trace
from corral.sim.policies import (
    CORRAL_SCORING,
    REPLAY_POLICIES,
    PolicyError,
    ReplayPolicy,
    fill_scoring,
    replay_policy,
)
from corral.sim.replay import ReplayOptions, ReplayResult, run_replay
from corral.sim.session import CoreSession
from corral.sim.synthetic import SyntheticSpec, synthetic_trace
from corral.sim.teams import QueueMap, map_queues
from corral.sim.trace import Trace, TraceFormatError, TraceTask

__all__ = [
    "CORRAL_SCORING",
    "REPLAY_POLICIES",
    "CoreSession",
    "FailureModel",
    "FillResult",
    "PolicyError",
    "QueueMap",
    "ReplayOptions",
    "ReplayPolicy",
    "ReplayResult",
    "SyntheticSpec",
    "Trace",
    "TraceFormatError",
    "TraceTask",
    "arrivals",
    "fill_scoring",
    "load_trace",
    "map_queues",
    "replay_policy",
    "run_fill",
    "run_replay",
    "synthetic_trace",
]
