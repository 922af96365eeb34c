"""Fair-share math: pure functions, no scheduling state.

Three ideas, each from a well-known source:

- **Quota first, then weighted max-min** for what is left (the "deserved share" of KAI-Scheduler's
  proportion plugin and Kueue's cohorts): a queue is guaranteed `quota`; GPUs beyond all quotas go
  to queues with unmet demand in proportion to their weights, never above demand or limit.
- **Dominant Resource Fairness** (Ghodsi et al., NSDI 2011) to order queues when CPU or RAM,
  not GPUs, is the binding resource: a queue's share is its largest share of any resource.
- **Time-decayed usage** (Slurm's multifactor priority, half-life decay): past use counts less
  the older it is, so a queue that just ran a huge job yields for a while, then recovers.
  `decayed_gpu_seconds` is the exact integral of one run; callers sum it per queue.

Hierarchy: queues nest. The root's capacity is divided among top-level queues by the rule above
using each subtree's demand; each queue's result is then divided among its children the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Claim:
    """One queue's position in a division: what it is guaranteed, wants, may have, and weighs."""

    name: str
    demand: float
    quota: float = 0.0
    limit: float | None = None
    weight: float = 1.0

    @property
    def cap(self) -> float:
        return self.demand if self.limit is None else min(self.demand, self.limit)


def divide(capacity: float, claims: Sequence[Claim]) -> dict[str, float]:
    """Divide `capacity` among claims: quotas first, then weighted max-min of the rest.

    Nobody gets more than its cap (min of demand and limit). If quotas alone exceed capacity
    (an over-committed pool), quotas are scaled down in proportion.

    Worked example: capacity 10; A(quota 4, demand 8, weight 1), B(quota 2, demand 2),
    C(quota 0, demand 10, weight 3). Quotas: A 4, B 2, C 0; 4 GPUs left. B is satisfied.
    A and C split 4 by weight 1:3: A +1, C +3. Result A 5, B 2, C 3.

    >>> divide(10, [Claim("A", 8, 4), Claim("B", 2, 2), Claim("C", 10, 0, weight=3)])
    {'A': 5.0, 'B': 2.0, 'C': 3.0}
    """
    base = {c.name: min(c.quota, c.cap) for c in claims}
    total_base = sum(base.values())
    if total_base > capacity + _EPS:
        scale = capacity / total_base if total_base > 0 else 0.0
        return {name: v * scale for name, v in base.items()}
    alloc = dict(base)
    remaining = capacity - total_base
    active = [c for c in claims if c.cap - alloc[c.name] > _EPS and c.weight > 0]
    while remaining > _EPS and active:
        total_weight = sum(c.weight for c in active)
        # Whoever would be over-served by an equal-per-weight split is capped first; the rest
        # of the round is re-divided among the others (classic water-filling).
        capped = [c for c in active if c.cap - alloc[c.name] <= remaining * c.weight / total_weight]
        if not capped:
            for c in active:
                alloc[c.name] += remaining * c.weight / total_weight
            remaining = 0.0
            break
        for c in capped:
            remaining -= c.cap - alloc[c.name]
            alloc[c.name] = c.cap
        active = [c for c in active if c not in capped]
    return {name: _clean(v) for name, v in alloc.items()}


def _clean(value: float) -> float:
    rounded = round(value, 9)
    return float(rounded) if not math.isclose(rounded, 0.0, abs_tol=_EPS) else 0.0


@dataclass(frozen=True, slots=True)
class QueueNode:
    """A queue in the hierarchy, with the demand of its own workloads (not its children's)."""

    name: str
    parent: str | None
    own_demand: float
    quota: float = 0.0
    limit: float | None = None
    weight: float = 1.0


def hierarchical_shares(capacity: float, queues: Sequence[QueueNode]) -> dict[str, float]:
    """Deserved share of every queue in a tree, dividing top-down.

    A parent's demand is its own plus its children's (capped by each child's limit). Queues whose
    parent is unknown are treated as top-level.

    Worked example: capacity 12; parents `ml` (quota 8) and `ops` (quota 4, demand 2);
    `ml` has children `ml.a` (demand 6, quota 2) and `ml.b` (demand 6, weight 2). ml wants 12,
    ops wants 2: ml gets 8 + the 2 ops leaves = 10. Inside ml: a 2 (quota), then 8 left split
    1:2 with demand caps: a +8/3 = 4.67, b 5.33.

    >>> s = hierarchical_shares(12, [QueueNode("ml", None, 0, quota=8), QueueNode("ops", None, 2, quota=4),
    ...     QueueNode("ml.a", "ml", 6, quota=2), QueueNode("ml.b", "ml", 6, weight=2)])
    >>> {k: round(v, 2) for k, v in s.items()}
    {'ml': 10.0, 'ml.a': 4.67, 'ml.b': 5.33, 'ops': 2.0}
    """
    by_name = {q.name: q for q in queues}
    children: dict[str | None, list[QueueNode]] = {}
    for q in queues:
        parent = q.parent if q.parent in by_name else None
        children.setdefault(parent, []).append(q)
    demand = _subtree_demands(children, by_name)
    shares: dict[str, float] = {}
    _divide_level(capacity, None, children, demand, by_name, shares)
    return shares


