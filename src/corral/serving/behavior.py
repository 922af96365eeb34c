"""How fast the replica count may move: stabilisation windows and rate limits.

Taken from Kubernetes' HPA (pkg/controller/podautoscaler/horizontal.go,
`stabilizeRecommendationWithBehaviors` and `convertDesiredReplicasWithBehaviorRate`):

- Stabilisation: every recommendation is remembered with its time. Scaling up goes only as high
  as the *lowest* recommendation of the scale-up window (a spike must last the window); scaling
  down goes only as low as the *highest* recommendation of the scale-down window (a dip must
  last the window). Worked example: a 120 s down window and recommendations 6, 3, 4 over it
  with 6 replicas running: the count stays at max(6, 3, 4) = 6 until the 6 leaves the window.
- Rate limits: each limit bounds the change against the count at the start of its period
  (the current count minus what was added in it, or plus what was removed); with `select: max`
  the most permissive limit wins. Example: 4 replicas, +100% or +4 per 15 s, none added in the
  last 15 s: at most max(8, 8) = 8.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from corral.serving.config import Behavior, Select

__all__ = ["ScaleHistory"]


@dataclass
class ScaleHistory:
    keep_s: float
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    changes: deque[tuple[float, int]] = field(default_factory=deque)  # t, signed change

    def record(self, now: float, recommendation: int, before: int, after: int) -> None:
        self.recommendations.append((now, recommendation))
        if after != before:
            self.changes.append((now, after - before))
        for q in (self.recommendations, self.changes):
            while q and q[0][0] <= now - self.keep_s:
                q.popleft()

    def stabilized(self, now: float, current: int, recommendation: int, up: Behavior,
                   down: Behavior) -> int:
        """HPA's rule: up to the lowest recommendation of the up window, down to the highest of
        the down window; otherwise stay."""
        lowest = min([r for t, r in self.recommendations if t > now - up.stabilization_s]
                     + [recommendation])
        highest = max([r for t, r in self.recommendations if t > now - down.stabilization_s]
                      + [recommendation])
        out = current
        if out < lowest:
            out = lowest
        if out > highest:
            out = highest
        return out

    def up_limit(self, now: float, current: int, up: Behavior) -> int | None:
        """The most replicas the rate limits allow now (None: no limit). From zero, at least 1."""
        if not up.limits:
            return None
        limits = []
        for lim in up.limits:
            start = current - sum(d for t, d in self.changes if t > now - lim.period_s and d > 0)
            if lim.type == "pods":
                limits.append(start + math.ceil(lim.value))
            else:
                limits.append(math.ceil(start * (1 + lim.value / 100)))
        chosen = max(limits) if up.select is Select.MAX else min(limits)
        return max(chosen, 1)

    def down_limit(self, now: float, current: int, down: Behavior) -> int | None:
        """The fewest replicas the rate limits allow now (None: no limit)."""
        if not down.limits:
            return None
        limits = []
        for lim in down.limits:
            start = current - sum(d for t, d in self.changes if t > now - lim.period_s and d < 0)
            if lim.type == "pods":
                limits.append(start - math.ceil(lim.value))
            else:
                limits.append(math.floor(start * (1 - lim.value / 100)))
        chosen = min(limits) if down.select is Select.MAX else max(limits)
        return max(chosen, 0)
