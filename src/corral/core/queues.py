"""Queue accounting during a cycle: who uses what, who is under quota, who goes next.

Usage is counted per queue *subtree* (a parent's usage includes its children's), in milli-GPU,
CPU milli-cores and RAM MiB, and per GPU model; so is decayed past use (`history`, from
`ClusterState.usage`). Limits and quotas are checked against subtree usage, so a parent's limit
caps all of its children together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from corral.core.fairshare import QueueNode, hierarchical_shares
from corral.core.model import MILLI_PER_GPU, Queue, Workload

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Totals:
    """Schedulable capacity of the pool, for shares: GPUs (milli), CPU (milli), RAM (MiB)."""

    milli: int
    cpu: int
    ram: int


def effective_quotas(queues: Sequence[Queue]) -> dict[str, float]:
    """Each queue's quota, where a parent without one of its own guarantees what its children
    are guaranteed (it is a grouping, not a cap): its quota is the sum of theirs. A parent
    with a quota keeps it, also when its children's add up to more (they then share it).

    >>> effective_quotas([Queue("org"), Queue("a", "org", 3), Queue("b", "org", 5),
    ...                   Queue("lab", quota_gpus=4), Queue("c", "lab", 6)])
    {'org': 8.0, 'a': 3, 'b': 5, 'lab': 4, 'c': 6}
    """
    children: dict[str, list[str]] = {}
    for q in queues:
        if q.parent is not None:
            children.setdefault(q.parent, []).append(q.name)
    given = {q.name: q.quota_gpus for q in queues}
    out: dict[str, float] = {}

    def quota(name: str, depth: int = 0) -> float:
        if name not in out:
            kids = children.get(name, []) if depth < len(given) else []
            own = given.get(name, 0.0)
            out[name] = own if own > 0 or not kids else float(
                sum(quota(k, depth + 1) for k in kids))
        return out[name]

    for q in queues:
        quota(q.name)
    return {q.name: out[q.name] for q in queues}


class QueueBook:
    def __init__(
        self,
        queues: Sequence[Queue],
        totals: Totals,
        demand_milli: Mapping[str, int],
        decayed_gpu_seconds: Mapping[str, float] | None = None,
        usage_weight: float = 0.0,
        usage_half_life_s: float = 7 * 24 * 3600.0,
        share_units: Mapping[str, float] | None = None,
    ) -> None:
        self.queues = {q.name: q for q in queues}
        # Normalised GPU units per model (`SchedulerConfig.share_units`): what a queue holds,
        # counted in them, orders queues; quotas and limits stay in devices.
        self._units = dict(share_units or {})
        self.units_used = dict.fromkeys(self.queues, 0.0)
        self.totals = totals
        self.chain = {q.name: self._ancestors(q.name) for q in queues}
        self.milli = dict.fromkeys(self.queues, 0)
        self.at_start: dict[str, int] = {}  # `milli` as the cycle's actions began (`mark_start`)
        self.cpu = dict.fromkeys(self.queues, 0)
        self.ram = dict.fromkeys(self.queues, 0)
        self.by_model: dict[tuple[str, str], int] = {}
        self.quota_gpus = effective_quotas(queues)
        nodes = [
            QueueNode(
                q.name,
                q.parent,
                demand_milli.get(q.name, 0) / MILLI_PER_GPU,
                self.quota_gpus[q.name],
                q.limit_gpus,
                q.weight,
            )
            for q in queues
        ]
        self.deserved = hierarchical_shares(totals.milli / MILLI_PER_GPU, nodes)
        # Past use, as a fraction of what the whole pool gives in one half-life, per subtree
        # like current use: a parent's own work is ordered by its children's history too.
        window = max(totals.milli / MILLI_PER_GPU, _EPS) * max(usage_half_life_s, _EPS)
        self.history = dict.fromkeys(self.queues, 0.0)
        for name, used in (decayed_gpu_seconds or {}).items() if usage_weight > 0 else ():
            for q in self.chain.get(name, ()):
                self.history[q] += usage_weight * used / window
        self._model_quota = {q.name: {m: round(g * MILLI_PER_GPU) for m, g in q.quota_by_model}
                             for q in queues if q.quota_by_model}
        # Per-queue constants of the order key, computed once (the key is read per workload).
        self._quota = {q: round(self.quota_gpus[q] * MILLI_PER_GPU) for q in self.queues}
        self._deserved = {
            q: max(self.deserved.get(q, 0.0) * MILLI_PER_GPU / max(totals.milli, 1), _EPS)
            for q in self.queues
        }
        self._inv_totals = tuple(
            1.0 / t if t > 0 else 0.0 for t in (totals.milli, totals.cpu, totals.ram)
        )

    def _ancestors(self, name: str) -> tuple[str, ...]:
        chain: list[str] = []
        seen: set[str] = set()
        current: str | None = name
        while current is not None and current in self.queues and current not in seen:
            chain.append(current)
            seen.add(current)
            current = self.queues[current].parent
        return tuple(chain)

    def __contains__(self, name: object) -> bool:
        return name in self.queues

    # -- mutation -----------------------------------------------------------------------------
    def add(
        self, w: Workload, milli: int, models: Iterable[tuple[str, int]], sign: int = 1
    ) -> None:
        cpu = w.resources.cpu_milli * w.workers
        ram = w.resources.memory_mib * w.workers
        for q in self.chain.get(w.queue, ()):
            self.milli[q] += sign * milli
            self.cpu[q] += sign * cpu
            self.ram[q] += sign * ram
            for model, m in models:
                self.by_model[(q, model)] = self.by_model.get((q, model), 0) + sign * m
                if self._units:
                    self.units_used[q] += sign * m * self._units.get(model, 1.0)

    def add_totals(self, queue: str, milli: int, cpu: int, ram: int,
                   models: Iterable[tuple[str, int]]) -> bool:
        """`add` (+1) for many workloads of `queue` at once, from their sums (a snapshot's
        running work: one update per queue, not per workload). Integer sums commute, so the
        book ends exactly as after one `add` each. False, and nothing added, when GPU units
        weigh models (`share_units`): those are float sums, exact only added one by one."""
        if self._units:
            return False
        for q in self.chain.get(queue, ()):
            self.milli[q] += milli
            self.cpu[q] += cpu
            self.ram[q] += ram
            for model, m in models:
                self.by_model[(q, model)] = self.by_model.get((q, model), 0) + m
        return True

    # -- checks -------------------------------------------------------------------------------
    def limit_blocking(self, queue: str, milli: int) -> Queue | None:
        """The queue (itself or an ancestor) whose limit `milli` more would break, if any."""
        for name in self.chain.get(queue, ()):
            q = self.queues[name]
            if q.limit_gpus is not None and self.milli[name] + milli > q.limit_gpus * MILLI_PER_GPU:
                return q
        return None

    def quota_milli(self, queue: str) -> int:
        return self._quota[queue]

    def within_quota_after(self, queue: str, milli: int) -> bool:
        """Would the queue stay at or below its quota with `milli` more? (May it reclaim?)"""
        return self.milli[queue] + milli <= self.quota_milli(queue)

    def within_guarantee_after(self, w: Workload, milli: int, upto: str | None = None) -> bool:
        """May `w` reclaim: would its queue, and every ancestor below `upto`'s subtree (the
        ancestors it shares with the queue it takes from are not counted: GPUs move inside
        them), stay within quota with `milli` more? Work pinned to GPU models that all have a
        per-model quota (`quota_by_model`) may use those models' quota at its own level."""
        below = self.below_common(w.queue, upto) if upto is not None else self.chain[w.queue]
        for q in below[1:]:
            if not self.within_quota_after(q, milli):
                return False
        if self.within_quota_after(w.queue, milli):
            return True
        quotas = self._model_quota.get(w.queue, {})
        if not w.gpu_models or any(m not in quotas for m in w.gpu_models):
            return False
        used = sum(self.by_model.get((w.queue, m), 0) for m in w.gpu_models)
        return used + milli <= sum(quotas[m] for m in w.gpu_models)

    def below_common(self, queue: str, other: str) -> tuple[str, ...]:
        """`queue` and its ancestors that are not ancestors of `other` (nor `other` itself):
        the part of the tree GPUs leave or enter when they move between the two queues."""
        common = set(self.chain.get(other, ()))
        return tuple(q for q in self.chain.get(queue, ()) if q not in common)

    def has_model_quota(self, queue: str) -> bool:
        return bool(self._model_quota.get(queue))

    def keeps_model_quota_without(self, queue: str, model: str, milli: int,
                                  to: str | None = None) -> bool:
        """Would every queue of the chain (below what it shares with `to`) keep its per-model
        quota of `model` without `milli`?"""
        chain = self.chain.get(queue, ()) if to is None else self.below_common(queue, to)
        for q in chain:
            quota = self._model_quota.get(q, {}).get(model)
            if quota is not None and self.by_model.get((q, model), 0) - milli < quota:
                return False
        return True

    def mark_start(self) -> None:
        """Remember what each queue holds as the cycle's actions begin (`may_give_up`)."""
        self.at_start = dict(self.milli)

    def may_give_up(self, queue: str, milli: int, started: bool, to: str | None = None) -> bool:
        """Reclaim: may `queue` lose `milli` (and every ancestor with it)?

        Only from a queue above its quota now, this cycle's placements counted, and:
        - work that was running before the cycle: the queue stays at or above its quota;
        - a placement of this very cycle (nothing has started, nothing is lost): the queue
          keeps at least what it held when the cycle began, or its quota if less.
        When this cycle's allocation lifted a queue above its quota, its new placements are the
        cheapest victims (nothing started) and go first where they make room; where they do
        not (they sit on other nodes), its older work above the quota goes, as the next cycle
        would decide anyway: deciding it now saves a cycle and keeps a rerun from evicting.
        Ancestors shared with the queue
        the GPUs go `to` lose nothing and are not checked: a child below its quota reclaims
        from its sibling above quota even when their parent is within its own."""
        chain = self.chain.get(queue, ()) if to is None else self.below_common(queue, to)
        for q in chain:
            quota, now, start = self.quota_milli(q), self.milli[q], self.at_start.get(q, 0)
            if now <= quota:
                return False
            if started and now - milli < quota:
                return False
            if not started and now - milli < min(quota, start):
                return False
        return True

    # -- order --------------------------------------------------------------------------------
    def order_key(self, queue: str) -> tuple[int, int, float, str]:
        """Queues below their quota first, then by priority, then by how much of their deserved
        share they use (dominant share when CPU or RAM binds, plus decayed history), then name."""
        milli = self.milli[queue]
        inv = self._inv_totals
        held = self.units_used[queue] if self._units else milli
        # Dominant resource share (DRF), inlined: see fairshare.dominant_share.
        dom = max(held * inv[0], self.cpu[queue] * inv[1], self.ram[queue] * inv[2])
        ratio = (dom + self.history[queue]) / self._deserved[queue]
        tier = 0 if milli < self._quota[queue] else 1
        return (tier, -self.queues[queue].priority, ratio, queue)
