"""Named policies: what `--policy` means, expressed as the core's scoring weights and config.

**Placement (fill) policies** are scoring policies of the core's placer:

| name | weights | what it is |
|---|---|---|
| random | random 1 | a uniformly random feasible node (and device) |
| bestfit | bestfit 1 | least normalised CPU + GPU left over |
| fgd | fgd 1 | fragmentation gradient descent, exact gradient, ties to node order |
| fgd-published | fgd 1 (levels 100) | FGD as the paper's Kubernetes plugin scores it: integer scores 0-100, ties to the first node in order |
| corral (= default) | balanced-fgd 1, bestfit 0.01, gpu-model 2, price 0.001 | corral's default: FGD plus CPU-stranded GPUs, best fit among near-equals |

Any registered score plugin name also works (weight 1), and so does an explicit mix such as
`"balanced-fgd=1,bestfit=0.01"`. Fragmentation plugins get the trace's typical tasks as their
workload distribution.

**Replay (queueing) policies** are `SchedulerConfig`s plus how tasks map to queues:

| name | queues | config |
|---|---|---|
| fifo | one shared queue | backfill off (strict arrival order), no consolidation, reclaim or preemption |
| fifo-backfill | one shared queue | backfill on (anything that fits starts), gang reservations |
| sjf | one shared queue | backfill on, order by oracle duration (priority = -duration, preemption off) |
| corral | team queues with quotas | the core's defaults: fair-share order, backfill, reservations, consolidation, reclaim, preemption by priority |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from corral.core.config import DEFAULT_SCORING, SchedulerConfig
from corral.core.placement import Scoring
from corral.core.plugins import BESTFIT, FGD, RANDOM, REGISTRY, TaskType
from corral.core.plugins import typical_tasks as _typical
from corral.core.plugins.fragmentation import FRAGMENTATION_PLUGINS
from corral.sim.trace import Trace

#: corral's fill policy is the core's default scoring, the one the control plane runs (why each
#: weight: `corral.core.config.DEFAULT_SCORING`; the measurements: docs/simulator.md).
CORRAL_SCORING: Mapping[str, float] = DEFAULT_SCORING

FILL_POLICIES: Mapping[str, tuple[Mapping[str, float], Mapping[str, Mapping[str, object]]]] = {
    "random": ({RANDOM: 1.0}, {}),
    "bestfit": ({BESTFIT: 1.0}, {}),
    "fgd": ({FGD: 1.0}, {}),
    "fgd-published": ({FGD: 1.0}, {FGD: {"levels": 100}}),
    "corral": (CORRAL_SCORING, {}),
}
ALIASES = {"default": "corral", "best-fit": "bestfit", "fgd-paper": "fgd-published"}


class PolicyError(ValueError):
    """An unknown policy name or a malformed weight list; the message lists the valid ones."""


def typical_tasks(trace: Trace) -> tuple[TaskType, ...]:
    """The trace's typical task types (95% of tasks), the fragmentation plugins' workload."""
    return _typical(TaskType(t.cpu_milli, t.gpus, t.gpu_milli, t.gpu_models) for t in trace.tasks)


def placement_weights(
    name: str,
) -> tuple[dict[str, float], dict[str, dict[str, object]]]:
    """Weights and plugin parameters of a placement policy name or `a=1,b=0.5` mix."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in FILL_POLICIES:
        weights, params = FILL_POLICIES[key]
        return dict(weights), {k: dict(v) for k, v in params.items()}
    if key in REGISTRY:
        return {key: 1.0}, {}
    if "=" in key:
        return _parse_mix(key), {}
    known = sorted({*FILL_POLICIES, *ALIASES, *REGISTRY})
    raise PolicyError(f"unknown placement policy {name!r}; use one of {', '.join(known)}, "
                      "or a weighted mix such as 'balanced-fgd=1,bestfit=0.01'")


def _parse_mix(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in text.split(","):
        plugin, _, value = part.partition("=")
        plugin = plugin.strip()
        try:
            weight = float(value)
        except ValueError:
            raise PolicyError(f"weight of {plugin!r} in {text!r} must be a number, got {value!r}") from None
        if plugin not in REGISTRY:
            raise PolicyError(f"unknown score plugin {plugin!r} in {text!r}; known: {', '.join(sorted(REGISTRY))}")
        weights[plugin] = weight
    return weights


def with_workload(
    params: Mapping[str, Mapping[str, object]], weights: Mapping[str, float], trace: Trace
) -> dict[str, dict[str, object]]:
    """Give every fragmentation plugin in `weights` the trace's typical tasks (unless set)."""
    out = {k: dict(v) for k, v in params.items()}
    if any(p in weights for p in FRAGMENTATION_PLUGINS):
        mix = typical_tasks(trace)
        for plugin in FRAGMENTATION_PLUGINS:
            if plugin in weights:
                out.setdefault(plugin, {}).setdefault("workload", mix)
    return out


def fill_scoring(name: str, trace: Trace, seed: int) -> Scoring:
    """The core `Scoring` a fill run uses for policy `name` on `trace`."""
    weights, params = placement_weights(name)
    return Scoring.from_weights(weights, with_workload(params, weights, trace), seed=seed, key=name)


@dataclass(frozen=True)
class ReplayPolicy:
    name: str
    config: SchedulerConfig
    shared_queue: bool  # True: every task in one scheduling queue (teams still get metrics)
    shortest_first: bool = False  # SJF: order by oracle duration
    notes: tuple[str, ...] = field(default=())


REPLAY_POLICIES = ("fifo", "fifo-backfill", "sjf", "corral")
_BASELINE = SchedulerConfig(consolidate=False, reclaim=False, preempt=False)


def replay_policy(name: str, placement: str, trace: Trace) -> ReplayPolicy:
    """Queueing policy `name` with placement policy `placement` (same placement for all, so a
    comparison isolates the queueing)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    weights, params = placement_weights(placement)
    placing = replace(_BASELINE, scoring=weights, plugin_params=with_workload(params, weights, trace))
    if key == "fifo":
        return ReplayPolicy(key, replace(placing, backfill=False, max_reservations=0), True)
    if key in ("fifo-backfill", "backfill"):
        return ReplayPolicy("fifo-backfill", placing, True)
    if key == "sjf":
        return ReplayPolicy(key, placing, True, shortest_first=True)
    if key == "corral":
        config = SchedulerConfig(scoring=weights, plugin_params=placing.plugin_params)
        return ReplayPolicy(key, config, False)
    raise PolicyError(f"unknown replay policy {name!r}; use one of {', '.join(REPLAY_POLICIES)}")
