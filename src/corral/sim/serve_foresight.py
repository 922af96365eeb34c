"""A schedule with foresight: the fewest replicas per segment (say, each minute) that keep
>= `slo_target` of requests within the SLO, chosen knowing the whole trace, then replayed in the
simulator with every cost a policy pays (cold starts launched a cold start early, draining,
queues carried from one segment to the next). An achievable figure with foresight: what a
perfect predictor that resizes once per segment could reach. With `serve_bound` below it, the
two bracket the best any policy can do.

How the counts are chosen (a heuristic, so the figure is achievable, not optimal):
1. Replay the trace at each uniform count c (levels) and attribute each miss to the segment its
   request arrived in: misses_k(c).
2. Pick one count per segment to minimise the sum of counts with the sum of misses_k(n_k) within
   a miss allowance: a multiple-choice knapsack solved exactly by dynamic programming over the
   allowance. A segment before the warm-up must miss nothing (its queue would spill over).
3. Replay the chosen schedule. Step 1 ignores how neighbours' queues spill over, so the
   allowance is scaled (`allowances`, tried largest first) and the cheapest replayed schedule
   that meets the target wins.
4. With `refine`, a local search: each segment, largest count first, one replica less, kept
   when the replay still meets the target; until a pass keeps nothing (one replay each try).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from corral.serving.policy import Decision
from corral.sim.serve import ServeOptions, ServeResult, simulate_ttft
from corral.sim.serve_trace import Requests

__all__ = ["Foresight", "Scripted", "foresight_schedule"]

#: miss allowances tried, as multiples of what the SLO allows (the knapsack's estimate is off by
#: the queues carried between segments, in both directions)
ALLOWANCES = (4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.4)


class Scripted:
    """Replicas per segment known in advance; each launched a cold start before it is needed,
    so the replicas asked for at t are the most of the counts at t and t + cold start."""

    def __init__(self, counts: npt.NDArray[np.int64], segment_s: float, cold_start_s: float):
        self.counts, self.segment_s, self.cold_start_s = counts, segment_s, cold_start_s

    def count(self, t: float) -> int:
        k = min(max(int(t // self.segment_s), 0), len(self.counts) - 1)
        return int(self.counts[k])

    def observe(self, now: float, **_: object) -> None:
        """A schedule known in advance observes nothing."""

    def decide(self, now: float, *, current: int, ready: int | None = None) -> Decision:
        desired = max(self.count(now), self.count(now + self.cold_start_s))
        return Decision(now, current, desired, "Scripted", False, f"scheduled {desired}", None,
                        desired)


@dataclass(frozen=True)
class Foresight:
    segment_s: float
    counts: tuple[int, ...]
    result: ServeResult  # the replayed schedule
    tried: tuple[tuple[float, float, float], ...]  # (allowance, within SLO, replica-hours)


def _replay(req: Requests, opts: ServeOptions, counts: npt.NDArray[np.int64],
            segment_s: float) -> tuple[ServeResult, npt.NDArray[np.float64]]:
    script = Scripted(counts, segment_s, opts.profile.cold_start_s)
    return simulate_ttft(req, opts, int(counts[0]), script, 2.0)


def _cheapest(misses: dict[int, npt.NDArray[np.int64]], allowed: int) -> npt.NDArray[np.int64]:
    """Counts per segment with the least sum whose misses sum to <= allowed (exact DP)."""
    n_seg = len(next(iter(misses.values())))
    cost = np.zeros(allowed + 1)  # least sum of counts so far, per misses spent
    picks = []
    for k in range(n_seg):
        new, pick = np.full(allowed + 1, np.inf), np.zeros(allowed + 1, dtype=np.int64)
        for c, m in misses.items():
            spent = int(m[k])
            if spent > allowed:
                continue
            cand = np.full(allowed + 1, np.inf)
            cand[spent:] = cost[:allowed + 1 - spent] + c
            better = cand < new
            new[better], pick[better] = cand[better], c
        cost = new
        picks.append(pick)
    left = int(np.argmin(cost))
    if not np.isfinite(cost[left]):
        raise ValueError("levels: no count in the levels keeps the segments within the SLO")
    counts = []
    for k in reversed(range(n_seg)):
        c = int(picks[k][left])
        counts.append(c)
        left -= int(misses[c][k])
    return np.array(counts[::-1], dtype=np.int64)


def foresight_schedule(req: Requests, opts: ServeOptions, segment_s: float = 60.0,
                       levels: range = range(1, 13),
                       allowances: tuple[float, ...] = ALLOWANCES,
                       refine: bool = False) -> Foresight:
    """The cheapest replayed schedule found that meets `opts.slo_target` (module docstring)."""
    n_seg = int(np.ceil((req.span_s + 1e-9) / segment_s)) or 1
    seg = np.minimum((req.arrival_s // segment_s).astype(np.int64), n_seg - 1)
    counted = req.arrival_s >= min(opts.warmup_s, req.span_s)
    misses = {}
    for c in levels:
        _, ttft = _replay(req, opts, np.full(n_seg, c, dtype=np.int64), segment_s)
        late = ttft > opts.slo_ttft_s
        early_miss = np.bincount(seg[~counted & late], minlength=n_seg) > 0
        misses[c] = np.bincount(seg[counted & late], minlength=n_seg) + 10**9 * early_miss
    allowed = int((1 - opts.slo_target) * counted.sum())
    best: tuple[npt.NDArray[np.int64], ServeResult] | None = None
    tried = []
    for share in allowances:
        counts = _cheapest(misses, int(share * allowed))
        result, _ = _replay(req, opts, counts, segment_s)
        tried.append((share, result.within_slo, result.replica_hours))
        if result.within_slo >= opts.slo_target and (
                best is None or result.replica_hours < best[1].replica_hours):
            best = (counts, result)
    if best is None:
        raise ValueError(f"allowances: no schedule met {opts.slo_target:.0%} within the SLO; "
                         f"add smaller allowances (tried {', '.join(map(str, allowances))})")
    counts, result = _refined(req, opts, *best, segment_s) if refine else best
    return Foresight(segment_s, tuple(int(c) for c in counts), result, tuple(tried))


def _refined(req: Requests, opts: ServeOptions, counts: npt.NDArray[np.int64],
             result: ServeResult, segment_s: float) -> tuple[npt.NDArray[np.int64], ServeResult]:
    """Step 4 of the module docstring: one replica less where the replay still meets the SLO."""
    kept = True
    while kept:
        kept = False
        for k in np.argsort(-counts, kind="stable"):
            if counts[k] <= 1:
                continue
            trial = counts.copy()
            trial[k] -= 1
            r, _ = _replay(req, opts, trial, segment_s)
            if r.within_slo >= opts.slo_target and r.replica_hours < result.replica_hours:
                counts, result, kept = trial, r, True
    return counts, result