def _subtree_demands(
    children: Mapping[str | None, list[QueueNode]], by_name: Mapping[str, QueueNode]
) -> dict[str, float]:
    demand: dict[str, float] = {}

    def visit(q: QueueNode) -> float:
        total = q.own_demand + sum(visit(c) for c in children.get(q.name, []))
        capped = total if q.limit is None else min(total, q.limit)
        demand[q.name] = capped
        return capped

    for root in children.get(None, []):
        visit(root)
    for q in by_name.values():  # cycles or orphans: count own demand only
        demand.setdefault(q.name, q.own_demand)
    return demand


def _divide_level(
    capacity: float,
    parent: str | None,
    children: Mapping[str | None, list[QueueNode]],
    demand: Mapping[str, float],
    by_name: Mapping[str, QueueNode],
    shares: dict[str, float],
) -> None:
    level = children.get(parent, [])
    if not level:
        return
    claims = [Claim(q.name, demand[q.name], q.quota, q.limit, q.weight) for q in level]
    if parent is not None and by_name[parent].own_demand > 0:
        # The parent's own workloads compete with its children as one more claimant.
        claims.append(Claim(_OWN, by_name[parent].own_demand))
    result = divide(capacity, claims)
    for q in level:
        shares[q.name] = result[q.name]
        _divide_level(result[q.name], q.name, children, demand, by_name, shares)


_OWN = "\x00own"


def dominant_share(used: Sequence[float], totals: Sequence[float]) -> float:
    """DRF: the largest fraction of any resource a queue holds.

    >>> dominant_share([8, 16_000, 64], [64, 512_000, 4096])  # GPUs, CPU milli, RAM GiB
    0.125
    """
    return max((u / t for u, t in zip(used, totals, strict=True) if t > 0), default=0.0)


def decay(previous: float, added: float, elapsed_s: float, half_life_s: float) -> float:
    """Time-decayed usage: previous usage halves every `half_life_s`, then `added` is counted.

    >>> decay(100.0, 10.0, elapsed_s=3600, half_life_s=3600)
    60.0
    """
    if half_life_s <= 0:
        return added
    return float(previous * 0.5 ** (elapsed_s / half_life_s) + added)


#: Runs that ended this many half-lives before `now` may be left out of decayed usage: whatever
#: their number and length, together they weigh at most 2^-10 (< 0.1%) of what holding as many
#: GPUs for ever weighs (see `decayed_gpu_seconds`), so a caller may bound its history there.
USAGE_HORIZON_HALF_LIVES = 10


def usage_horizon(now: float, half_life_s: float) -> float:
    """The earliest end of a run that still counts in decayed usage (`USAGE_HORIZON_HALF_LIVES`).

    >>> usage_horizon(100_000.0, half_life_s=3600)
    64000.0
    """
    return now - USAGE_HORIZON_HALF_LIVES * max(half_life_s, 0.0)


def decayed_gpu_seconds(
    gpus: float, start: float, end: float | None, now: float, half_life_s: float
) -> float:
    """GPU-seconds of one run, each second weighted by how long ago it was: the exact integral

        integral over [start, end] of  gpus * 2^(-(now - t) / half_life) dt
        = gpus * half_life / ln 2 * (2^(-(now - end) / half_life) - 2^(-(now - start) / half_life))

    `end` None means still running (counted up to `now`); what lies after `now` does not count.
    A GPU-second used just now weighs 1, one used a half-life ago 1/2 (Slurm's half-life decay,
    but exact over a run instead of sampled once per cycle). It composes with `decay`: later, at
    `now + e`, the same run weighs this value times 2^(-e/h), so a running total can be carried
    forward with `decay` and topped up with the integral of the gap (what the simulator does).
    Bounds: `gpus` held for ever weigh gpus * h / ln 2 (about 1.44 half-lives of them); held
    for the last half-life only, half that. A half-life <= 0 forgets the past at once, as
    `decay` does: 0.

    Worked example: 4 GPUs for one hour, ended one hour ago, half-life one hour. Without decay
    14,400 GPU-seconds; decayed: 4 * 3600 / ln 2 * (2^-1 - 2^-2) = 3600 / ln 2 = 5193.7.

    >>> round(decayed_gpu_seconds(4, start=0, end=3600, now=7200, half_life_s=3600), 1)
    5193.7
    >>> decayed_gpu_seconds(4, start=0, end=None, now=0, half_life_s=3600)  # zero length
    0.0
    """
    if half_life_s <= 0 or gpus <= 0:
        return 0.0
    stop = now if end is None else min(end, now)
    if stop <= start:
        return 0.0
    # 2^-a * (1 - 2^-d) with expm1, so that a short run long after its start loses no digits.
    rate = math.log(2) / half_life_s
    since_stop = math.exp(-(now - stop) * rate)
    return float(gpus / rate * since_stop * -math.expm1(-(stop - start) * rate))


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of positive values: 1 when equal, 1/n when one takes all.

    >>> jain_index([1, 1, 1, 1]), jain_index([4, 0, 0, 0])
    (1.0, 0.25)
    """
    if not values:
        return 1.0
    total = sum(values)
    squares = sum(v * v for v in values)
    return 1.0 if squares == 0 else total * total / (len(values) * squares)
